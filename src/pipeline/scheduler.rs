//! The micro-batch scheduler of streaming-microbatch, as plain data: bounded queues in front of
//! each model stage, the rule that says when a partial batch may leave, the scheduling policy
//! that picks among ready batches, and the credits that bound how many pages are rendered
//! ahead. No threads, no clock: the strategy feeds it events and the time, so every rule is
//! unit-tested here.
//!
//! Queues are bounded by reservation: a batch of stage `s` is dispatched only if stage `s + 1`'s
//! queue has room for all its pages, and a page is rendered only if the first stage's queue has
//! room for it. Every queue holds at least one batch (`capacity ≥ batch_size`, checked when the
//! strategy file is read), so a full queue always has a full batch ready; by induction the last
//! stage can always run, and the pipeline cannot deadlock whatever the policy.
//!
//! Deterministic mode: batches are fixed chunks of the page order (for batch size `B`, pages
//! `[cB, (c+1)B)` less those that failed earlier). A chunk leaves once every page before its end
//! has left the previous stage. Pages enter the first stage in order (a reorder buffer sits
//! behind rendering) and each stage runs its chunks in order, so pages reach every queue in
//! order and batch composition does not depend on timing.
//!
//! Model workers (`device.workers`): up to that many batches run at once, each reserving its
//! places downstream as one batch alone does, so the bound and the deadlock argument hold. Two
//! batches of one stage may finish out of order; in deterministic mode a page entering a queue
//! takes its place in page order, so chunks stay fixed whatever finishes first.

use std::collections::{BTreeMap, VecDeque};

use crate::config::SchedulingPolicy;

/// A page waiting in a queue.
#[derive(Debug)]
pub struct Item<T> {
    /// Position in the run's page order.
    pub seq: usize,
    /// When it became ready for this stage (the clock's nanoseconds).
    pub ready_ns: u64,
    pub payload: T,
}

/// One stage's queue and batching parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueParams {
    pub batch_size: usize,
    pub capacity: usize,
    pub max_wait_ns: u64,
}

struct StageQueue<T> {
    params: QueueParams,
    items: VecDeque<Item<T>>,
    /// Places reserved for the pages of a batch of the previous stage now on the device.
    incoming: usize,
}

/// A batch on a model worker: its id, stage, smallest page and size.
#[derive(Debug, Clone, Copy)]
struct Running {
    id: u64,
    stage: usize,
    min_seq: usize,
    len: usize,
}

pub struct Scheduler<T> {
    queues: Vec<StageQueue<T>>,
    policy: SchedulingPolicy,
    deterministic: bool,
    /// Pages in the run.
    total: usize,
    /// Pages handed to rendering so far (their seqs are `0..admitted`).
    admitted: usize,
    /// No page will be admitted any more (all were, or the run was interrupted).
    input_closed: bool,
    /// Pages being rendered.
    rendering: usize,
    /// Deterministic mode: rendered pages (None: failed to render) waiting for their turn.
    reorder: BTreeMap<usize, Option<Item<T>>>,
    /// Deterministic mode: the next page to enter the first stage.
    next_in_order: usize,
    /// Batches may run at once (model workers).
    workers: usize,
    /// Batches on the workers now.
    running: Vec<Running>,
    /// The id of the next batch dispatched.
    next_id: u64,
}

/// A batch dispatched to a model worker: hand `id` back to [`Scheduler::batch_done`].
#[derive(Debug)]
pub struct Batch<T> {
    pub id: u64,
    /// Index of the model stage.
    pub stage: usize,
    pub items: Vec<Item<T>>,
}

impl<T> Scheduler<T> {
    pub fn new(
        stages: &[QueueParams],
        total: usize,
        policy: SchedulingPolicy,
        deterministic: bool,
        workers: usize,
    ) -> Self {
        assert!(
            !stages.is_empty(),
            "a pipeline has at least one model stage"
        );
        Self {
            queues: stages
                .iter()
                .map(|&params| StageQueue {
                    params: QueueParams {
                        batch_size: params.batch_size.max(1),
                        capacity: params.capacity.max(params.batch_size.max(1)),
                        max_wait_ns: params.max_wait_ns,
                    },
                    items: VecDeque::new(),
                    incoming: 0,
                })
                .collect(),
            policy,
            deterministic,
            total,
            admitted: 0,
            input_closed: total == 0,
            rendering: 0,
            reorder: BTreeMap::new(),
            next_in_order: 0,
            workers: workers.max(1),
            running: Vec::new(),
            next_id: 0,
        }
    }

    /// Admits no more pages (Ctrl-C): those admitted still run to the end.
    pub fn close_input(&mut self) {
        self.input_closed = true;
    }

    /// The next page to render, if the first stage's queue has room for it.
    pub fn admit(&mut self) -> Option<usize> {
        let q = &self.queues[0];
        let held = q.items.len() + q.incoming + self.rendering + self.reorder.len();
        if self.input_closed || held >= q.params.capacity {
            return None;
        }
        let seq = self.admitted;
        self.admitted += 1;
        self.rendering += 1;
        if self.admitted == self.total {
            self.input_closed = true;
        }
        Some(seq)
    }

    /// A page finished rendering: `Some(item)` enters the first stage, `None` (it failed)
    /// leaves the pipeline.
    pub fn rendered(&mut self, seq: usize, item: Option<Item<T>>) {
        self.rendering = self.rendering.saturating_sub(1);
        if !self.deterministic {
            if let Some(item) = item {
                self.queues[0].items.push_back(item);
            }
            return;
        }
        self.reorder.insert(seq, item);
        while let Some(entry) = self.reorder.remove(&self.next_in_order) {
            if let Some(item) = entry {
                self.queues[0].items.push_back(item);
            }
            self.next_in_order += 1;
        }
    }

    /// A page that finished stage `stage - 1` enters stage `stage`'s queue (in deterministic
    /// mode at its place in page order: batches of one stage on two workers may finish out of
    /// order).
    pub fn push(&mut self, stage: usize, item: Item<T>) {
        let items = &mut self.queues[stage].items;
        if self.deterministic {
            let at = items.partition_point(|i| i.seq < item.seq);
            items.insert(at, item);
        } else {
            items.push_back(item);
        }
    }

    /// Batch `id` is done: its reservations downstream are released (the caller then pushes
    /// the pages that go on).
    pub fn batch_done(&mut self, id: u64) {
        let Some(at) = self.running.iter().position(|r| r.id == id) else {
            return;
        };
        let r = self.running.swap_remove(at);
        if let Some(next) = self.queues.get_mut(r.stage + 1) {
            next.incoming = next.incoming.saturating_sub(r.len);
        }
    }

    /// True while every model worker has a batch.
    pub fn device_busy(&self) -> bool {
        self.running.len() >= self.workers
    }

    /// Pages waiting in each stage's queue.
    pub fn depths(&self) -> Vec<usize> {
        self.queues.iter().map(|q| q.items.len()).collect()
    }

    /// Every admitted page has left the pipeline and no more will come.
    pub fn finished(&self) -> bool {
        self.entry_drained()
            && self.running.is_empty()
            && self.queues.iter().all(|q| q.items.is_empty())
    }

    /// Every page before `low(stage)` has left `stage` (deterministic mode, where pages move
    /// in order): the smallest page still in it, in front of it or on its way to it.
    fn low(&self, stage: usize) -> usize {
        let mut low = self.upstream_low(stage);
        if let Some(front) = self.queues[stage].items.front() {
            low = low.min(front.seq);
        }
        for r in self.running.iter().filter(|r| r.stage == stage) {
            low = low.min(r.min_seq);
        }
        low
    }

    /// No more pages can reach `stage`: everything upstream has drained.
    fn upstream_drained(&self, stage: usize) -> bool {
        self.entry_drained()
            && self.queues[..stage].iter().all(|q| q.items.is_empty())
            && self.running.iter().all(|r| r.stage >= stage)
    }

    /// How many pages at the front of `stage`'s queue form a batch that may leave now.
    fn ready_len(&self, stage: usize, now_ns: u64) -> Option<usize> {
        let q = &self.queues[stage];
        let front = q.items.front()?;
        let b = q.params.batch_size;
        let len = if self.deterministic {
            let chunk_end = (front.seq / b + 1) * b;
            let limit = if self.input_closed {
                self.admitted
            } else {
                self.total
            };
            if self.upstream_low(stage) < chunk_end.min(limit) {
                return None;
            }
            q.items.iter().take_while(|i| i.seq < chunk_end).count()
        } else {
            let full = q.items.len() >= b;
            let waited = now_ns.saturating_sub(front.ready_ns) >= q.params.max_wait_ns;
            if !(full || waited || self.upstream_drained(stage)) {
                return None;
            }
            q.items.len().min(b)
        };
        // Room downstream for every page of the batch.
        if let Some(next) = self.queues.get(stage + 1)
            && next.items.len() + next.incoming + len > next.params.capacity
        {
            return None;
        }
        Some(len)
    }

    /// No page is being rendered, waits to enter the first stage, or will be admitted.
    fn entry_drained(&self) -> bool {
        self.input_closed && self.rendering == 0 && self.reorder.is_empty()
    }

    /// Every page before this one has left the stages before `stage` (for the first stage:
    /// has entered it, or failed to render).
    fn upstream_low(&self, stage: usize) -> usize {
        match stage {
            0 if self.entry_drained() => self.admitted,
            0 => self.next_in_order,
            s => self.low(s - 1),
        }
    }

    /// Picks the next batch by the policy, if a model worker is free and a batch is ready; it
    /// is on that worker from now until [`Scheduler::batch_done`].
    pub fn next_batch(&mut self, now_ns: u64) -> Option<Batch<T>> {
        if self.device_busy() {
            return None;
        }
        let ready: Vec<(usize, usize)> = (0..self.queues.len())
            .filter_map(|s| self.ready_len(s, now_ns).map(|n| (s, n)))
            .collect();
        let oldest = |s: usize| {
            self.queues[s]
                .items
                .front()
                .map_or(u64::MAX, |i| i.ready_ns)
        };
        let &(stage, len) = match self.policy {
            SchedulingPolicy::LatestStageFirst => ready.last(),
            SchedulingPolicy::EarliestStageFirst => ready.first(),
            SchedulingPolicy::OldestFirst => ready.iter().min_by_key(|(s, _)| (oldest(*s), *s)),
        }?;
        let batch: Vec<Item<T>> = self.queues[stage].items.drain(..len).collect();
        let min_seq = batch.iter().map(|i| i.seq).min().unwrap_or(usize::MAX);
        let id = self.next_id;
        self.next_id += 1;
        self.running.push(Running {
            id,
            stage,
            min_seq,
            len,
        });
        if let Some(next) = self.queues.get_mut(stage + 1) {
            next.incoming += len;
        }
        Some(Batch {
            id,
            stage,
            items: batch,
        })
    }

    /// Up to `n` more pages from the front of running batch `id`'s stage queue join that batch:
    /// a generating stage refilling the decode places its finished sequences freed from its
    /// queue while it runs (continuous batching across micro-batches). Each page takes a place
    /// in the next queue as a dispatched one does, so only as many join as that queue has room
    /// for. None in deterministic mode (batches are fixed chunks), or once the batch is done.
    pub fn top_up(&mut self, id: u64, n: usize) -> Vec<Item<T>> {
        if self.deterministic || n == 0 {
            return Vec::new();
        }
        let Some(at) = self.running.iter().position(|r| r.id == id) else {
            return Vec::new();
        };
        let stage = self.running[at].stage;
        let room = self.queues.get(stage + 1).map_or(usize::MAX, |next| {
            next.params
                .capacity
                .saturating_sub(next.items.len() + next.incoming)
        });
        let len = n.min(room).min(self.queues[stage].items.len());
        let items: Vec<Item<T>> = self.queues[stage].items.drain(..len).collect();
        let r = &mut self.running[at];
        r.len += len;
        if let Some(min) = items.iter().map(|i| i.seq).min() {
            r.min_seq = r.min_seq.min(min);
        }
        if let Some(next) = self.queues.get_mut(stage + 1) {
            next.incoming += len;
        }
        items
    }

    /// When a waiting partial batch may leave (its oldest page reaches the stage's wait
    /// limit): the time to wake up if nothing else happens first. None in deterministic mode,
    /// where batches wait for their own pages.
    pub fn deadline(&self) -> Option<u64> {
        if self.deterministic {
            return None;
        }
        self.queues
            .iter()
            .filter_map(|q| {
                let front = q.items.front()?;
                (q.items.len() < q.params.batch_size)
                    .then(|| front.ready_ns.saturating_add(q.params.max_wait_ns))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(batch_size: usize, capacity: usize, max_wait_ns: u64) -> QueueParams {
        QueueParams {
            batch_size,
            capacity,
            max_wait_ns,
        }
    }

    fn item(seq: usize, ready_ns: u64) -> Item<()> {
        Item {
            seq,
            ready_ns,
            payload: (),
        }
    }

    /// The next batch as (stage, pages).
    fn next(s: &mut Scheduler<()>, now: u64) -> Option<(usize, Vec<Item<()>>)> {
        s.next_batch(now).map(|b| (b.stage, b.items))
    }

    /// The batch that has run longest is done.
    fn done(s: &mut Scheduler<()>) {
        let id = s.running.first().expect("a batch runs").id;
        s.batch_done(id);
    }

    fn seqs(batch: &[Item<()>]) -> Vec<usize> {
        batch.iter().map(|i| i.seq).collect()
    }

    /// Admits and renders every page the credits allow, at `now`.
    fn render_all(s: &mut Scheduler<()>, now: u64) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(seq) = s.admit() {
            s.rendered(seq, Some(item(seq, now)));
            out.push(seq);
        }
        out
    }

    #[test]
    fn rendering_stops_when_the_first_queue_is_full() {
        let mut s = Scheduler::new(
            &[params(2, 3, 0)],
            10,
            SchedulingPolicy::LatestStageFirst,
            false,
            1,
        );
        assert_eq!(s.admit(), Some(0));
        assert_eq!(s.admit(), Some(1));
        assert_eq!(s.admit(), Some(2));
        // Three pages held (rendering counts): no more credit.
        assert_eq!(s.admit(), None);
        s.rendered(0, Some(item(0, 0)));
        assert_eq!(s.admit(), None);
        // A failed render frees its place.
        s.rendered(1, None);
        assert_eq!(s.admit(), Some(3));
    }

    #[test]
    fn a_partial_batch_leaves_when_full_or_when_its_wait_passes() {
        let mut s = Scheduler::new(
            &[params(4, 8, 1_000)],
            10,
            SchedulingPolicy::LatestStageFirst,
            false,
            1,
        );
        for seq in 0..2 {
            assert_eq!(s.admit(), Some(seq));
            s.rendered(seq, Some(item(seq, 100 + seq as u64)));
        }
        assert!(next(&mut s, 500).is_none(), "2 of 4 and not waited yet");
        assert_eq!(s.deadline(), Some(1_100));
        let (stage, batch) = next(&mut s, 1_100).expect("the wait has passed");
        assert_eq!((stage, seqs(&batch)), (0, vec![0, 1]));
        assert!(next(&mut s, 1_100).is_none(), "the device is busy");
        done(&mut s);
        // A full batch leaves at once.
        for seq in 2..6 {
            assert_eq!(s.admit(), Some(seq));
            s.rendered(seq, Some(item(seq, 2_000)));
        }
        let (_, batch) = next(&mut s, 2_000).expect("full");
        assert_eq!(seqs(&batch), vec![2, 3, 4, 5]);
    }

    #[test]
    fn the_last_pages_leave_without_waiting() {
        let mut s = Scheduler::new(
            &[params(4, 8, u64::MAX)],
            3,
            SchedulingPolicy::LatestStageFirst,
            false,
            1,
        );
        assert_eq!(render_all(&mut s, 0), vec![0, 1, 2]);
        let (_, batch) = next(&mut s, 0).expect("nothing more can come");
        assert_eq!(seqs(&batch), vec![0, 1, 2]);
        done(&mut s);
        assert!(s.finished());
    }

    #[test]
    fn policies_choose_among_ready_batches() {
        let run = |policy| {
            let mut s = Scheduler::new(&[params(1, 4, 0), params(1, 4, 0)], 4, policy, false, 1);
            render_all(&mut s, 10);
            // An older page already waits for stage 1.
            s.push(1, item(9, 5));
            let (stage, _) = next(&mut s, 20).expect("ready");
            stage
        };
        assert_eq!(run(SchedulingPolicy::LatestStageFirst), 1);
        assert_eq!(run(SchedulingPolicy::EarliestStageFirst), 0);
        assert_eq!(run(SchedulingPolicy::OldestFirst), 1);
        let mut s = Scheduler::new(
            &[params(1, 4, 0), params(1, 4, 0)],
            4,
            SchedulingPolicy::OldestFirst,
            false,
            1,
        );
        render_all(&mut s, 10);
        s.push(1, item(9, 50));
        assert_eq!(next(&mut s, 60).map(|b| b.0), Some(0));
    }

    #[test]
    fn a_full_downstream_queue_holds_the_stage_before_it_back() {
        let mut s = Scheduler::new(
            &[params(1, 2, 0), params(2, 2, u64::MAX)],
            6,
            SchedulingPolicy::EarliestStageFirst,
            false,
            1,
        );
        render_all(&mut s, 0);
        // Stage 0 runs page 0 while page 1 waits; then page 1.
        for expected in [0, 1] {
            let (stage, batch) = next(&mut s, 0).expect("stage 0 ready");
            assert_eq!((stage, seqs(&batch)), (0, vec![expected]));
            done(&mut s);
            for i in batch {
                s.push(1, i);
            }
            render_all(&mut s, 0);
        }
        // Stage 1's queue is full (2 of 2): stage 0 may not run although it is preferred.
        let (stage, batch) = next(&mut s, 0).expect("stage 1 ready");
        assert_eq!((stage, seqs(&batch)), (1, vec![0, 1]));
    }

    #[test]
    fn deterministic_batches_are_chunks_of_the_page_order_whatever_the_timing() {
        let mut s = Scheduler::new(
            &[params(2, 4, 0), params(3, 6, 0)],
            5,
            SchedulingPolicy::LatestStageFirst,
            true,
            1,
        );
        let admitted: Vec<usize> = std::iter::from_fn(|| s.admit()).collect();
        assert_eq!(admitted, vec![0, 1, 2, 3]);
        // Renders finish out of order; page 0 is late.
        s.rendered(1, Some(item(1, 0)));
        assert!(next(&mut s, 0).is_none(), "page 0 is not in yet");
        s.rendered(0, Some(item(0, 0)));
        s.rendered(3, Some(item(3, 0)));
        let (stage, batch) = next(&mut s, 0).expect("chunk [0, 2)");
        assert_eq!((stage, seqs(&batch)), (0, vec![0, 1]));
        done(&mut s);
        for i in batch {
            s.push(1, i);
        }
        // Stage 1's chunk [0, 3) needs page 2, still rendering: stage 0's chunk [2, 4) is not
        // complete either. Page 2 fails to render.
        assert!(next(&mut s, 0).is_none());
        s.rendered(2, None);
        assert_eq!(s.admit(), Some(4));
        s.rendered(4, Some(item(4, 0)));
        // Chunk [2, 4) of stage 0 is page 3 alone; stage 1's chunk [0, 3) waits for it to
        // have left stage 0 — it has (page 2 failed), so stage 1 runs [0, 1] first.
        let (stage, batch) = next(&mut s, 0).expect("ready");
        assert_eq!((stage, seqs(&batch)), (1, vec![0, 1]));
        done(&mut s);
        let (stage, batch) = next(&mut s, 0).expect("ready");
        assert_eq!((stage, seqs(&batch)), (0, vec![3]));
        done(&mut s);
        for i in batch {
            s.push(1, i);
        }
        let (stage, batch) = next(&mut s, 0).expect("ready");
        assert_eq!((stage, seqs(&batch)), (0, vec![4]));
        done(&mut s);
        for i in batch {
            s.push(1, i);
        }
        let (stage, batch) = next(&mut s, 0).expect("the last chunk");
        assert_eq!((stage, seqs(&batch)), (1, vec![3, 4]));
        done(&mut s);
        assert!(s.finished());
    }

    #[test]
    fn an_interrupt_drains_what_was_admitted() {
        let mut s = Scheduler::new(
            &[params(4, 4, u64::MAX)],
            100,
            SchedulingPolicy::LatestStageFirst,
            true,
            1,
        );
        assert_eq!(s.admit(), Some(0));
        assert_eq!(s.admit(), Some(1));
        s.close_input();
        assert_eq!(s.admit(), None);
        s.rendered(0, Some(item(0, 0)));
        s.rendered(1, Some(item(1, 0)));
        let (_, batch) = next(&mut s, 0).expect("the chunk is cut at the last admitted page");
        assert_eq!(seqs(&batch), vec![0, 1]);
        done(&mut s);
        assert!(s.finished());
    }

    #[test]
    fn two_workers_run_two_batches_and_reserve_room_for_both() {
        let mut s = Scheduler::new(
            &[params(1, 4, 0), params(1, 2, u64::MAX)],
            4,
            SchedulingPolicy::LatestStageFirst,
            false,
            2,
        );
        render_all(&mut s, 0);
        let a = s.next_batch(0).expect("worker 1");
        assert!(!s.device_busy(), "one of two workers is free");
        let b = s.next_batch(0).expect("worker 2");
        assert!(s.device_busy());
        assert_eq!((a.stage, b.stage), (0, 0));
        assert!(s.next_batch(0).is_none(), "both workers are busy");
        // The second batch finishes first; stage 1's two places are both reserved, so stage 0
        // may not start a third page until one of them leaves stage 1.
        s.batch_done(b.id);
        for i in b.items {
            s.push(1, i);
        }
        let c = s.next_batch(0).expect("stage 1 has a page");
        assert_eq!((c.stage, seqs(&c.items)), (1, vec![1]));
        s.batch_done(a.id);
        for i in a.items {
            s.push(1, i);
        }
        let d = s.next_batch(0).expect("stage 1 again");
        assert_eq!((d.stage, seqs(&d.items)), (1, vec![0]));
        assert!(!s.finished());
        s.batch_done(c.id);
        s.batch_done(d.id);
        render_all(&mut s, 0);
        while let Some(b) = s.next_batch(0) {
            s.batch_done(b.id);
            if b.stage == 0 {
                for i in b.items {
                    s.push(1, i);
                }
            }
        }
        assert!(s.finished());
    }

    #[test]
    fn a_running_batch_takes_more_pages_while_the_next_queue_has_room() {
        let mut s = Scheduler::new(
            &[params(1, 4, 0), params(1, 2, 0)],
            4,
            SchedulingPolicy::LatestStageFirst,
            false,
            1,
        );
        assert_eq!(render_all(&mut s, 0), vec![0, 1, 2, 3]);
        let b = s.next_batch(0).expect("a batch");
        assert_eq!((b.stage, seqs(&b.items)), (0, vec![0]));
        // The next queue holds 2: one place is the batch's own, so one page may join.
        assert_eq!(seqs(&s.top_up(b.id, 3)), vec![1]);
        assert!(s.top_up(b.id, 1).is_empty(), "the next queue is full");
        s.batch_done(b.id);
        for seq in [0, 1] {
            s.push(1, item(seq, 0));
        }
        // Pages 0 and 1 fill stage 1's queue: stage 0 waits; stage 1 runs.
        let b1 = s.next_batch(0).expect("stage 1 runs");
        assert_eq!((b1.stage, seqs(&b1.items)), (1, vec![0]));
        // The last stage has no queue after it: it takes what its own queue holds.
        assert_eq!(seqs(&s.top_up(b1.id, 5)), vec![1]);
        assert_eq!(s.depths(), vec![2, 0]);
        s.batch_done(b1.id);
        assert!(
            s.top_up(b1.id, 1).is_empty(),
            "a finished batch takes nothing"
        );
        // Deterministic mode never tops up: its batches are fixed chunks.
        let mut d = Scheduler::new(
            &[params(1, 4, 0)],
            2,
            SchedulingPolicy::LatestStageFirst,
            true,
            1,
        );
        render_all(&mut d, 0);
        let b = d.next_batch(0).expect("a batch");
        assert!(d.top_up(b.id, 1).is_empty());
    }

    #[test]
    fn deterministic_chunks_hold_when_two_workers_finish_out_of_order() {
        let mut s = Scheduler::new(
            &[params(1, 4, 0), params(2, 4, 0)],
            2,
            SchedulingPolicy::EarliestStageFirst,
            true,
            2,
        );
        render_all(&mut s, 0);
        let a = s.next_batch(0).expect("page 0");
        let b = s.next_batch(0).expect("page 1");
        assert_eq!((seqs(&a.items), seqs(&b.items)), (vec![0], vec![1]));
        // Page 1 leaves stage 0 first: stage 1's chunk [0, 2) waits for page 0, though a
        // worker is free.
        s.batch_done(b.id);
        for i in b.items {
            s.push(1, i);
        }
        assert!(!s.device_busy());
        assert!(s.next_batch(0).is_none(), "chunk [0, 2) waits for page 0");
        s.batch_done(a.id);
        for i in a.items {
            s.push(1, i);
        }
        let d = s.next_batch(0).expect("chunk [0, 2)");
        assert_eq!((d.stage, seqs(&d.items)), (1, vec![0, 1]));
        s.batch_done(d.id);
        assert!(s.finished());
    }
}
