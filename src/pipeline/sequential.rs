//! sequential: one page at a time through every stage, on one thread that renders in-process
//! and runs the models. The baseline: no overlap, no batching. One model worker (the plan
//! refuses more); with `device.threads` its models run on a pool of that many threads.

use super::render_stage::InProcessRender;
use super::workers::ModelWorker;
use super::{PageRecord, RENDER_THREAD, RunContext, complete_page, run_models};
use crate::corpus::PageRef;
use crate::corpus::render::Renderer;
use crate::vocab::StageKind;

pub fn run(
    ctx: RunContext<'_>,
    mut workers: Vec<ModelWorker>,
    pages: &[PageRef],
) -> Vec<PageRecord> {
    let mut render = InProcessRender::new(Renderer::new(), ctx.plan.render.spec());
    let worker = workers
        .first_mut()
        .expect("a run has at least one model worker");
    let mut records = Vec::with_capacity(pages.len());
    for p in pages {
        if super::interrupted() {
            break;
        }
        let mut work = ctx.new_work(*p);
        ctx.exec.admit(&mut work);
        let rendered =
            ctx.exec
                .run_stage(&mut render, RENDER_THREAD, std::slice::from_mut(&mut work));
        let failed_stage = if rendered {
            worker.run(|id, stages| run_models(ctx.exec, id, stages, &mut work))
        } else {
            Some(StageKind::Render)
        };
        records.push(complete_page(ctx.exec, work, failed_stage, ctx.on_page));
    }
    records
}
