//! Running a strategy: the executor (the only place stages run and are timed), the render
//! stages, and one file per strategy. Strategies decide order, batching and concurrency only.

pub mod concurrent_render;
pub mod executor;
pub mod render_stage;
pub mod scheduler;
pub mod sequential;
pub mod staged_batch;
pub mod streaming_microbatch;
pub mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::StrategyKind;
use crate::corpus::render_pool::RenderWorker;
use crate::corpus::{Corpus, PageRef};
use crate::metrics::memory::ChildPids;
use crate::metrics::span::{WorkerId, WorkerKind};
use crate::models::Stage;
use crate::page::{PageOutput, PageWork};
use crate::plan::RunPlan;
use crate::vocab::StageKind;
use executor::Executor;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once the user pressed Ctrl-C: strategies stop admitting pages, finish the ones in
/// flight, and the report of what was measured is still written.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Asks the running strategy to stop as Ctrl-C does (the TUI's `q`).
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes the first SIGINT to [`interrupted`]; a second one ends the process as usual.
pub fn install_interrupt_handler() {
    #[cfg(unix)]
    {
        extern "C" fn on_sigint(_: libc::c_int) {
            INTERRUPTED.store(true, Ordering::Relaxed);
            // SAFETY: signal() with SIG_DFL is async-signal-safe (sigaction underneath).
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
            }
        }
        // SAFETY: installs a handler that only stores an atomic and resets the disposition.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        }
    }
}

/// What a strategy needs.
pub struct RunContext<'a> {
    pub exec: &'a Executor,
    pub corpus: &'a Corpus,
    pub plan: &'a RunPlan,
    /// The model stages, in pipeline order (layout, ocr, table, figure).
    pub stages: Vec<Box<dyn Stage>>,
    /// Render worker pids, for the memory sampler.
    pub child_pids: ChildPids,
    /// Called as each page completes (progress bar, live views).
    pub on_page: &'a (dyn Fn(&PageRecord) + Sync),
    /// The bound libpdfium, for render worker processes.
    pub pdfium_lib: String,
    /// The TUI's live board, when one watches: strategies with queues report their depths.
    pub live: Option<Arc<crate::metrics::live::LiveBoard>>,
}

impl RunContext<'_> {
    pub fn new_work(&self, p: PageRef) -> PageWork {
        new_work(self.corpus, p)
    }

    /// Starts the strategy's `render.processes` render worker processes (their pids go to the
    /// memory sampler), each wrapped as a render stage.
    pub fn spawn_render_processes(&self) -> anyhow::Result<Vec<render_stage::PoolRender>> {
        let library = std::path::PathBuf::from(&self.pdfium_lib);
        (0..self.plan.render.processes)
            .map(|i| {
                let w = RenderWorker::spawn(i, &library).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: starting render process {i}: {e}",
                        self.plan.kind.name()
                    )
                })?;
                if let (Some(pid), Ok(mut pids)) = (w.pid(), self.child_pids.lock()) {
                    pids.push(pid);
                }
                Ok(render_stage::PoolRender::new(w, self.plan.render.spec()))
            })
            .collect()
    }
}

/// The thread that renders in-process (sequential, staged-batch).
pub const RENDER_THREAD: WorkerId = WorkerId {
    kind: WorkerKind::RenderThread,
    index: 0,
};
/// The first (with one worker, the only) model worker: the thread that runs the model stages.
pub const DEVICE: WorkerId = WorkerId {
    kind: WorkerKind::Device,
    index: 0,
};

/// Runs the model stages on one page, in order, on model worker `worker`; a failed stage ends
/// the page's run. Returns the stage that failed, if one did.
pub fn run_models(
    exec: &Executor,
    worker: WorkerId,
    stages: &mut [Box<dyn Stage>],
    work: &mut PageWork,
) -> Option<StageKind> {
    let mut failed_stage = None;
    for stage in stages.iter_mut() {
        if work.failed {
            break;
        }
        if !exec.run_stage(stage.as_mut(), worker, std::slice::from_mut(work)) {
            failed_stage = Some(stage.kind());
        }
    }
    failed_stage
}

/// Closes a page after its last stage: its pixels are dropped (not needed any more), its
/// record is made and reported to `on_page`.
pub fn complete_page(
    exec: &Executor,
    mut work: PageWork,
    failed_stage: Option<StageKind>,
    on_page: &(dyn Fn(&PageRecord) + Sync),
) -> PageRecord {
    work.image = None;
    let record = exec.complete(work, failed_stage);
    on_page(&record);
    record
}

/// A fresh page in flight for `p`.
pub fn new_work(corpus: &Corpus, p: PageRef) -> PageWork {
    let d = &corpus.documents[p.doc as usize];
    PageWork::new(
        p,
        Arc::from(corpus.page_id(&p)),
        Arc::from(d.id.as_str()),
        Arc::from(d.path.as_path()),
    )
}

/// The result of one page.
#[derive(Debug, Clone)]
pub struct PageRecord {
    pub page: PageRef,
    pub id: Arc<str>,
    pub doc_id: Arc<str>,
    pub ok: bool,
    /// The stage that failed, if one did.
    pub failed_stage: Option<StageKind>,
    pub admitted_ns: u64,
    pub done_ns: u64,
    pub output: PageOutput,
}

/// Runs the strategy over `pages` and returns one record per page, in completion order. An
/// error means the strategy could not start (e.g. a render process did not come up).
pub fn run_strategy(mut ctx: RunContext<'_>, pages: &[PageRef]) -> anyhow::Result<Vec<PageRecord>> {
    let stages = std::mem::take(&mut ctx.stages);
    let workers = workers::start(stages, &ctx.plan.device, ctx.exec.device())?;
    match ctx.plan.kind {
        StrategyKind::Sequential => Ok(sequential::run(ctx, workers, pages)),
        StrategyKind::ConcurrentRender => concurrent_render::run(ctx, workers, pages),
        StrategyKind::StagedBatch => Ok(staged_batch::run(ctx, workers, pages)),
        StrategyKind::StreamingMicrobatch => streaming_microbatch::run(ctx, workers, pages),
    }
}
