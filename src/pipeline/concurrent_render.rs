//! concurrent-render: `render.processes` worker processes render pages ahead while the model
//! workers (one by default: this thread) run the model stages one page at a time in corpus
//! order (the prototype's "concurrent" strategy).
//!
//! One scoped thread drives each render process (its calls are timed by the executor as
//! `render-proc` spans); rendered pages reach the model workers through a bounded channel of
//! `render.queue_capacity` pages, so rendering can run at most that far ahead and memory stays
//! bounded. Pages finish rendering out of order; a reorder buffer hands them to the models in
//! order, so with one worker the model calls — and the outputs — are exactly sequential's.
//! With `device.workers = N`, each worker takes the next page in order from that buffer, so N
//! pages are in the models at once (outputs are still sequential's: a page's outputs do not
//! depend on which worker ran it or when).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::workers::{self, ModelWorker};
use super::{PageRecord, RunContext, complete_page, new_work, run_models};
use crate::corpus::PageRef;

use crate::metrics::span::{WorkerId, WorkerKind};
use crate::page::PageWork;
use crate::vocab::StageKind;

/// Rendered pages on their way to the model workers, handed out in corpus order.
struct Reorder {
    rx: crossbeam_channel::Receiver<(usize, PageWork, bool)>,
    pending: BTreeMap<usize, (PageWork, bool)>,
    expected: usize,
}

impl Reorder {
    /// The next page in order; once every render thread is done, what is left (an interrupt
    /// leaves gaps) in order. None when nothing is left.
    fn next(&mut self) -> Option<(PageWork, bool)> {
        loop {
            if let Some(page) = self.pending.remove(&self.expected) {
                self.expected += 1;
                return Some(page);
            }
            match self.rx.recv() {
                Ok((seq, work, ok)) => {
                    self.pending.insert(seq, (work, ok));
                }
                Err(_) => return self.pending.pop_first().map(|(_, page)| page),
            }
        }
    }
}

pub fn run(
    ctx: RunContext<'_>,
    mut model_workers: Vec<ModelWorker>,
    pages: &[PageRef],
) -> anyhow::Result<Vec<PageRecord>> {
    let mut renderers = ctx.spawn_render_processes()?;
    let (exec, corpus) = (ctx.exec, ctx.corpus);
    let capacity = ctx
        .plan
        .render
        .queue_capacity
        .expect("concurrent-render plans bound the render queue");
    let (tx, rx) = crossbeam_channel::bounded::<(usize, PageWork, bool)>(capacity);
    let next_job = AtomicUsize::new(0);
    let records = Mutex::new(Vec::with_capacity(pages.len()));
    std::thread::scope(|s| {
        for (i, mut renderer) in renderers.drain(..).enumerate() {
            let (tx, next_job) = (tx.clone(), &next_job);
            let worker = WorkerId {
                kind: WorkerKind::RenderProcess,
                index: i as u16,
            };
            s.spawn(move || {
                loop {
                    if super::interrupted() {
                        break;
                    }
                    let seq = next_job.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = pages.get(seq) else { break };
                    let mut work = [new_work(corpus, *p)];
                    exec.admit(&mut work[0]);
                    let ok = exec.run_stage(&mut renderer, worker, &mut work);
                    let [work] = work;
                    if tx.send((seq, work, ok)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let reorder = Mutex::new(Reorder {
            rx,
            pending: BTreeMap::new(),
            expected: 0,
        });
        // The model workers: models in corpus order, one page at a time each.
        workers::run_all(&mut model_workers, |id, stages| {
            loop {
                let next = reorder
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .next();
                let Some((mut work, rendered)) = next else {
                    break;
                };
                let failed_stage = if rendered {
                    run_models(exec, id, stages, &mut work)
                } else {
                    Some(StageKind::Render)
                };
                let record = complete_page(exec, work, failed_stage, ctx.on_page);
                records
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(record);
            }
        });
    });
    Ok(records.into_inner().unwrap_or_else(PoisonError::into_inner))
}
