//! concurrent-render: `render.processes` worker processes render pages ahead while this
//! thread, the device thread, runs the model stages one page at a time in corpus order (the
//! prototype's "concurrent" strategy).
//!
//! One scoped thread drives each render process (its calls are timed by the executor as
//! `render-proc` spans); rendered pages reach the device thread through a bounded channel of
//! `render.queue_capacity` pages, so rendering can run at most that far ahead and memory stays
//! bounded. Pages finish rendering out of order; a reorder buffer hands them to the models in
//! order, so the model calls — and the outputs — are exactly sequential's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PageRecord, RunContext, complete_page, new_work, run_models};
use crate::corpus::PageRef;

use crate::metrics::span::{WorkerId, WorkerKind};
use crate::models::Stage;
use crate::page::PageWork;
use crate::vocab::StageKind;

pub fn run(mut ctx: RunContext<'_>, pages: &[PageRef]) -> anyhow::Result<Vec<PageRecord>> {
    let mut renderers = ctx.spawn_render_processes()?;
    let mut stages = std::mem::take(&mut ctx.stages);
    let (exec, corpus) = (ctx.exec, ctx.corpus);
    let capacity = ctx
        .plan
        .render
        .queue_capacity
        .expect("concurrent-render plans bound the render queue");
    let (tx, rx) = crossbeam_channel::bounded::<(usize, PageWork, bool)>(capacity);
    let next_job = AtomicUsize::new(0);
    let mut records = Vec::with_capacity(pages.len());
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
        // The device thread: models in corpus order, one page at a time.
        let mut pending: BTreeMap<usize, (PageWork, bool)> = BTreeMap::new();
        let mut expected = 0usize;
        let mut finish = |mut work: PageWork, rendered: bool, stages: &mut [Box<dyn Stage>]| {
            let failed_stage = if rendered {
                run_models(exec, stages, &mut work)
            } else {
                Some(StageKind::Render)
            };
            records.push(complete_page(exec, work, failed_stage, ctx.on_page));
        };
        loop {
            if let Some((work, ok)) = pending.remove(&expected) {
                finish(work, ok, &mut stages);
                expected += 1;
                continue;
            }
            match rx.recv() {
                Ok((seq, work, ok)) => {
                    pending.insert(seq, (work, ok));
                }
                // Every render thread is done: what is left was rendered before an interrupt
                // left gaps; finish it in order.
                Err(_) => {
                    for (_, (work, ok)) in std::mem::take(&mut pending) {
                        finish(work, ok, &mut stages);
                    }
                    break;
                }
            }
        }
    });
    Ok(records)
}
