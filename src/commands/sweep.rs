//! `pipebench sweep`, `merge` and `recommend` (the grid itself is `crate::sweep`).

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::cli;
use crate::commands::reports::load_report;
use crate::console::say;
use crate::session::{ReportOptions, Session, progress_bar};
use crate::{ExitStatus, pipeline, report, sweep};

pub(crate) fn sweep_command(args: cli::SweepArgs) -> anyhow::Result<ExitStatus> {
    let strategies: Vec<(String, String)> = args
        .strategy
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| (p.display().to_string(), t))
                .with_context(|| format!("{}: cannot read strategy file", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let axes: Vec<sweep::Axis> = args
        .set
        .iter()
        .map(|s| sweep::Axis::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--set {e}"))?;
    let points = sweep::points(&strategies, &axes).map_err(|e| anyhow::anyhow!(e))?;
    let (shard, shards) = match &args.shard {
        Some(s) => sweep::parse_shard(s).map_err(|e| anyhow::anyhow!(e))?,
        None => (0, 1),
    };
    let keys: Vec<String> = axes.iter().map(|a| a.key.clone()).collect();
    std::fs::create_dir_all(args.out.join("points"))
        .with_context(|| format!("creating {}", args.out.display()))?;
    let manifest = sweep::Manifest {
        corpus: args
            .corpus
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        keys: keys.clone(),
        points: points.clone(),
    };
    std::fs::write(
        args.out.join("sweep.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let mine: Vec<&sweep::Point> = points
        .iter()
        .enumerate()
        .filter(|(k, _)| k % shards == shard)
        .map(|(_, p)| p)
        .collect();
    say(&format!(
        "sweep: {} points ({} strategies × {} settings){}",
        mine.len(),
        strategies.len(),
        points.len() / strategies.len().max(1),
        if shards > 1 {
            format!(", shard {shard}/{shards} of {}", points.len())
        } else {
            String::new()
        }
    ));
    let budget = crate::corpus::PageBudget::first(args.max_pages);
    let session = Session::open(&args.corpus, &(&args.common).into(), budget)?;
    pipeline::install_interrupt_handler();
    let options = ReportOptions {
        spans: report::SpansMode::Inline,
        sample_ms: 50,
        save_outputs: None,
        check_outputs: None,
        min_agreement: None,
        force: true,
    };
    let mut rows = Vec::new();
    let mut all_ok = true;
    let mut cut_short = false;
    for (k, p) in mine.iter().enumerate() {
        // Repeats already measured are kept; more run until there are `--repeats` of them
        // and they add up to `--min-seconds` of wall time (at most `--max-repeats`).
        let mut runs = sweep::existing_repeats(&args.out, p, |path| {
            load_report(path).ok().filter(|r| !r.interrupted)
        });
        if !runs.is_empty() {
            say(&format!(
                "point {}/{}: {} — {} repeat(s) kept (already measured)",
                k + 1,
                mine.len(),
                p.id,
                runs.len()
            ));
        }
        let enough = |runs: &[report::schema::Report]| {
            let wall: f64 = runs.iter().map(|r| r.summary.wall_ms / 1e3).sum();
            let pages: u64 = runs.iter().map(|r| r.summary.pages_ok).sum();
            runs.len() as u32 >= args.max_repeats
                || (runs.len() as u32 >= args.repeats
                    && wall >= args.min_seconds
                    && pages >= args.min_pages)
        };
        while !enough(&runs) {
            if pipeline::interrupted() {
                cut_short = true;
                break;
            }
            let rep = runs.len() as u32 + 1;
            say(&format!(
                "point {}/{}: {} (repeat {rep})",
                k + 1,
                mine.len(),
                p.label()
            ));
            let plan = p.plan(args.common.models.as_deref())?;
            let progress = progress_bar(session.pages.len() as u64, false);
            let path = sweep::repeat_path(&args.out, p, rep);
            let r = session.run_strategy(&plan, &path, &options, progress.clone())?;
            progress.finish();
            runs.push(r);
        }
        if runs.is_empty() {
            break;
        }
        let row = sweep::Row::of(p, &runs);
        all_ok &= row.ok;
        rows.push(row);
        if cut_short {
            break;
        }
    }
    sweep::write_summary(&args.out, &keys, &rows)
        .with_context(|| format!("writing the summary into {}", args.out.display()))?;
    print!(
        "{}",
        std::fs::read_to_string(args.out.join("summary.md")).unwrap_or_default()
    );
    say(&format!(
        "summary: {}/summary.{{md,csv,json}}",
        args.out.display()
    ));
    Ok(
        if all_ok && !pipeline::interrupted() && rows.len() == mine.len() {
            ExitStatus::Ok
        } else {
            ExitStatus::Errors
        },
    )
}

pub(crate) fn recommend_command(args: cli::RecommendArgs) -> anyhow::Result<ExitStatus> {
    let read = |name: &str| {
        std::fs::read(args.dir.join(name)).with_context(|| {
            format!(
                "{}: not a sweep folder (no {name}; run `pipebench sweep` or `merge` first)",
                args.dir.display()
            )
        })
    };
    let rows: Vec<sweep::Row> = serde_json::from_slice(&read("summary.json")?)?;
    let manifest: sweep::Manifest = serde_json::from_slice(&read("sweep.json")?)?;
    let max_memory = args
        .max_memory
        .as_deref()
        .map(sweep::parse_size)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--max-memory {e}"))?;
    let rec = sweep::recommend(&rows, args.max_p99_page_ms, max_memory);
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!("Pareto frontier (pages/s ↑, p99 page latency ↓, peak memory ↓) within the limits:");
    println!(
        "  {:<56} {:>8} {:>10} {:>9}",
        "point", "pages/s", "p99 ms", "peak MiB"
    );
    for r in &rec.frontier {
        let mark = if rec.best.is_some_and(|b| b.id == r.id) {
            " ← best"
        } else {
            ""
        };
        println!(
            "  {:<56} {:>8.3} {:>10.0} {:>9.0}{mark}",
            r.id,
            r.pages_per_s,
            r.p99_page_ms,
            mib(r.peak_rss_bytes)
        );
    }
    for (r, why) in &rec.excluded {
        println!("  excluded: {} ({why})", r.id);
    }
    let dominated = rows.len() - rec.frontier.len() - rec.excluded.len();
    if dominated > 0 {
        println!(
            "  ({dominated} more points are dominated: another point is as good on all three and better on one)"
        );
    }
    let Some(best) = rec.best else {
        say("no point meets the limits: relax them or sweep other settings");
        return Ok(ExitStatus::Errors);
    };
    let point = manifest
        .points
        .iter()
        .find(|p| p.id == best.id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: point {} is not in sweep.json",
                args.dir.display(),
                best.id
            )
        })?;
    let limits = format!(
        "{}{}",
        args.max_p99_page_ms
            .map_or(String::new(), |m| format!(" p99 page ≤ {m} ms;")),
        args.max_memory
            .as_deref()
            .map_or(String::new(), |m| format!(" peak memory ≤ {m};"))
    );
    let text = format!(
        "# Recommended by `pipebench recommend {}`:{limits} the fastest point of the\n# Pareto frontier ({:.3} pages/s, p99 page {:.0} ms, peak {:.0} MiB) on corpus {}.\n# Point {} of {}.\n{}",
        args.dir.display(),
        best.pages_per_s,
        best.p99_page_ms,
        mib(best.peak_rss_bytes),
        manifest.corpus.join(" "),
        point.id,
        point.file,
        point.text
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("recommended.toml"));
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!("recommended: {} → {}", best.id, out.display());
    Ok(ExitStatus::Ok)
}

pub(crate) fn merge_command(args: cli::MergeArgs) -> anyhow::Result<ExitStatus> {
    let mut keys: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, sweep::Row> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut merged = sweep::Manifest {
        corpus: Vec::new(),
        keys: Vec::new(),
        points: Vec::new(),
    };
    let mut missing = 0usize;
    for dir in &args.dirs {
        let m: sweep::Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).with_context(|| {
                format!("{}: not a sweep folder (no sweep.json)", dir.display())
            })?)
            .with_context(|| format!("{}/sweep.json", dir.display()))?;
        if merged.corpus.is_empty() {
            merged.corpus = m.corpus.clone();
        }
        for k in m.keys {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for p in &m.points {
            if !order.contains(&p.id) {
                order.push(p.id.clone());
                merged.points.push(p.clone());
            }
            if rows.contains_key(&p.id) {
                continue;
            }
            let runs = sweep::existing_repeats(dir, p, |path| load_report(path).ok());
            if !runs.is_empty() {
                rows.insert(p.id.clone(), sweep::Row::of(p, &runs));
            }
        }
    }
    let rows: Vec<sweep::Row> = order
        .iter()
        .filter_map(|id| {
            let r = rows.remove(id);
            missing += usize::from(r.is_none());
            r
        })
        .collect();
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].clone());
    std::fs::create_dir_all(&out)?;
    merged.keys = keys.clone();
    std::fs::write(out.join("sweep.json"), serde_json::to_vec_pretty(&merged)?)?;
    sweep::write_summary(&out, &keys, &rows)?;
    print!(
        "{}",
        std::fs::read_to_string(out.join("summary.md")).unwrap_or_default()
    );
    if missing > 0 {
        say(&format!(
            "{missing} points have no report in these folders (shards not run yet?)"
        ));
        return Ok(ExitStatus::Errors);
    }
    Ok(ExitStatus::Ok)
}
