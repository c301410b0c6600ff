//! sequential: one page at a time through every stage, on one thread that renders in-process
//! and runs the models. The baseline: no overlap, no batching.

use super::render_stage::InProcessRender;
use super::{PageRecord, RunContext};
use crate::corpus::PageRef;
use crate::corpus::render::Renderer;
use crate::metrics::span::{WorkerId, WorkerKind};

pub fn run(mut ctx: RunContext<'_>, pages: &[PageRef]) -> Vec<PageRecord> {
    let render_worker = WorkerId {
        kind: WorkerKind::RenderThread,
        index: 0,
    };
    let device_worker = WorkerId {
        kind: WorkerKind::Device,
        index: 0,
    };
    let mut render = InProcessRender::new(Renderer::new(), ctx.spec.render.spec());
    let mut stages = std::mem::take(&mut ctx.stages);
    let mut records = Vec::with_capacity(pages.len());
    for p in pages {
        if super::interrupted() {
            break;
        }
        let mut work = [ctx.new_work(*p)];
        ctx.exec.admit(&mut work[0]);
        let mut failed_stage = None;
        if !ctx.exec.run_stage(&mut render, render_worker, &mut work) {
            failed_stage = Some(crate::models::StageKind::Render);
        }
        for stage in stages.iter_mut() {
            if work[0].failed {
                break;
            }
            if !ctx.exec.run_stage(stage.as_mut(), device_worker, &mut work) {
                failed_stage = Some(stage.kind());
            }
        }
        let [mut done] = work;
        done.image = None; // the page's pixels are not needed past its last stage
        let record = ctx.exec.complete(done, failed_stage);
        (ctx.on_page)(&record);
        records.push(record);
    }
    records
}
