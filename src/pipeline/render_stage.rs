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
    /// The page, and the time a worker process spent rendering it, as measured there (None
    /// when rendering in this process: the executor's span is the render time).
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<(PageImage, Option<u64>), RenderError>;
}

impl PageRenderer for Renderer {
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<(PageImage, Option<u64>), RenderError> {
        self.render(path, page, spec).map(|image| (image, None))
    }
}

impl PageRenderer for RenderWorker {
    fn render_page(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<(PageImage, Option<u64>), RenderError> {
        self.render(path, page, spec)
            .map(|p| (p.image, Some(p.render_ns)))
    }
}

/// The render stage over any [`PageRenderer`].
pub struct RenderStage<R> {
    renderer: R,
    spec: RenderSpec,
    /// The worker's render time over the current call's pages (pool rendering).
    worker_ns: Option<u64>,
}

/// Renders on the calling thread.
pub type InProcessRender = RenderStage<Renderer>;
/// Renders through one worker process of the pool.
pub type PoolRender = RenderStage<RenderWorker>;

impl<R: PageRenderer> RenderStage<R> {
    pub fn new(renderer: R, spec: RenderSpec) -> Self {
        Self {
            renderer,
            spec,
            worker_ns: None,
        }
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
        self.worker_ns = None;
        for p in batch.iter_mut() {
            let (image, worker_ns) = self
                .renderer
                .render_page(&p.path, p.page.page, &self.spec)
                .map_err(|e| StageError::new(e.kind(), e.to_string()))?;
            if let Some(ns) = worker_ns {
                *self.worker_ns.get_or_insert(0) += ns;
            }
            p.output.width_px = image.width;
            p.output.height_px = image.height;
            p.image = Some(image);
        }
        Ok(())
    }

    fn take_worker_ns(&mut self) -> Option<u64> {
        self.worker_ns.take()
    }
}
