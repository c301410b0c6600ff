//! Live metrics for the TUI: a board the measuring threads feed (the collector with every span,
//! the memory sampler with every sample, the strategy with every finished page and its queue
//! depths), and the immutable [`Snapshot`] it publishes at a fixed interval.
//!
//! The board only ever receives copies: the executor's hot path is unchanged (spans reach the
//! collector as before, and the collector forwards them here from its own thread), and reports
//! are built from the collector's full data, never from a snapshot. Deleting the TUI changes
//! no number.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Clock;
use super::histogram::LatencyHistogram;
use super::memory::MemorySample;
use super::span::Span;

/// How often a snapshot is published: 10 per second, above the TUI's needs at ≤ 15 fps (it
/// redraws the latest one) and cheap (a snapshot is a few kilobytes).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// How far back the timeline reaches: long enough to see several pages of a slow stage (an OCR
/// page takes ~1.6 s on CPU), short enough that short batches stay visible blocks.
pub const TIMELINE_WINDOW_NS: u64 = 20_000_000_000;

/// Spans kept for the timeline, at most (micro-batches of fast stages can be many).
const MAX_RECENT_SPANS: usize = 4096;

/// Memory samples kept for the sparklines.
const MAX_MEMORY_POINTS: usize = 240;

/// Histogram buckets shown.
pub const HISTOGRAM_BUCKETS: usize = 24;

/// One stage call, as the timeline draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSpan {
    /// The lane: `render-thread:0`, `render-proc:1`, `device·ocr`, …
    pub lane: String,
    pub stage: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub items: u32,
    pub ok: bool,
}

/// A latency distribution, summarized for drawing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramView {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// (upper bound in ns, count), log-spaced from the smallest to the largest value.
    pub buckets: Vec<(u64, u64)>,
}

impl HistogramView {
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let inner = h.inner();
        let (lo, hi) = (inner.min().max(1) as f64, inner.max().max(1) as f64);
        let span = (hi / lo).ln().max(1e-9);
        let n = HISTOGRAM_BUCKETS;
        let mut buckets: Vec<(u64, u64)> = (1..=n)
            .map(|i| ((lo * (span * i as f64 / n as f64).exp()).round() as u64, 0))
            .collect();
        for v in inner.iter_recorded() {
            let x = (v.value_iterated_to().max(1) as f64).clamp(lo, hi);
            let i = ((x / lo).ln() / span * n as f64).ceil() as usize;
            buckets[i.clamp(1, n) - 1].1 += v.count_at_value();
        }
        Self {
            count: h.len(),
            p50_ns: h.quantile_ns(0.5),
            p90_ns: h.quantile_ns(0.9),
            p99_ns: h.quantile_ns(0.99),
            max_ns: inner.max(),
            buckets,
        }
    }
}

/// One stage's live statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageView {
    pub stage: String,
    pub calls: u64,
    pub items: u64,
    pub busy_ns: u64,
    /// Service time per call.
    pub service: HistogramView,
    /// Autoregressive stages: what they generated so far.
    pub generation: Option<crate::models::generate::GenerationStats>,
}

/// A queue of the streaming strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    pub stage: String,
    pub depth: usize,
    pub capacity: usize,
}

/// What the TUI draws: everything it shows, as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub strategy: String,
    /// Time since the strategy's run started.
    pub elapsed_ns: u64,
    pub pages_total: u64,
    pub pages_done: u64,
    pub pages_failed: u64,
    /// Pages rendered and not yet done.
    pub pages_in_flight: u64,
    /// Spans that ended within the timeline window, oldest first.
    pub spans: Vec<LiveSpan>,
    /// Every lane seen in this run, in display order.
    pub lanes: Vec<String>,
    pub stages: Vec<StageView>,
    pub page_latency: HistogramView,
    pub memory: Vec<MemorySample>,
    pub system_total_bytes: u64,
    pub accelerator_total_bytes: Option<u64>,
    pub queues: Vec<QueueView>,
    /// A warning the display must show with the run (e.g. untrained models).
    pub notice: Option<String>,
}

impl Snapshot {
    /// Pages per second so far.
    pub fn pages_per_s(&self) -> f64 {
        if self.elapsed_ns == 0 {
            0.0
        } else {
            self.pages_done as f64 / (self.elapsed_ns as f64 / 1e9)
        }
    }

    /// Seconds left at the current rate, once a page is done.
    pub fn eta_s(&self) -> Option<f64> {
        let rate = self.pages_per_s();
        (rate > 0.0).then(|| self.pages_total.saturating_sub(self.pages_done) as f64 / rate)
    }
}

#[derive(Default)]
struct LiveState {
    clock: Option<Clock>,
    /// Set when the run ended: time stops there (pages/s and the timeline hold still).
    ended_ns: Option<u64>,
    strategy: String,
    pages_total: u64,
    pages_done: u64,
    pages_failed: u64,
    rendered: u64,
    done_after_render: u64,
    recent: VecDeque<LiveSpan>,
    lanes: Vec<String>,
    stages: BTreeMap<String, (u64, u64, u64, LatencyHistogram)>,
    generation: BTreeMap<String, crate::models::generate::GenerationStats>,
    stage_order: Vec<String>,
    page_latency: LatencyHistogram,
    memory: VecDeque<MemorySample>,
    system_total_bytes: u64,
    accelerator_total_bytes: Option<u64>,
    queues: Vec<QueueView>,
    notice: Option<String>,
}

/// The live board. Shared as `Arc<LiveBoard>`.
#[derive(Default)]
pub struct LiveBoard {
    state: Mutex<LiveState>,
    latest: Mutex<Arc<Snapshot>>,
}

impl LiveBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new strategy starts: everything is reset.
    pub fn begin(&self, strategy: &str, pages_total: u64, clock: Clock) {
        if let Ok(mut s) = self.state.lock() {
            *s = LiveState {
                clock: Some(clock),
                strategy: strategy.to_string(),
                pages_total,
                ..LiveState::default()
            };
        }
        self.publish();
    }

    /// A warning shown with this run until the next `begin` (e.g. untrained models).
    pub fn set_notice(&self, notice: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.notice = notice;
        }
        self.publish();
    }

    /// The run ended: its snapshots keep its final time.
    pub fn end(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.ended_ns = s.clock.map(|c| c.now_ns());
        }
        self.publish();
    }

    /// A span, forwarded by the collector.
    pub fn on_span(&self, span: &Span) {
        let Ok(mut s) = self.state.lock() else { return };
        let stage = span.stage.name().to_string();
        let lane = match span.worker.kind {
            // One lane per stage; with several model workers, one per worker and stage.
            super::span::WorkerKind::Device if span.worker.index > 0 => {
                format!("device{}·{stage}", span.worker.index)
            }
            super::span::WorkerKind::Device => format!("device·{stage}"),
            _ => span.worker.to_string(),
        };
        if !s.lanes.contains(&lane) {
            s.lanes.push(lane.clone());
            s.lanes.sort_by_key(|l| lane_rank(l));
        }
        if !s.stage_order.contains(&stage) {
            s.stage_order.push(stage.clone());
        }
        let n = span.items.len() as u64;
        if span.stage == crate::vocab::StageKind::Render && span.ok {
            s.rendered += n;
        }
        if let Some(g) = &span.generation {
            s.generation.entry(stage.clone()).or_default().add(g);
        }
        let entry = s.stages.entry(stage.clone()).or_default();
        entry.0 += 1;
        entry.1 += n;
        entry.2 += span.end_ns.saturating_sub(span.start_ns);
        entry.3.record(span.end_ns.saturating_sub(span.start_ns));
        if s.recent.len() == MAX_RECENT_SPANS {
            s.recent.pop_front();
        }
        s.recent.push_back(LiveSpan {
            lane,
            stage,
            start_ns: span.start_ns,
            end_ns: span.end_ns,
            items: n as u32,
            ok: span.ok,
        });
    }

    /// A memory sample, forwarded by the sampler.
    pub fn on_memory(&self, sample: &MemorySample, system_total: u64, accel_total: Option<u64>) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.memory.len() == MAX_MEMORY_POINTS {
            s.memory.pop_front();
        }
        s.memory.push_back(*sample);
        s.system_total_bytes = system_total;
        s.accelerator_total_bytes = accel_total;
    }

    /// A page left the pipeline after `latency_ns`; `rendered`: it got past rendering.
    pub fn on_page(&self, ok: bool, rendered: bool, latency_ns: u64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.pages_done += 1;
        s.done_after_render += u64::from(rendered);
        if ok {
            s.page_latency.record(latency_ns);
        } else {
            s.pages_failed += 1;
        }
    }

    /// The streaming strategy's queue depths.
    pub fn on_queues(&self, queues: Vec<QueueView>) {
        if let Ok(mut s) = self.state.lock() {
            s.queues = queues;
        }
    }

    /// Builds a snapshot of the current state and makes it the latest.
    pub fn publish(&self) {
        let snap = {
            let Ok(s) = self.state.lock() else { return };
            let now = s.ended_ns.or(s.clock.map(|c| c.now_ns())).unwrap_or(0);
            let from = now.saturating_sub(TIMELINE_WINDOW_NS);
            Snapshot {
                notice: s.notice.clone(),
                strategy: s.strategy.clone(),
                elapsed_ns: now,
                pages_total: s.pages_total,
                pages_done: s.pages_done,
                pages_failed: s.pages_failed,
                pages_in_flight: s.rendered.saturating_sub(s.done_after_render),
                spans: s
                    .recent
                    .iter()
                    .filter(|x| x.end_ns >= from)
                    .cloned()
                    .collect(),
                lanes: s.lanes.clone(),
                stages: s
                    .stage_order
                    .iter()
                    .filter_map(|name| {
                        s.stages.get(name).map(|(calls, items, busy, h)| StageView {
                            stage: name.clone(),
                            calls: *calls,
                            items: *items,
                            busy_ns: *busy,
                            service: HistogramView::of(h),
                            generation: s.generation.get(name).copied(),
                        })
                    })
                    .collect(),
                page_latency: HistogramView::of(&s.page_latency),
                memory: s.memory.iter().copied().collect(),
                system_total_bytes: s.system_total_bytes,
                accelerator_total_bytes: s.accelerator_total_bytes,
                queues: s.queues.clone(),
            }
        };
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Arc::new(snap);
        }
    }

    /// The latest published snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Publishes every [`PUBLISH_INTERVAL`] on a thread of its own until the returned guard is
    /// dropped.
    pub fn start_publisher(self: &Arc<Self>) -> Publisher {
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let board = self.clone();
        let handle = std::thread::Builder::new()
            .name("pipebench-live".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(PUBLISH_INTERVAL)
                {
                    board.publish();
                }
                board.publish();
            })
            .ok();
        Publisher {
            stop: Some(stop),
            handle,
        }
    }
}

/// Render lanes first, then the device's stages in pipeline order.
fn lane_rank(lane: &str) -> (u8, String) {
    let stage_rank = crate::vocab::StageKind::MODELS
        .iter()
        .position(|s| lane.ends_with(s.name()))
        .unwrap_or(9);
    if lane.starts_with("render") {
        (0, lane.to_string())
    } else {
        (1 + stage_rank as u8, lane.to_string())
    }
}

/// Stops the publisher thread when dropped.
pub struct Publisher {
    stop: Option<crossbeam_channel::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::span::{WorkerId, WorkerKind};
    use crate::vocab::StageKind;

    fn span(stage: StageKind, kind: WorkerKind, start: u64, end: u64, n: u32) -> Span {
        Span {
            stage,
            worker: WorkerId { kind, index: 0 },
            items: (0..n).collect(),
            start_ns: start,
            end_ns: end,
            queue_wait_ns: vec![0; n as usize],
            ok: true,
            retry: false,
            worker_ns: None,
            generation: None,
        }
    }

    #[test]
    fn snapshots_follow_spans_pages_and_queues() {
        let board = LiveBoard::new();
        board.begin("streaming", 10, Clock::start());
        board.on_span(&span(StageKind::Ocr, WorkerKind::Device, 1_000, 5_000, 1));
        board.on_span(&span(
            StageKind::Render,
            WorkerKind::RenderThread,
            0,
            900,
            3,
        ));
        board.on_page(true, true, 4_000_000);
        board.on_page(false, false, 1);
        board.on_queues(vec![QueueView {
            stage: "ocr".into(),
            depth: 1,
            capacity: 2,
        }]);
        assert_eq!(board.latest().pages_done, 0, "nothing published yet");
        board.publish();
        let s = board.latest();
        assert_eq!((s.pages_total, s.pages_done, s.pages_failed), (10, 2, 1));
        // 3 rendered, 1 of them done (the failed page never rendered): 2 in flight.
        assert_eq!(s.pages_in_flight, 2);
        assert_eq!(s.lanes, vec!["render-thread:0", "device·ocr"]);
        assert_eq!(s.stages[0].stage, "ocr");
        assert_eq!(s.stages[0].service.count, 1);
        assert_eq!(s.page_latency.count, 1);
        assert_eq!(s.queues[0].capacity, 2);
        // A new strategy starts from nothing.
        board.begin("next", 5, Clock::start());
        assert_eq!(board.latest().pages_done, 0);
        assert!(board.latest().spans.is_empty());
    }

    #[test]
    fn histogram_buckets_cover_every_value_once() {
        let mut h = LatencyHistogram::new();
        for v in [1_000u64, 2_000, 2_000, 50_000, 1_000_000] {
            h.record(v);
        }
        let v = HistogramView::of(&h);
        assert_eq!(v.buckets.len(), HISTOGRAM_BUCKETS);
        assert_eq!(v.buckets.iter().map(|b| b.1).sum::<u64>(), 5);
        assert!(v.p50_ns >= 1_900 && v.p50_ns <= 2_100, "{}", v.p50_ns);
        assert!(v.buckets.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
