//! streaming-microbatch: bounded queues between the stages; each model stage assembles
//! micro-batches that leave when full or when their oldest page has waited `max_wait_ms`; the
//! model workers (`device.workers`, one by default: the device thread) each run one batch at a
//! time, chosen by the scheduling policy; rendering (in-process on its own thread, or in
//! `render.processes` worker processes) overlaps the model work.
//!
//! Threads: the render thread(s) and the model workers do all the blocking work; the
//! orchestration — queues, batch assembly, wait limits, the policy — is an async task on a
//! single-threaded tokio runtime on a thread of its own, woken by their events and by timers.
//! Its rules live in [`super::scheduler`] as plain data, unit-tested there. The first model
//! worker is the calling (main) thread, as in the other strategies: the models allocate large
//! activations on every call, and from a spawned thread (a glibc secondary arena) those page-
//! fault in again each time — 2.0 M minor faults for 8 sample pages against 0.98 M on the main
//! thread, and OCR 10 % slower (`/usr/bin/time -v pipebench run … --max-pages 8`).
//!
//! Memory is bounded by the queues: a page is rendered only when the first stage's queue has a
//! place for it, and a batch runs only when the next queue has places for all its pages, so
//! pages in flight never exceed the sum of the queue capacities, whatever the corpus size.
//!
//! Continuous batching across micro-batches: a stage that generates in `continuous` mode
//! ([`Stage::takes_feed`]) gets a [`Feed`] on its queue with each batch. When its finished
//! sequences free decode places and the batch's own sequences have all started, it asks for
//! pages: the worker sends `Event::Hungry` and waits for the answer, and the orchestrator
//! moves pages from the front of that stage's queue into the running batch
//! ([`Scheduler::top_up`]) — as many as the next queue has room for, each reserving its place
//! there as a dispatched page does, so the memory bound holds. The batch's pages (those that
//! joined included) leave together when the call ends. Deterministic mode never tops up (its
//! batches are fixed chunks). With one model worker a running stage call holds the device, so
//! only pages already queued can join: `queue_batches` ≥ 2 (room downstream) and upstream
//! batches larger than the generating stage's give it pages to take. With several workers a
//! free worker takes a queued page as a batch of its own first (the orchestrator dispatches
//! before it answers), so pages join a running call only while every worker is busy.
//!
//! Outputs equal sequential's: the models batch pages without mixing them (see staged-batch),
//! so batch composition — which depends on timing unless `scheduler.deterministic` — does not
//! change them.

use std::time::Duration;

use tokio::sync::mpsc;

use super::executor::Executor;
use super::render_stage::InProcessRender;
use super::scheduler::{Item, QueueParams, Scheduler};
use super::workers::{self, ModelWorker};
use super::{PageRecord, RENDER_THREAD, RunContext, complete_page, new_work};
use crate::corpus::render::Renderer;
use crate::corpus::{Corpus, PageRef};
use crate::metrics::live::{LiveBoard, QueueView};
use crate::metrics::span::{WorkerId, WorkerKind};
use crate::models::{Feed, Stage};
use crate::page::PageWork;
use crate::vocab::StageKind;

/// How often the orchestrator looks at the Ctrl-C flag while nothing else wakes it.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// What the worker threads tell the orchestrator.
enum Event {
    /// A page finished rendering (`ok` false: it failed).
    Rendered {
        seq: usize,
        work: PageWork,
        ok: bool,
    },
    /// A model worker ran batch `id` of `stage` (an index into the model stages).
    Ran {
        id: u64,
        stage: usize,
        seqs: Vec<usize>,
        works: Vec<PageWork>,
    },
    /// Batch `id`'s stage has room for `n` more pages (continuous batching): the answer goes
    /// to `reply` — the pages that joined the batch, possibly none.
    Hungry {
        id: u64,
        n: usize,
        reply: crossbeam_channel::Sender<Vec<(usize, PageWork)>>,
    },
}

/// A running batch's way to its stage's queue: asks the orchestrator for pages and waits for
/// the answer (the orchestrator never waits on a worker, so this cannot deadlock).
struct QueueFeed<'a> {
    id: u64,
    events: &'a mpsc::UnboundedSender<Event>,
    /// The pages taken, in order (they join the job's).
    seqs: Vec<usize>,
}

impl Feed for QueueFeed<'_> {
    fn take(&mut self, n: usize) -> Vec<PageWork> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let asked = Event::Hungry {
            id: self.id,
            n,
            reply,
        };
        if n == 0 || self.events.send(asked).is_err() {
            return Vec::new();
        }
        let pages = answer.recv().unwrap_or_default();
        pages
            .into_iter()
            .map(|(seq, work)| {
                self.seqs.push(seq);
                work
            })
            .collect()
    }
}

/// A batch for a model worker.
struct DeviceJob {
    id: u64,
    stage: usize,
    seqs: Vec<usize>,
    works: Vec<PageWork>,
}

pub fn run(
    ctx: RunContext<'_>,
    mut model_workers: Vec<ModelWorker>,
    pages: &[PageRef],
) -> anyhow::Result<Vec<PageRecord>> {
    let mut renderers: Vec<(WorkerId, Box<dyn Stage>)> = if ctx.plan.render.processes == 0 {
        vec![(
            RENDER_THREAD,
            Box::new(InProcessRender::new(
                Renderer::new(),
                ctx.plan.render.spec(),
            )),
        )]
    } else {
        ctx.spawn_render_processes()?
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let worker = WorkerId {
                    kind: WorkerKind::RenderProcess,
                    index: i as u16,
                };
                (worker, Box::new(r) as Box<dyn Stage>)
            })
            .collect()
    };
    let kinds = model_workers
        .first()
        .map(ModelWorker::kinds)
        .unwrap_or_default();
    let queues: Vec<QueueParams> = kinds
        .iter()
        .map(|&k| {
            let st = ctx.plan.stage(k);
            let queue = st.queue.expect("streaming plans give every stage a queue");
            QueueParams {
                batch_size: st.batch_size,
                capacity: queue.queue_capacity,
                max_wait_ns: queue.max_wait_ns(),
            }
        })
        .collect();
    let scheduler = ctx.plan.scheduler();
    let sched = Scheduler::new(
        &queues,
        pages.len(),
        scheduler.policy,
        scheduler.deterministic,
        model_workers.len(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| anyhow::anyhow!("streaming-microbatch: starting the tokio runtime: {e}"))?;

    let exec = ctx.exec;
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<(usize, PageWork)>();
    // The scheduler dispatches at most one batch per worker: this never blocks.
    let (device_tx, device_rx) = crossbeam_channel::bounded::<DeviceJob>(model_workers.len());
    let (event_tx, event_rx) = mpsc::unbounded_channel::<Event>();
    let records = std::thread::scope(|s| {
        for (worker, mut renderer) in renderers.drain(..) {
            let (job_rx, event_tx) = (job_rx.clone(), event_tx.clone());
            s.spawn(move || {
                while let Ok((seq, work)) = job_rx.recv() {
                    let mut w = [work];
                    let ok = exec.run_stage(renderer.as_mut(), worker, &mut w);
                    let [work] = w;
                    if event_tx.send(Event::Rendered { seq, work, ok }).is_err() {
                        break;
                    }
                }
            });
        }
        let device_events = event_tx.clone();
        // Only the workers hold senders now: if they all ended, `recv` says so.
        drop((event_tx, job_rx));
        let orchestrator = Orchestrator {
            live: ctx.live.clone(),
            capacities: queues.iter().map(|q| q.capacity).collect(),
            exec,
            corpus: ctx.corpus,
            on_page: ctx.on_page,
            pages,
            kinds: &kinds,
            sched,
            jobs: job_tx,
            device: device_tx,
            records: Vec::with_capacity(pages.len()),
        };
        // Returning drops the job and device senders, which ends the worker threads and the
        // device loop below.
        let orchestration = s.spawn(move || runtime.block_on(orchestrator.run(event_rx)));
        // The model workers: this thread and one more per extra worker.
        workers::run_all(&mut model_workers, |id, stages| {
            while let Ok(mut job) = device_rx.recv() {
                let mut feed = QueueFeed {
                    id: job.id,
                    events: &device_events,
                    seqs: Vec::new(),
                };
                exec.run_stage_fed(stages[job.stage].as_mut(), id, &mut job.works, &mut feed);
                job.seqs.extend(feed.seqs);
                let ran = Event::Ran {
                    id: job.id,
                    stage: job.stage,
                    seqs: job.seqs,
                    works: job.works,
                };
                if device_events.send(ran).is_err() {
                    break;
                }
            }
        });
        drop(device_events);
        orchestration.join()
    });
    records.map_err(|_| anyhow::anyhow!("streaming-microbatch: the orchestrator panicked"))
}

struct Orchestrator<'a> {
    live: Option<std::sync::Arc<LiveBoard>>,
    capacities: Vec<usize>,
    exec: &'a Executor,
    corpus: &'a Corpus,
    on_page: &'a (dyn Fn(&PageRecord) + Sync),
    pages: &'a [PageRef],
    kinds: &'a [StageKind],
    sched: Scheduler<PageWork>,
    jobs: crossbeam_channel::Sender<(usize, PageWork)>,
    device: crossbeam_channel::Sender<DeviceJob>,
    records: Vec<PageRecord>,
}

impl Orchestrator<'_> {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) -> Vec<PageRecord> {
        let exec = self.exec;
        loop {
            if super::interrupted() {
                self.sched.close_input();
            }
            while let Some(seq) = self.sched.admit() {
                let mut work = new_work(self.corpus, self.pages[seq]);
                exec.admit(&mut work);
                if self.jobs.send((seq, work)).is_err() {
                    // No render thread is left (cannot happen while this task holds the
                    // receiver's threads in scope); stop admitting rather than spin.
                    self.sched.close_input();
                }
            }
            while let Some(batch) = self.sched.next_batch(exec.clock().now_ns()) {
                let (seqs, works) = batch.items.into_iter().map(|i| (i.seq, i.payload)).unzip();
                let job = DeviceJob {
                    id: batch.id,
                    stage: batch.stage,
                    seqs,
                    works,
                };
                if self.device.send(job).is_err() {
                    return self.records;
                }
            }
            if let Some(live) = &self.live {
                let depths = self.sched.depths();
                live.on_queues(
                    self.kinds
                        .iter()
                        .zip(depths)
                        .zip(&self.capacities)
                        .map(|((k, depth), &capacity)| QueueView {
                            stage: k.name().to_string(),
                            depth,
                            capacity,
                        })
                        .collect(),
                );
            }
            if self.sched.finished() {
                break;
            }
            let wait = if self.sched.device_busy() {
                None
            } else {
                self.sched
                    .deadline()
                    .map(|d| Duration::from_nanos(d.saturating_sub(exec.clock().now_ns())))
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                () = tokio::time::sleep(INTERRUPT_POLL) => {}
            }
        }
        self.records
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Rendered { seq, work, ok } => {
                if ok {
                    self.sched.rendered(seq, Some(queued(seq, work)));
                } else {
                    self.sched.rendered(seq, None);
                    self.complete(work, Some(StageKind::Render));
                }
            }
            Event::Ran {
                id,
                stage,
                seqs,
                works,
            } => {
                self.sched.batch_done(id);
                let last = stage + 1 == self.kinds.len();
                for (seq, work) in seqs.into_iter().zip(works) {
                    if work.failed {
                        self.complete(work, Some(self.kinds[stage]));
                    } else if last {
                        self.complete(work, None);
                    } else {
                        self.sched.push(stage + 1, queued(seq, work));
                    }
                }
            }
            Event::Hungry { id, n, reply } => {
                let pages = self
                    .sched
                    .top_up(id, n)
                    .into_iter()
                    .map(|i| (i.seq, i.payload))
                    .collect();
                // The worker may be gone (its thread panicked): nothing to answer then.
                let _ = reply.send(pages);
            }
        }
    }

    fn complete(&mut self, work: PageWork, failed_stage: Option<StageKind>) {
        let record = complete_page(self.exec, work, failed_stage, self.on_page);
        self.records.push(record);
    }
}

/// A page entering a queue, ready since its last stage (or its render) ended.
fn queued(seq: usize, work: PageWork) -> Item<PageWork> {
    Item {
        seq,
        ready_ns: work.ready_ns,
        payload: work,
    }
}
