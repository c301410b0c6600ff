//! What every command that runs strategies shares: the session (corpus, pages, device,
//! libpdfium), running one strategy into a report, and how a run is watched (progress bar,
//! the TUI's live board).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::console::say;
use crate::corpus::pdfium::{PdfiumInfo, PdfiumOptions};
use crate::corpus::{Corpus, PageBudget};
use crate::metrics::Clock;
use crate::metrics::memory::{ChildPids, MemorySampler};
use crate::metrics::span::Collector;
use crate::models::device::DeviceSpec;
use crate::pipeline::executor::{Executor, measure_overhead};
use crate::pipeline::{PageRecord, RunContext};
use crate::plan::RunPlan;
use crate::vocab::StageKind;
use crate::{assets, console, metrics, models, pipeline, report};

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

/// What a session opens: the device, weights and libpdfium every strategy of a command shares.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Device for the model stages: `cpu`, `cuda[:N]` or `metal` (parsed into a
    /// [`DeviceSpec`] when the session opens).
    pub device: String,
    /// Seed model weights: `random`, or a folder of checkpoint folders (see
    /// [`models::BuildContext::weights`]).
    pub weights: Option<String>,
    pub pdfium: PdfiumOptions,
}

/// How reports are made, for every strategy of a command.
pub struct ReportOptions {
    pub spans: report::SpansMode,
    pub sample_ms: u64,
    pub save_outputs: Option<std::path::PathBuf>,
    pub check_outputs: Option<std::path::PathBuf>,
    /// With `check_outputs`: differences within this agreement (percent) do not fail the run.
    pub min_agreement: Option<f64>,
    pub force: bool,
}

/// What every strategy of one command shares: the corpus and its selected pages, the device
/// and libpdfium.
pub struct Session {
    pub corpus: Corpus,
    pub corpus_scan_ms: f64,
    pub pages: Vec<crate::corpus::PageRef>,
    device: candle_core::Device,
    device_spec: DeviceSpec,
    pdfium: PdfiumInfo,
    build_ctx: models::BuildContext,
    started_at: std::time::SystemTime,
}

impl Session {
    /// Binds libpdfium, opens the device and scans the corpus (bad documents are reported and
    /// left out).
    pub fn open(
        inputs: &[std::path::PathBuf],
        options: &SessionOptions,
        budget: PageBudget,
    ) -> anyhow::Result<Self> {
        let started_at = std::time::SystemTime::now();
        if report::environment::build_profile() == "debug" {
            say("warning: this is a DEBUG build; timings are not representative (use --release)");
        }
        let device_spec: DeviceSpec = options.device.parse()?;
        let device = models::device::open(device_spec)?;
        let pdfium = crate::corpus::pdfium::bind(&options.pdfium, &mut |m| say(m))?;
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
        let pages = corpus.select(budget);
        let build_ctx = models::BuildContext {
            cache_root: assets::cache_root(options.pdfium.cache_dir.as_deref()),
            offline: options.pdfium.offline,
            device: device.clone(),
            weights: options.weights.clone(),
            pages: pages
                .iter()
                .map(|p| models::PageSource {
                    id: corpus.page_id(p),
                    path: corpus.documents[p.doc as usize].path.clone(),
                    page: p.page,
                })
                .collect(),
            render: Default::default(),
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

    /// `<dir>/<corpus>-<strategy>-<time>.json` (`dir` defaults to `results/`), the time being
    /// when the session opened.
    pub fn default_report_path(&self, dir: Option<&Path>, strategy: &str) -> std::path::PathBuf {
        let created_at = humantime::format_rfc3339_seconds(self.started_at).to_string();
        report::default_path(
            dir.unwrap_or(Path::new("results")),
            &self.corpus.name,
            strategy,
            &created_at,
        )
    }

    /// Runs one strategy over the session's pages and writes its report to `out_path`.
    pub fn run_strategy(
        &self,
        plan: &RunPlan,
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
        let collector =
            Collector::start_live(options.spans != report::SpansMode::None, live.clone());
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
        let build_ctx = models::BuildContext {
            render: plan.render.spec(),
            ..self.build_ctx.clone()
        };
        for kind in StageKind::MODELS {
            let st = plan.stage(kind);
            stages.push(
                models::build_stage(kind, &st.model, st.batch_size, &st.options, &build_ctx)
                    .map_err(|e| anyhow::anyhow!("stage {kind}: {e}"))?,
            );
        }
        let model_load_ms = t_load.elapsed().as_secs_f64() * 1e3;
        let mut models_info = vec![models::ModelInfo {
            stage: StageKind::Render,
            id: "pdfium".into(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: None,
        }];
        models_info.extend(stages.iter().map(|s| s.model()));

        observer.phase("running");
        if let Some(live) = &live {
            live.begin(&plan.name, pages.len() as u64, clock);
            live.set_notice(untrained_notice(&models_info));
        }
        let on_page = |r: &PageRecord| observer.page_done(r);
        let ctx = RunContext {
            exec: &exec,
            corpus,
            plan,
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
            report::output_check::check(dir, &records, options.min_agreement)
                .map_err(|e| check_error = Some(e.to_string()))
                .ok()
        });
        let mut saved_to = None;
        if let Some(dir) = &options.save_outputs {
            let n = report::save_outputs(dir, &records)
                .with_context(|| format!("writing outputs to {}", dir.display()))?;
            say(&format!(
                "outputs of {n} documents written to {}",
                dir.display()
            ));
            // Absolute, so `compare` finds them from wherever it runs.
            saved_to = Some(
                std::path::absolute(dir)
                    .unwrap_or_else(|_| dir.clone())
                    .display()
                    .to_string(),
            );
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
                kind: crate::vocab::FailureKind::Reference,
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
                .then(|| report::measure_ocr_cer(corpus, &records, &plan.render.spec())),
        };
        let mut report = report::build(report::RunData {
            command,
            created_at,
            environment: report::environment::for_plan(
                report::environment::collect(self.device_spec, self.pdfium.clone()),
                plan,
            ),
            corpus,
            corpus_scan_ms: self.corpus_scan_ms,
            strategy: report::schema::StrategyInfo {
                name: plan.name.clone(),
                kind: plan.kind.name().into(),
                file: plan.file.clone(),
                parameters: serde_json::to_value(plan).context("strategy parameters")?,
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
            saved_to,
        });
        report::write(&mut report, out_path, options.force)?;
        Ok(report)
    }
}

/// Steps of a page: rendering and each model stage.
pub(crate) const STEPS_PER_PAGE: u64 = 1 + StageKind::MODELS.len() as u64;

/// The run's progress bar: it advances per page-stage, and says how many pages are done and
/// which stage ran last.
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
    pages_total: u64,
    pages_done: std::sync::atomic::AtomicU64,
    /// Index into [`StageKind::ALL`] of the stage that ran last.
    last_stage: std::sync::atomic::AtomicUsize,
}

impl RunObserver for Progress {
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

    fn phase(&self, what: &str) {
        self.bar.set_message(what.to_string());
    }
}

impl Progress {
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

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A progress bar over `pages` × [`STEPS_PER_PAGE`] page-stages (hidden when `quiet`).
pub(crate) fn progress_bar(pages: u64, quiet: bool) -> Arc<Progress> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(pages * STEPS_PER_PAGE)
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

/// The live display's warning for stages running untrained (random) weights, if any.
fn untrained_notice(models: &[models::ModelInfo]) -> Option<String> {
    let stages: Vec<String> = models
        .iter()
        .filter(|m| m.untrained)
        .map(|m| match &m.fallback {
            Some(f) => format!("{} {} (regions from {f})", m.stage, m.id),
            None => format!("{} {}", m.stage, m.id),
        })
        .collect();
    (!stages.is_empty()).then(|| {
        format!(
            "UNTRAINED weights: {} (real compute, meaningless outputs)",
            stages.join(", ")
        )
    })
}
