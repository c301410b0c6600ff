//! staged-batch: render every page, then run each model stage over all pages in batches of
//! that stage's `batch_size`, stage after stage (the prototype's "batched" strategy).
//!
//! Every page image is held from its render until the last stage: memory grows with the corpus
//! (the report's memory peak shows it), and no page completes before the last stage's last
//! batch, so page latency is close to the wall time. Batches hold the pages in corpus order;
//! pages that failed an earlier stage are left out of later batches. Outputs equal
//! sequential's: the models batch pages without mixing them (OCR recognizes each page's lines
//! in that page's own width-sorted batches, exactly as one page at a time would).
//!
//! With `device.workers = N`, a stage's batches are shared among the workers (each takes the
//! next batch not yet taken), and the next stage starts when all are done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::render_stage::InProcessRender;
use super::workers::{self, ModelWorker};
use super::{PageRecord, RENDER_THREAD, RunContext, complete_page, new_work};
use crate::corpus::PageRef;
use crate::corpus::render::Renderer;
use crate::page::PageWork;
use crate::vocab::StageKind;

pub fn run(
    ctx: RunContext<'_>,
    mut model_workers: Vec<ModelWorker>,
    pages: &[PageRef],
) -> Vec<PageRecord> {
    let mut render = InProcessRender::new(Renderer::new(), ctx.plan.render.spec());
    // Stage 1: every page rendered (and held).
    let mut works: Vec<Option<PageWork>> = Vec::with_capacity(pages.len());
    let mut failed_stage: Vec<Option<StageKind>> = Vec::with_capacity(pages.len());
    let mut cut_short = false;
    for p in pages {
        if super::interrupted() {
            cut_short = true;
            break;
        }
        let mut w = [new_work(ctx.corpus, *p)];
        ctx.exec.admit(&mut w[0]);
        let ok = ctx.exec.run_stage(&mut render, RENDER_THREAD, &mut w);
        let [w] = w;
        works.push(Some(w));
        failed_stage.push((!ok).then_some(StageKind::Render));
    }
    // Then each model stage over the pages still alive, in batches.
    let kinds = model_workers
        .first()
        .map(ModelWorker::kinds)
        .unwrap_or_default();
    for (s, &kind) in kinds.iter().enumerate() {
        let batch_size = ctx.plan.stage(kind).batch_size;
        let alive: Vec<usize> = (0..works.len())
            .filter(|&i| works[i].as_ref().is_some_and(|w| !w.failed))
            .collect();
        // Each batch's pages, taken out for whichever worker runs it and put back after.
        let batches: Vec<Mutex<Vec<PageWork>>> = alive
            .chunks(batch_size)
            .map(|chunk| {
                Mutex::new(
                    chunk
                        .iter()
                        .map(|&i| works[i].take().expect("alive pages are present"))
                        .collect(),
                )
            })
            .collect();
        let next = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        workers::run_all(&mut model_workers, |id, stages| {
            loop {
                if super::interrupted() {
                    stopped.store(true, Ordering::Relaxed);
                    break;
                }
                let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
                ctx.exec.run_stage(stages[s].as_mut(), id, &mut batch);
            }
        });
        cut_short |= stopped.into_inner();
        for (chunk, batch) in alive.chunks(batch_size).zip(batches) {
            let batch = batch.into_inner().unwrap_or_else(PoisonError::into_inner);
            for (&i, w) in chunk.iter().zip(batch) {
                if w.failed && failed_stage[i].is_none() {
                    failed_stage[i] = Some(kind);
                }
                works[i] = Some(w);
            }
        }
    }
    let mut records = Vec::with_capacity(works.len());
    for (w, failed) in works.into_iter().zip(failed_stage) {
        let Some(w) = w else { continue };
        // An interrupt leaves pages half-processed: only failed pages are complete then.
        if cut_short && failed.is_none() {
            continue;
        }
        records.push(complete_page(ctx.exec, w, failed, ctx.on_page));
    }
    records
}
