//! Rendering as a stage, so the executor times it like any other: in-process (the calling
//! thread owns pdfium) or through one worker process of the pool.

use std::path::Path;

use crate::corpus::render::{PageImage, RenderError, RenderSpec, Renderer};
use crate::corpus::render_pool::RenderWorker;
use crate::models::{ModelInfo, Stage, StageError};
use crate::page::PageWork;
use crate::vocab::StageKind;

/// Something that renders pages: the in-process [`Renderer`] or a pool [`RenderWorker`].
pub trait PageRenderer: Send {
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<PageImage, RenderError>;
}

impl PageRenderer for Renderer {
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<PageImage, RenderError> {
        self.render(path, page, spec)
    }
}

impl PageRenderer for RenderWorker {
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<PageImage, RenderError> {
        self.render(path, page, spec).map(|p| p.image)
    }
}

/// The render stage over any [`PageRenderer`].
pub struct RenderStage<R> {
    renderer: R,
    spec: RenderSpec,
}

/// Renders on the calling thread.
pub type InProcessRender = RenderStage<Renderer>;
/// Renders through one worker process of the pool.
pub type PoolRender = RenderStage<RenderWorker>;

impl<R: PageRenderer> RenderStage<R> {
    pub fn new(renderer: R, spec: RenderSpec) -> Self {
        Self { renderer, spec }
    }
}

impl<R: PageRenderer> Stage for RenderStage<R> {
    fn kind(&self) -> StageKind {
        StageKind::Render
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Render,
            id: "pdfium".into(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: None,
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        for p in batch.iter_mut() {
            let image = self
                .renderer
                .render_page(&p.path, p.page.page, &self.spec)
                .map_err(|e| StageError::new(e.kind(), e.to_string()))?;
            p.output.width_px = image.width;
            p.output.height_px = image.height;
            p.image = Some(image);
        }
        Ok(())
    }
}
