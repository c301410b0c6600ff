//! The executor: the only place stages run and are timed.
//!
//! Per call: synchronize the device, read the monotonic clock, run the stage, synchronize
//! again, read the clock, then hand one [`Span`] to the collector without blocking. Queue wait
//! (ready → start) is recorded per item, apart from service time (start → end).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::Device;

use super::PageRecord;
use crate::metrics::Clock;
use crate::metrics::span::{Collector, Span, SpanSink, WorkerId, WorkerKind};
use crate::models::{Feed, ModelInfo, Stage, StageError};
use crate::page::PageWork;
use crate::vocab::{FailureKind, StageKind};

/// A failure recorded during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub document: String,
    /// 1-based page number, when the error concerns one page.
    pub page: Option<u32>,
    pub stage: String,
    pub kind: FailureKind,
    pub message: String,
}

/// Told after each stage call how many pages it processed (progress displays).
pub type StageHook = Box<dyn Fn(StageKind, usize) + Send + Sync>;

pub struct Executor {
    clock: Clock,
    device: Device,
    sink: SpanSink,
    errors: Arc<Mutex<Vec<RunError>>>,
    on_stage: Option<StageHook>,
}

impl Executor {
    pub fn new(clock: Clock, device: Device, sink: SpanSink) -> Self {
        Self {
            clock,
            device,
            sink,
            errors: Arc::default(),
            on_stage: None,
        }
    }

    /// Calls `hook` after every stage call (retries included once, in the call they belong
    /// to) with the stage and its batch size: progress for strategies where pages complete
    /// only at the end (staged-batch).
    pub fn with_stage_hook(mut self, hook: StageHook) -> Self {
        self.on_stage = Some(hook);
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Errors recorded so far.
    pub fn errors(&self) -> Vec<RunError> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn record_error(&self, e: RunError) {
        crate::console::message(format!(
            "error: {}{} [{}]: {}",
            e.document,
            e.page.map(|p| format!(" page {p}")).unwrap_or_default(),
            e.stage,
            e.message
        ));
        if let Ok(mut v) = self.errors.lock() {
            v.push(e);
        }
    }

    /// Marks a page as entering the pipeline now.
    pub fn admit(&self, page: &mut PageWork) {
        let now = self.clock.now_ns();
        page.admitted_ns = now;
        page.ready_ns = now;
    }

    /// Runs `stage` on `batch` (pages already failed are the caller's to leave out) and times
    /// it. Returns true if every page succeeded. A failed batch of several pages is re-run page
    /// by page so only the culprits fail; a batch that ran out of memory is halved and each
    /// half retried (halving again while they still do), so a batch size too large for the
    /// device costs time, visible as retries, but no pages.
    pub fn run_stage(
        &self,
        stage: &mut dyn Stage,
        worker: WorkerId,
        batch: &mut [PageWork],
    ) -> bool {
        let ok = self.run_timed(stage, worker, batch, false);
        if let Some(hook) = &self.on_stage {
            hook(stage.kind(), batch.len());
        }
        ok
    }

    /// [`Executor::run_stage`] for a stage that may take more pages from `feed` while it runs
    /// (streaming-microbatch's continuous batching, [`Stage::takes_feed`]): the pages it takes
    /// join `batch` and the call's span; their queue wait ends when they joined. A failed call
    /// is retried as `run_stage` retries one, the pages it took included.
    pub fn run_stage_fed(
        &self,
        stage: &mut dyn Stage,
        worker: WorkerId,
        batch: &mut Vec<PageWork>,
        feed: &mut dyn Feed,
    ) -> bool {
        if !stage.takes_feed() || batch.is_empty() {
            return self.run_stage(stage, worker, batch);
        }
        let before = batch.len();
        let mut joining = Joining {
            feed,
            clock: &self.clock,
            joined: Vec::new(),
        };
        let (start, end, result) = self.attempt(stage, |s| s.process_fed(batch, &mut joining));
        let joined = joining.joined;
        assert_eq!(
            batch.len(),
            before + joined.len(),
            "stage {} took {} pages from its feed but kept {} (a bug in the stage)",
            stage.kind().name(),
            joined.len(),
            batch.len().saturating_sub(before)
        );
        let ok = self.settle(stage, worker, batch, (start, end), result, false, &joined);
        if let Some(hook) = &self.on_stage {
            hook(stage.kind(), batch.len());
        }
        ok
    }

    fn run_timed(
        &self,
        stage: &mut dyn Stage,
        worker: WorkerId,
        batch: &mut [PageWork],
        retry: bool,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let (start, end, result) = self.attempt(stage, |s| s.process(batch));
        self.settle(stage, worker, batch, (start, end), result, retry, &[])
    }

    /// One timed call: device synchronized before and after; a panic is the call's error.
    fn attempt(
        &self,
        stage: &mut dyn Stage,
        call: impl FnOnce(&mut dyn Stage) -> Result<(), StageError>,
    ) -> (u64, u64, Result<(), StageError>) {
        let sync = |d: &Device| {
            d.synchronize()
                .map_err(|e| StageError::classify(&e.to_string()))
        };
        let pre = sync(&self.device);
        let start = self.clock.now_ns();
        // A panicking model fails its batch like an error does: the run goes on.
        let result = pre
            .and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(stage)))
                    .unwrap_or_else(|panic| {
                        Err(StageError::new(FailureKind::Panic, panic_message(&*panic)))
                    })
            })
            .and_then(|()| sync(&self.device));
        (start, self.clock.now_ns(), result)
    }

    /// Records a call's span and settles its pages: ready at its end when it succeeded, else
    /// retried (halves after out-of-memory, one page at a time after other errors) or failed.
    /// `joined`: when each page after the first `batch.len() - joined.len()` joined the call.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        stage: &mut dyn Stage,
        worker: WorkerId,
        batch: &mut [PageWork],
        (start, end): (u64, u64),
        result: Result<(), StageError>,
        retry: bool,
        joined: &[u64],
    ) -> bool {
        let first_joined = batch.len() - joined.len();
        let worker_ns = stage.take_worker_ns();
        let generation = stage.take_generation();
        self.sink.record(Span {
            stage: stage.kind(),
            worker,
            items: batch.iter().map(|p| p.page.global).collect(),
            start_ns: start,
            end_ns: end,
            queue_wait_ns: batch
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let began = i.checked_sub(first_joined).map_or(start, |j| joined[j]);
                    began.saturating_sub(p.ready_ns)
                })
                .collect(),
            ok: result.is_ok(),
            retry,
            worker_ns,
            generation,
        });
        match result {
            Ok(()) => {
                for p in batch.iter_mut() {
                    p.ready_ns = end;
                }
                true
            }
            Err(e) if batch.len() > 1 && e.kind == FailureKind::Oom => {
                let (first, second) = batch.split_at_mut(batch.len() / 2);
                let a = self.run_timed(stage, worker, first, true);
                let b = self.run_timed(stage, worker, second, true);
                a && b
            }
            Err(_) if batch.len() > 1 => {
                let mut all = true;
                for i in 0..batch.len() {
                    all &= self.run_timed(stage, worker, &mut batch[i..=i], true);
                }
                all
            }
            Err(e) => {
                let p = &mut batch[0];
                p.failed = true;
                p.ready_ns = end;
                self.record_error(RunError {
                    document: p.doc_id.to_string(),
                    page: Some(p.page.page + 1),
                    stage: stage.kind().name().to_string(),
                    kind: e.kind,
                    message: e.message.clone(),
                });
                false
            }
        }
    }

    /// Closes a page: it leaves the pipeline now.
    pub fn complete(&self, page: PageWork, failed_stage: Option<StageKind>) -> PageRecord {
        PageRecord {
            page: page.page,
            id: page.id,
            doc_id: page.doc_id,
            ok: !page.failed,
            failed_stage,
            admitted_ns: page.admitted_ns,
            done_ns: self.clock.now_ns(),
            output: page.output,
        }
    }
}

/// A feed that notes when each page it gives joined the call.
struct Joining<'a> {
    feed: &'a mut dyn Feed,
    clock: &'a Clock,
    joined: Vec<u64>,
}

impl Feed for Joining<'_> {
    fn take(&mut self, n: usize) -> Vec<PageWork> {
        let pages = self.feed.take(n);
        let now = self.clock.now_ns();
        self.joined.extend(pages.iter().map(|_| now));
        pages
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the stage panicked: {msg} (a bug: please report it with this page)")
}

/// The cost of the instrumentation itself.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// Executor call cost minus the bare stage call, per span.
    pub per_span_ns: f64,
    pub iterations: u32,
}

struct Noop;
impl Stage for Noop {
    fn kind(&self) -> StageKind {
        StageKind::Figure
    }
    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Figure,
            id: "noop".into(),
            is_test_stage: true,
            untrained: false,
            fallback: None,
            weights_sha256: None,
        }
    }
    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// Measures the executor's per-span overhead on `device` with a no-op stage: `iterations`
/// timed calls through the executor (clock reads, device syncs, span to a live collector) minus
/// the same number of bare calls. Uses its own collector so the run's data stays clean.
pub fn measure_overhead(device: &Device, iterations: u32) -> Overhead {
    let collector = Collector::start(false);
    let exec = Executor::new(Clock::start(), device.clone(), collector.sink());
    let mut batch = [PageWork::placeholder(0, "calibration")];
    let worker = WorkerId {
        kind: WorkerKind::Device,
        index: 0,
    };
    let mut stage = Noop;
    let mut best_bare = f64::MAX;
    let mut best_exec = f64::MAX;
    // Interleave rounds and keep the best of each, so a scheduler hiccup in one round does not
    // land in the figure.
    let rounds = 5;
    let per_round = (iterations / rounds).max(1);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            let _ = stage.process(&mut batch);
        }
        best_bare = best_bare.min(t.elapsed().as_nanos() as f64 / per_round as f64);
        let t = Instant::now();
        for _ in 0..per_round {
            exec.run_stage(&mut stage, worker, &mut batch);
        }
        best_exec = best_exec.min(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    drop(exec);
    let _ = collector.finish();
    Overhead {
        per_span_ns: (best_exec - best_bare).max(0.0),
        iterations: per_round * rounds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::null::{NullOptions, NullStage};

    fn pages(n: u32) -> Vec<PageWork> {
        (0..n)
            .map(|i| {
                let r = crate::corpus::PageRef {
                    global: i,
                    doc: 0,
                    page: i,
                };
                PageWork::new(
                    r,
                    Arc::from(format!("d.pdf#p{}", i + 1)),
                    Arc::from("d.pdf"),
                    Arc::from(std::path::Path::new("d.pdf")),
                )
            })
            .collect()
    }

    const W: WorkerId = WorkerId {
        kind: WorkerKind::Device,
        index: 0,
    };

    #[test]
    fn times_every_call_and_separates_queue_wait() {
        let collector = Collector::start(true);
        let exec = Executor::new(Clock::start(), Device::Cpu, collector.sink());
        let spec = NullOptions {
            sleep_ms: 2.0,
            ..NullOptions::default()
        };
        let mut stage = NullStage::new(StageKind::Ocr, &spec);
        let mut batch = pages(3);
        for p in &mut batch {
            exec.admit(p);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(exec.run_stage(&mut stage, W, &mut batch));
        drop(exec);
        let c = collector.finish();
        assert_eq!(c.spans.len(), 1);
        let s = &c.spans[0];
        assert_eq!(s.items, vec![0, 1, 2]);
        let service = s.end_ns - s.start_ns;
        assert!(
            service >= 6_000_000,
            "3 pages × 2 ms sleep, got {service} ns"
        );
        assert!(
            s.queue_wait_ns.iter().all(|w| *w >= 5_000_000),
            "waited 5 ms before the call: {:?}",
            s.queue_wait_ns
        );
        assert!(batch.iter().all(|p| p.ready_ns == s.end_ns));
        let acc = &c.stages[&StageKind::Ocr];
        assert_eq!((acc.items, acc.batches), (3, 1));
    }

    #[test]
    fn failed_batch_is_retried_page_by_page() {
        let collector = Collector::start(true);
        let exec = Executor::new(Clock::start(), Device::Cpu, collector.sink());
        let spec = NullOptions {
            fail_pages: vec!["d.pdf#p2".into()],
            ..NullOptions::default()
        };
        let mut stage = NullStage::new(StageKind::Table, &spec);
        let mut batch = pages(3);
        assert!(!exec.run_stage(&mut stage, W, &mut batch));
        let failed: Vec<bool> = batch.iter().map(|p| p.failed).collect();
        assert_eq!(failed, [false, true, false]);
        let errors = exec.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (
                errors[0].document.as_str(),
                errors[0].page,
                errors[0].stage.as_str()
            ),
            ("d.pdf", Some(2), "table")
        );
        drop(exec);
        let c = collector.finish();
        assert_eq!(c.spans.len(), 4, "one failed batch + three retries");
        assert_eq!(c.spans.iter().filter(|s| s.retry).count(), 3);
    }

    /// Runs out of memory on batches of more than `fits` pages.
    struct Hungry {
        fits: usize,
    }
    impl Stage for Hungry {
        fn kind(&self) -> StageKind {
            StageKind::Layout
        }
        fn model(&self) -> ModelInfo {
            ModelInfo {
                stage: StageKind::Layout,
                id: "hungry".into(),
                is_test_stage: true,
                untrained: false,
                fallback: None,
                weights_sha256: None,
            }
        }
        fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
            if batch.len() > self.fits {
                return Err(StageError::classify(
                    "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
                ));
            }
            Ok(())
        }
    }

    #[test]
    fn out_of_memory_halves_the_batch_and_loses_no_page() {
        let collector = Collector::start(true);
        let exec = Executor::new(Clock::start(), Device::Cpu, collector.sink());
        let mut batch = pages(8);
        assert!(exec.run_stage(&mut Hungry { fits: 2 }, W, &mut batch));
        assert!(batch.iter().all(|p| !p.failed));
        assert!(exec.errors().is_empty());
        drop(exec);
        let c = collector.finish();
        // 8 (oom) → 4 + 4 (oom) → 2 + 2 + 2 + 2: seven calls, six of them retries.
        let sizes: Vec<usize> = c.spans.iter().map(|s| s.items.len()).collect();
        assert_eq!(sizes.len(), 7, "{sizes:?}");
        assert_eq!(c.spans.iter().filter(|s| s.retry).count(), 6);
        assert_eq!(c.spans.iter().filter(|s| !s.ok).count(), 3);
        assert_eq!(c.stages[&StageKind::Layout].retries, 6);
    }

    struct Panicky;
    impl Stage for Panicky {
        fn kind(&self) -> StageKind {
            StageKind::Layout
        }
        fn model(&self) -> ModelInfo {
            ModelInfo {
                stage: StageKind::Layout,
                id: "panicky".into(),
                is_test_stage: true,
                untrained: false,
                fallback: None,
                weights_sha256: None,
            }
        }
        fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
            if batch.iter().any(|p| p.page.global == 1) {
                panic!("shape mismatch");
            }
            Ok(())
        }
    }

    #[test]
    fn a_panicking_stage_fails_the_page_not_the_run() {
        let collector = Collector::start(false);
        let exec = Executor::new(Clock::start(), Device::Cpu, collector.sink());
        let mut batch = pages(2);
        assert!(!exec.run_stage(&mut Panicky, W, &mut batch));
        assert_eq!(
            batch.iter().map(|p| p.failed).collect::<Vec<_>>(),
            [false, true]
        );
        let e = &exec.errors()[0];
        assert_eq!(e.kind, FailureKind::Panic);
        assert!(e.message.contains("shape mismatch"), "{}", e.message);
    }

    /// Does its work "in a worker process" that reports 7 µs per page.
    struct Remote {
        worker_ns: Option<u64>,
    }
    impl Stage for Remote {
        fn kind(&self) -> StageKind {
            StageKind::Render
        }
        fn model(&self) -> ModelInfo {
            Noop.model()
        }
        fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
            self.worker_ns = Some(7_000 * batch.len() as u64);
            Ok(())
        }
        fn take_worker_ns(&mut self) -> Option<u64> {
            self.worker_ns.take()
        }
    }

    #[test]
    fn a_stage_s_worker_time_goes_on_its_span() {
        let collector = Collector::start(true);
        let exec = Executor::new(Clock::start(), Device::Cpu, collector.sink());
        let mut remote = Remote { worker_ns: None };
        assert!(exec.run_stage(&mut remote, W, &mut pages(2)));
        assert!(exec.run_stage(&mut remote, W, &mut pages(1)));
        assert!(exec.run_stage(&mut Noop, W, &mut pages(1)));
        drop(exec);
        let c = collector.finish();
        let got: Vec<_> = c.spans.iter().map(|s| s.worker_ns).collect();
        assert_eq!(got, [Some(14_000), Some(7_000), None]);
        assert_eq!(c.stages[&StageKind::Render].worker_ns, Some(21_000));
        assert_eq!(c.stages[&StageKind::Figure].worker_ns, None);
    }

    #[test]
    fn overhead_is_measured_and_small() {
        let o = measure_overhead(&Device::Cpu, 10_000);
        assert!(o.per_span_ns > 0.0, "recording a span costs something");
        // A loose bound that still catches a blocking or allocating-heavy hot path; the real
        // figure (target ≤ 2 µs) is reported by every run and in the closing note.
        assert!(o.per_span_ns < 50_000.0, "{} ns", o.per_span_ns);
    }
}
