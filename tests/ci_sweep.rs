//! The CI sweep script (`tests/ci/sweep.sh`, what `.github/workflows/sweep.yml` runs) on
//! corpora/smoke with the null test models: two shards, merge, recommend, and the regression
//! gate against a committed baseline — passing on the same work, failing on planted work.

mod common;

use std::process::Command;

use common::*;

fn script(step: &str, out: &std::path::Path, gate_strategy: &str) -> std::process::Output {
    Command::new(root().join("tests/ci/sweep.sh"))
        .arg(step)
        .env("PIPEBENCH", exe())
        .env("PDFIUM_DYNAMIC_LIB_PATH", pdfium_lib())
        .env("STRATEGY", "tests/fixtures/strategies/staged-null.toml")
        .env("SETS", "layout.batch_size=1,4 ocr.batch_size=1,4")
        .env("OUT", out)
        .env("BASELINE", "results/baselines/smoke-null.json")
        .env("GATE_STRATEGY", gate_strategy)
        // The sleep dominates each page; 50 % leaves room for a slower machine's rendering.
        .env("FAIL_PCT", "50")
        .env("MAX_P99_MS", "5000")
        .output()
        .expect("running tests/ci/sweep.sh")
}

#[test]
fn the_ci_sweep_shards_merges_recommends_and_gates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    for shard in ["0/2", "1/2"] {
        let o = Command::new(root().join("tests/ci/sweep.sh"))
            .arg("sweep")
            .env("PIPEBENCH", exe())
            .env("PDFIUM_DYNAMIC_LIB_PATH", pdfium_lib())
            .env("STRATEGY", "tests/fixtures/strategies/staged-null.toml")
            .env("SETS", "layout.batch_size=1,4 ocr.batch_size=1,4")
            .env("OUT", out)
            .env("SHARD", shard)
            .output()
            .expect("sweep");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let merge = script("merge", out, "");
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(out.join("merged/summary.json")).expect("merged summary"),
    )
    .expect("json");
    assert_eq!(rows.len(), 4);
    assert!(out.join("merged/recommended.toml").exists());
    assert!(out.join("merged/throughput_vs_p99.svg").exists());

    let same = script("gate", out, "tests/fixtures/strategies/ci-null.toml");
    assert_eq!(
        same.status.code(),
        Some(0),
        "the baseline's own work passes:\n{}{}",
        String::from_utf8_lossy(&same.stdout),
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(String::from_utf8_lossy(&same.stdout).contains("pages/s"));

    // Planted: OCR sleeps 60 ms a page instead of 20 (the same name and models, so the
    // reports stay comparable).
    let slow = out.join("slow.toml");
    std::fs::write(
        &slow,
        std::fs::read_to_string(root().join("tests/fixtures/strategies/ci-null.toml"))
            .expect("ci-null")
            .replace("sleep_ms = 20", "sleep_ms = 60"),
    )
    .expect("write");
    let regressed = script("gate", out, slow.to_str().expect("utf-8 path"));
    assert_eq!(
        regressed.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&regressed.stdout),
        String::from_utf8_lossy(&regressed.stderr)
    );
}
