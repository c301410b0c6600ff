//! sequential: one page at a time through every stage, on one thread that renders in-process
//! and runs the models. The baseline: no overlap, no batching.

use super::render_stage::InProcessRender;
use super::{PageRecord, RENDER_THREAD, RunContext, complete_page, run_models};
use crate::corpus::PageRef;
use crate::corpus::render::Renderer;
use crate::vocab::StageKind;

pub fn run(mut ctx: RunContext<'_>, pages: &[PageRef]) -> Vec<PageRecord> {
    let mut render = InProcessRender::new(Renderer::new(), ctx.plan.render.spec());
    let mut stages = std::mem::take(&mut ctx.stages);
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
            run_models(ctx.exec, &mut stages, &mut work)
        } else {
            Some(StageKind::Render)
        };
        records.push(complete_page(ctx.exec, work, failed_stage, ctx.on_page));
    }
    records
}
