//! Spans (one per stage call) and the collector thread that aggregates them.
//!
//! The hot path only does a non-blocking `try_send` into a bounded channel; when the channel is
//! full the span is dropped and counted, never waited for. The collector thread folds spans into
//! per-stage histograms and keeps them for the report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::histogram::LatencyHistogram;
use crate::vocab::StageKind;

/// Who ran a span: a render process or thread, the device thread…
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct WorkerId {
    pub kind: WorkerKind,
    pub index: u16,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkerKind {
    /// A thread rendering in-process.
    RenderThread,
    /// A render worker process of the pool.
    RenderProcess,
    /// A model worker: a thread that runs the model stages (with one worker, the device
    /// thread; `device.workers` adds more).
    Device,
}

impl std::fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerKind::RenderThread => "render-thread",
            WorkerKind::RenderProcess => "render-proc",
            WorkerKind::Device => "device",
        })
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.index)
    }
}

/// One timed stage call on a batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Span {
    pub stage: StageKind,
    pub worker: WorkerId,
    /// Global page indices of the batch (the report's `pages[i].index`).
    pub items: Vec<u32>,
    /// Start and end, nanoseconds since the run started (device synchronized before both).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Per item: time from ready (previous stage done) to this call's start.
    pub queue_wait_ns: Vec<u64>,
    pub ok: bool,
    /// True when this call re-ran one page of a failed batch on its own.
    pub retry: bool,
    /// Part of the call spent working in a worker process, as measured there (render
    /// processes: opening and rendering the pages); the rest of the call is the round trip
    /// (request, reply, pixel transfer). Absent for work done in this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_ns: Option<u64>,
    /// What an autoregressive stage generated in this call (tokens, prefill and decode
    /// time, sequences per step): summed per stage into the report, not written per span.
    #[serde(skip)]
    #[schemars(skip)]
    pub generation: Option<crate::models::generate::GenerationStats>,
}

/// Where the executor sends spans. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct SpanSink {
    tx: Sender<Span>,
    dropped: Arc<AtomicU64>,
    recorded: Arc<AtomicU64>,
}

impl SpanSink {
    pub fn record(&self, span: Span) {
        match self.tx.try_send(span) {
            Ok(()) => {
                self.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Aggregates for one stage.
#[derive(Debug, Clone)]
pub struct StageAccum {
    /// Service time per call (batch).
    pub service: LatencyHistogram,
    /// Service time per item (call time / batch size, recorded once per item).
    pub service_per_item: LatencyHistogram,
    pub queue_wait: LatencyHistogram,
    pub items: u64,
    pub items_failed: u64,
    pub batches: u64,
    pub retries: u64,
    pub batch_sizes: BTreeMap<u32, u64>,
    pub busy_ns: u64,
    pub workers: BTreeSet<WorkerId>,
    pub first_start_ns: u64,
    pub last_end_ns: u64,
    /// Duration of the earliest call.
    pub first_call_ns: u64,
    /// Sum of the calls' [`Span::worker_ns`], when they have one.
    pub worker_ns: Option<u64>,
    /// Sum of the calls' [`Span::generation`], when they have one.
    pub generation: Option<crate::models::generate::GenerationStats>,
}

impl Default for StageAccum {
    fn default() -> Self {
        Self {
            service: LatencyHistogram::new(),
            service_per_item: LatencyHistogram::new(),
            queue_wait: LatencyHistogram::new(),
            items: 0,
            items_failed: 0,
            batches: 0,
            retries: 0,
            batch_sizes: BTreeMap::new(),
            busy_ns: 0,
            workers: BTreeSet::new(),
            first_start_ns: u64::MAX,
            last_end_ns: 0,
            first_call_ns: 0,
            worker_ns: None,
            generation: None,
        }
    }
}

impl StageAccum {
    pub fn add(&mut self, s: &Span) {
        let dur = s.end_ns.saturating_sub(s.start_ns);
        let n = s.items.len().max(1) as u64;
        self.service.record(dur);
        self.service_per_item.record_n(dur / n, n);
        for w in &s.queue_wait_ns {
            self.queue_wait.record(*w);
        }
        if s.ok {
            self.items += n;
        } else {
            self.items_failed += n;
        }
        self.batches += 1;
        self.retries += s.retry as u64;
        *self.batch_sizes.entry(s.items.len() as u32).or_default() += 1;
        self.busy_ns += dur;
        if let Some(w) = s.worker_ns {
            *self.worker_ns.get_or_insert(0) += w;
        }
        if let Some(g) = &s.generation {
            self.generation.get_or_insert_with(Default::default).add(g);
        }
        self.workers.insert(s.worker);
        if s.start_ns < self.first_start_ns {
            self.first_call_ns = dur;
        }
        self.first_start_ns = self.first_start_ns.min(s.start_ns);
        self.last_end_ns = self.last_end_ns.max(s.end_ns);
    }
}

/// What the collector hands back at the end of a run.
#[derive(Debug, Default)]
pub struct Collected {
    pub stages: BTreeMap<StageKind, StageAccum>,
    /// Per worker (thread or process): busy time and the idle gaps between its calls.
    pub workers: BTreeMap<WorkerId, WorkerAccum>,
    pub spans: Vec<Span>,
    pub spans_recorded: u64,
    pub spans_dropped: u64,
}

/// Capacity of the span channel. At one span per stage call, 64 Ki spans is seconds of backlog
/// even for micro-batches of tiny stages; the collector drains far faster than stages produce.
pub const SPAN_CHANNEL_CAPACITY: usize = 1 << 16;

/// The collector thread.
pub struct Collector {
    sink: SpanSink,
    handle: JoinHandle<Collected>,
}

impl Collector {
    /// Starts the collector. `keep_spans` false keeps only the aggregates.
    pub fn start(keep_spans: bool) -> Self {
        Self::start_live(keep_spans, None)
    }

    /// Starts the collector, which also forwards a copy of every span to `live` (the TUI's
    /// board) from its own thread.
    pub fn start_live(
        keep_spans: bool,
        live: Option<std::sync::Arc<super::live::LiveBoard>>,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(SPAN_CHANNEL_CAPACITY);
        let sink = SpanSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            recorded: Arc::new(AtomicU64::new(0)),
        };
        let handle = std::thread::Builder::new()
            .name("pipebench-collector".into())
            .spawn(move || collect(rx, keep_spans, live))
            .expect("spawning the collector thread");
        Self { sink, handle }
    }

    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Stops accepting spans (once every sink clone is gone) and returns the aggregates.
    pub fn finish(self) -> Collected {
        let recorded = self.sink.recorded.clone();
        let dropped = self.sink.dropped.clone();
        drop(self.sink);
        let mut c = self.handle.join().unwrap_or_default();
        c.spans_recorded = recorded.load(Ordering::Relaxed);
        c.spans_dropped = dropped.load(Ordering::Relaxed);
        c
    }
}

/// One worker's time: each worker records its own calls one after another, so its spans
/// arrive in time order and the gaps between them are its idle time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerAccum {
    pub busy_ns: u64,
    pub calls: u64,
    pub first_start_ns: u64,
    pub last_end_ns: u64,
    /// Sum of the gaps between consecutive calls.
    pub idle_ns: u64,
    pub max_gap_ns: u64,
}

impl WorkerAccum {
    fn add(&mut self, s: &Span) {
        if self.calls == 0 {
            self.first_start_ns = s.start_ns;
        } else {
            let gap = s.start_ns.saturating_sub(self.last_end_ns);
            self.idle_ns += gap;
            self.max_gap_ns = self.max_gap_ns.max(gap);
        }
        self.calls += 1;
        self.busy_ns += s.end_ns.saturating_sub(s.start_ns);
        self.last_end_ns = self.last_end_ns.max(s.end_ns);
    }
}

fn collect(
    rx: Receiver<Span>,
    keep_spans: bool,
    live: Option<std::sync::Arc<super::live::LiveBoard>>,
) -> Collected {
    let mut c = Collected::default();
    for span in rx {
        if let Some(live) = &live {
            live.on_span(&span);
        }
        c.stages.entry(span.stage).or_default().add(&span);
        c.workers.entry(span.worker).or_default().add(&span);
        if keep_spans {
            c.spans.push(span);
        }
    }
    c.spans.sort_by_key(|s| (s.start_ns, s.stage));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(stage: StageKind, items: Vec<u32>, start: u64, end: u64, ok: bool) -> Span {
        let n = items.len();
        Span {
            stage,
            worker: WorkerId {
                kind: WorkerKind::Device,
                index: 0,
            },
            items,
            start_ns: start,
            end_ns: end,
            queue_wait_ns: vec![10; n],
            ok,
            retry: false,
            worker_ns: None,
            generation: None,
        }
    }

    #[test]
    fn collector_aggregates_per_stage() {
        let c = Collector::start(true);
        let sink = c.sink();
        sink.record(span(StageKind::Layout, vec![0, 1], 0, 1_000, true));
        sink.record(span(StageKind::Layout, vec![2], 1_000, 1_500, false));
        sink.record(span(StageKind::Ocr, vec![0], 2_000, 4_000, true));
        drop(sink);
        let got = c.finish();
        assert_eq!(got.spans_recorded, 3);
        assert_eq!(got.spans_dropped, 0);
        let l = &got.stages[&StageKind::Layout];
        assert_eq!(
            (l.items, l.items_failed, l.batches, l.busy_ns),
            (2, 1, 2, 1_500)
        );
        assert_eq!(l.batch_sizes.get(&2), Some(&1));
        assert_eq!(l.queue_wait.len(), 3);
        assert_eq!(got.stages[&StageKind::Ocr].busy_ns, 2_000);
        assert_eq!(got.spans.len(), 3);
        // One device worker: busy 3.5 µs, idle only between 1 500 and 2 000.
        let w = got.workers.values().next().expect("one worker");
        assert_eq!(
            (w.busy_ns, w.calls, w.idle_ns, w.max_gap_ns),
            (3_500, 3, 500, 500)
        );
    }

    #[test]
    fn full_channel_drops_and_counts() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let sink = SpanSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            recorded: Arc::new(AtomicU64::new(0)),
        };
        sink.record(span(StageKind::Ocr, vec![0], 0, 1, true));
        sink.record(span(StageKind::Ocr, vec![0], 0, 1, true));
        assert_eq!(sink.dropped(), 1);
    }
}
