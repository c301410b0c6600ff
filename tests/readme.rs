//! The README's examples run as written. The sweep example (two shipped strategy files, batch
//! sizes swept) runs on one document of the small corpus with a one-page budget and one repeat;
//! everything else (its strategies, keys, values, `recommend` after it) is taken from the
//! README's text.

mod common;

use common::{cmd, root};

/// The shell commands of the README's "Sweeps, comparisons, production settings" block, with
/// `\` continuations joined.
fn sweep_block_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("## Sweeps, comparisons, production settings")
        .nth(1)
        .expect("the README has a sweeps section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the sweeps section opens with a sh block");
    block
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// `args` with the value after `flag` replaced.
fn with_value(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the README's command has {flag}: {args:?}"));
    args[i + 1] = value.to_string();
    args
}

#[test]
fn the_readme_sweep_example_runs_on_the_shipped_strategy_files() {
    let commands = sweep_block_commands();
    let sweep = commands
        .iter()
        .find(|c| c.get(1).map(String::as_str) == Some("sweep"))
        .expect("a sweep command")
        .clone();
    let recommend = commands
        .iter()
        .find(|c| c.get(1).map(String::as_str) == Some("recommend"))
        .expect("a recommend command")
        .clone();
    assert_eq!(sweep[0], "pipebench");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sweep");
    let out_s = out.display().to_string();
    let readme_out = sweep[sweep.iter().position(|a| a == "-o").expect("-o") + 1].clone();

    // The page budget and repeats shrink, and the corpus becomes one light document of the
    // small corpus (a page of cell-formatted tables: all four stages run, OCR has few lines),
    // so twelve points cost seconds, not minutes.
    let mut args = with_value(sweep, "--max-pages", "1");
    args = with_value(args, "--repeats", "1");
    args = with_value(args, "-o", &out_s);
    for a in &mut args {
        if a == "corpora/sample" {
            *a = "corpora/smoke/gofpdf-cellformat-tables.pdf".into();
        }
    }
    let run = cmd()
        .current_dir(root())
        .args(&args[1..])
        .output()
        .expect("running the sweep");
    assert!(
        run.status.success(),
        "{args:?}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("summary.json")).expect("summary.json written"),
    )
    .expect("summary.json parses");
    let rows = summary["rows"]
        .as_array()
        .or_else(|| summary.as_array())
        .expect("summary rows");
    // 2 strategies × 3 layout batch sizes × 2 OCR batch sizes.
    assert_eq!(rows.len(), 12, "{summary}");

    // The streaming points' queues followed the swept batch sizes (one batch each).
    let report = std::fs::read_dir(out.join("points"))
        .expect("points/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("streaming-microbatch") && name.contains("layout.batch_size=4")
        })
        .expect("a streaming point with layout batches of 4");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let layout = &r["strategy"]["parameters"]["stages"]["layout"];
    assert_eq!(layout["batch_size"], 4, "{layout}");
    assert_eq!(layout["queue_capacity"], 4, "{layout}");
    let derived = r["strategy"]["parameters"]["derived"]
        .as_array()
        .expect("derived values recorded");
    assert!(
        derived
            .iter()
            .any(|d| d["key"] == "stages.layout.queue_capacity"),
        "{derived:?}"
    );

    let args = recommend
        .iter()
        .map(|a| {
            if *a == readme_out {
                out_s.clone()
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>();
    let rec = cmd()
        .current_dir(dir.path())
        .args(&args[1..])
        .output()
        .expect("running recommend");
    assert!(
        rec.status.success(),
        "{args:?}\n{}",
        String::from_utf8_lossy(&rec.stderr)
    );
}
