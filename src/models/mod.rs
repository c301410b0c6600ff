//! The model stages behind one [`Stage`] trait, and the registry that builds them from a
//! strategy file.
//!
//! Stages know nothing of timing: the executor (`pipeline/executor.rs`) times every call at
//! this boundary. `models` never imports `metrics`.

pub mod checkpoint;
pub mod csp_pan;
pub mod db_det;
pub mod deploy_graph;
pub mod detr;
pub mod device;
pub mod figure;
pub mod generate;
pub mod got_ocr2;
pub mod layers;
pub mod layout;
pub mod null;
pub mod ocr;
pub mod onnx;
pub mod ops;
pub mod picodet;
pub mod pix2struct;
pub mod pplcnet;
pub mod pplcnet_v3;
pub mod registry;
pub mod routing;
pub mod slanet;
pub mod svtr_rec;
pub mod table;
pub mod weights;

use crate::page::PageWork;
pub use crate::vocab::{FailureKind, StageKind};

/// What a stage runs, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ModelInfo {
    pub stage: StageKind,
    /// Model id (`null`, `pdfium`, later `ppocrv5-det` …).
    pub id: String,
    /// True for test stages that compute nothing (null/sleep): their outputs are empty.
    pub is_test_stage: bool,
    /// sha256 of the weights file(s), when the model has weights.
    pub weights_sha256: Option<String>,
    /// The weights are seeded random numbers (`--weights random`): the compute is the trained
    /// model's, the outputs are meaningless.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untrained: bool,
    /// Where the stage's outputs come from instead, when they are not this model's (an
    /// untrained layout model's regions come from the embedded layout model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A stage failure. The executor attaches the document and page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    /// What failed (`oom`, `weights`, `model`, `injected`… in reports).
    pub kind: FailureKind,
    pub message: String,
}

impl StageError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A device or runtime error from its message: out-of-memory is told apart (the
    /// executor retries smaller batches on it) and gets advice; anything else is `device`.
    pub fn classify(message: &str) -> Self {
        let lower = message.to_lowercase();
        // Phrases CUDA, Metal and allocators use; a bare "oom" would match words like "room".
        let oom = [
            "out of memory",
            "out_of_memory",
            "failed to allocate",
            "allocation failed",
            "cannot allocate memory",
        ];
        if oom.iter().any(|p| lower.contains(p)) {
            Self::new(
                FailureKind::Oom,
                format!(
                    "{message}\n  fix: lower this stage's batch_size, the render dpi, or use a device with more memory"
                ),
            )
        } else {
            Self::new(FailureKind::Device, message.to_string())
        }
    }
}

/// One stage of the pipeline: processes a batch of pages on its device. A failure of the whole
/// batch is retried page by page by the executor, so one bad page does not fail its
/// batch-mates.
pub trait Stage: Send {
    fn kind(&self) -> StageKind;
    fn model(&self) -> ModelInfo;
    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError>;
    /// Time the last `process` call spent working in another process, as measured there (a
    /// render worker's open + render, which the executor cannot time from outside); None for
    /// stages that do their work in this process.
    fn take_worker_ns(&mut self) -> Option<u64> {
        None
    }
    /// Another instance of this stage for another model worker (`device.workers`), sharing
    /// this one's weights (behind `Arc`s: no copy per worker) with its own per-call state.
    /// None: the stage cannot run on several workers (the run says so and stops before any
    /// page).
    fn replicate(&self) -> Option<Box<dyn Stage>> {
        None
    }
    /// What an autoregressive stage's calls generated since the last take (tokens, prefill
    /// and decode time, occupancy); None for other stages.
    fn take_generation(&mut self) -> Option<generate::GenerationStats> {
        None
    }
    /// True when [`Stage::process_fed`] may take more pages while it runs (a generating stage
    /// in continuous batching): streaming-microbatch then hands it a [`Feed`] on its queue.
    fn takes_feed(&self) -> bool {
        false
    }
    /// [`Stage::process`], free to take more pages from `feed` while it runs (when its decode
    /// places free up): it appends each page it takes to `batch`, in the order taken, and
    /// processes it with the others. The executor retries a failed call's pages (those taken
    /// included) with plain `process`.
    fn process_fed(
        &mut self,
        batch: &mut Vec<PageWork>,
        feed: &mut dyn Feed,
    ) -> Result<(), StageError> {
        let _ = feed;
        self.process(batch)
    }
}

/// Pages a running stage call may take from its stage's queue (continuous batching across
/// micro-batches: see `pipeline::streaming_microbatch`).
pub trait Feed {
    /// Up to `n` pages waiting in the stage's queue, now part of the call (the caller appends
    /// them to its batch); none when the queue is empty or the next one has no room for them.
    fn take(&mut self, n: usize) -> Vec<PageWork>;
}

/// A feed that never has pages (every strategy but streaming-microbatch).
pub struct NoFeed;

impl Feed for NoFeed {
    fn take(&mut self, _n: usize) -> Vec<PageWork> {
        Vec::new()
    }
}

/// A model's runtime error as a stage error (out-of-memory classified, with advice).
pub fn model_error(e: candle_core::Error) -> StageError {
    StageError::classify(&e.to_string())
}

/// The page's rendered image as a BGR view, or an error naming the page and the stage when
/// none reached it.
pub fn page_bgr(page: &PageWork, stage: StageKind) -> Result<ocr::preprocess::Bgr<'_>, StageError> {
    let im = page.image.as_ref().ok_or_else(|| {
        StageError::new(
            FailureKind::Input,
            format!("{}: no rendered image reached the {stage} stage", page.id),
        )
    })?;
    Ok(ocr::preprocess::Bgr {
        width: im.width as usize,
        height: im.height as usize,
        stride: im.stride as usize,
        data: &im.data,
    })
}

/// What building a stage needs beyond its spec.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Cache root for weights (see `assets::cache_root`).
    pub cache_root: std::path::PathBuf,
    /// Never fetch weights; fail if they are not cached.
    pub offline: bool,
    pub device: candle_core::Device,
    /// `--weights`: `random`, or a folder holding one checkpoint folder per seed model id;
    /// None: each stage's `weights`, else `models/<id>` (see `detr::stage::resolve_weights`).
    pub weights: Option<String>,
    /// The run's pages, for models that read their PDFs before the run (an untrained
    /// GOT-OCR 2.0's length oracle).
    pub pages: Vec<PageSource>,
    /// How the run renders pages (their pixel coordinates).
    pub render: crate::corpus::render::RenderSpec,
}

/// A page of the run, as a model may read it from its PDF.
#[derive(Debug, Clone)]
pub struct PageSource {
    /// The page's id (`doc.pdf#p3`).
    pub id: String,
    pub path: std::path::PathBuf,
    /// The page's index in its document.
    pub page: u32,
}

impl BuildContext {
    /// The visible text layer of every page of the run (None for pages without one, or whose
    /// PDF pdfium cannot read: the run reports those itself), in rendered-page pixels.
    pub fn text_layers(&self) -> got_ocr2::stage::TextLayers {
        let mut renderer = crate::corpus::render::Renderer::new();
        self.pages
            .iter()
            .map(|p| {
                let layer = renderer
                    .document(&p.path)
                    .and_then(|d| d.text_layer(p.page, &self.render))
                    .ok()
                    .filter(|l| !l.is_empty());
                (p.id.clone(), layer)
            })
            .collect()
    }
}

/// Builds the model stage `kind`: model `id` (a [`registry`] entry serving `kind`) with its
/// resolved options.
pub fn build_stage(
    kind: StageKind,
    id: &str,
    batch_size: usize,
    options: &serde_json::Map<String, serde_json::Value>,
    ctx: &BuildContext,
) -> Result<Box<dyn Stage>, StageError> {
    let entry = registry::entry_for(kind, id).ok_or_else(|| {
        StageError::new(
            FailureKind::Config,
            format!(
                "unknown model `{id}` for stage {kind}; available: {}",
                registry::available_models(kind).join(", ")
            ),
        )
    })?;
    (entry.build)(&registry::BuildRequest {
        kind,
        id: entry.id,
        batch_size,
        options,
        ctx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_classified_with_advice() {
        assert_eq!(
            StageError::classify("no room left in the queue").kind,
            FailureKind::Device
        );
        let e = StageError::classify("CUDA_ERROR_OUT_OF_MEMORY: out of memory");
        assert_eq!(e.kind, FailureKind::Oom);
        assert!(e.message.contains("batch_size"));
    }
}
