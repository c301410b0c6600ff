//! Rendering as a stage, so the executor times it like any other: in-process (one thread owns
//! pdfium) or through one worker process of the pool.

use crate::corpus::render::{PageImage, RenderError, RenderSpec, Renderer};
use crate::corpus::render_pool::RenderWorker;
use crate::models::{ModelInfo, Stage, StageError, StageKind};
use crate::page::PageWork;

fn to_stage_error(e: RenderError) -> StageError {
    StageError::new(e.kind(), e.to_string())
}

fn attach(p: &mut PageWork, image: PageImage) {
    p.output.width_px = image.width;
    p.output.height_px = image.height;
    p.image = Some(image);
}

fn pdfium_info() -> ModelInfo {
    ModelInfo {
        stage: StageKind::Render,
        id: "pdfium".into(),
        is_test_stage: false,
        weights_sha256: None,
    }
}

/// Renders on the calling thread.
pub struct InProcessRender {
    renderer: Renderer,
    spec: RenderSpec,
}

impl InProcessRender {
    pub fn new(spec: RenderSpec) -> Self {
        Self {
            renderer: Renderer::new(),
            spec,
        }
    }
}

impl Stage for InProcessRender {
    fn kind(&self) -> StageKind {
        StageKind::Render
    }
    fn model(&self) -> ModelInfo {
        pdfium_info()
    }
    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        for p in batch.iter_mut() {
            let image = self
                .renderer
                .render(&p.path, p.page.page, &self.spec)
                .map_err(to_stage_error)?;
            attach(p, image);
        }
        Ok(())
    }
}

/// Renders through one worker process of the pool.
pub struct PoolRender {
    worker: RenderWorker,
    spec: RenderSpec,
}

impl PoolRender {
    pub fn new(worker: RenderWorker, spec: RenderSpec) -> Self {
        Self { worker, spec }
    }

    pub fn pid(&self) -> Option<u32> {
        self.worker.pid()
    }
}

impl Stage for PoolRender {
    fn kind(&self) -> StageKind {
        StageKind::Render
    }
    fn model(&self) -> ModelInfo {
        pdfium_info()
    }
    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        for p in batch.iter_mut() {
            let got = self
                .worker
                .render(&p.path, p.page.page, &self.spec)
                .map_err(to_stage_error)?;
            attach(p, got.image);
        }
        Ok(())
    }
}
