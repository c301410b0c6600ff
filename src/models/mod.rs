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
pub mod layers;
pub mod layout;
pub mod null;
pub mod ocr;
pub mod onnx;
pub mod ops;
pub mod picodet;
pub mod pplcnet;
pub mod pplcnet_v3;
pub mod routing;
pub mod slanet;
pub mod svtr_rec;
pub mod table;
pub mod weights;

use crate::config::StageSpec;
use crate::page::PageWork;
pub use crate::vocab::StageKind;

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
    /// Short machine-readable kind (`oom`, `render`, `model`, `injected`…).
    pub kind: String,
    pub message: String,
}

impl StageError {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_string(),
            message: message.into(),
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
}

/// A model's runtime error as a stage error (out-of-memory classified, with advice).
pub fn model_error(e: candle_core::Error) -> StageError {
    crate::pipeline::executor::classify(&e.to_string())
}

/// The page's rendered image as a BGR view, or an error naming the page and the stage when
/// none reached it.
pub fn page_bgr(page: &PageWork, stage: StageKind) -> Result<ocr::preprocess::Bgr<'_>, StageError> {
    let im = page.image.as_ref().ok_or_else(|| {
        StageError::new(
            "input",
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
}

/// Builds the model stage `kind` described by `spec`.
pub fn build_stage(
    kind: StageKind,
    spec: &StageSpec,
    ctx: &BuildContext,
) -> Result<Box<dyn Stage>, StageError> {
    match (kind, spec.model.as_str()) {
        (_, "null") => Ok(Box::new(null::NullStage::new(kind, spec))),
        (StageKind::Ocr, id) if ocr::stage::OcrRelease::from_model_id(id).is_some() => {
            let release = ocr::stage::OcrRelease::from_model_id(id).expect("checked in the guard");
            Ok(Box::new(ocr::stage::OcrStage::load(
                release,
                id,
                spec.rec_batch_size,
                spec.scope,
                &ctx.cache_root,
                ctx.offline,
                &ctx.device,
            )?))
        }
        (StageKind::Layout, id @ "picodet-layout-cdla") => Ok(Box::new(
            layout::stage::LayoutStage::load(id, &ctx.cache_root, ctx.offline, &ctx.device)?,
        )),
        (StageKind::Table, id @ "slanet-plus") => Ok(Box::new(table::stage::TableStage::load(
            id,
            spec.max_decoder_steps,
            spec.batch_size.max(TABLES_PER_CALL),
            &ctx.cache_root,
            ctx.offline,
            &ctx.device,
        )?)),
        (StageKind::Layout, id @ ("detr-layout" | "tatr-detection")) => {
            let model = load_seed(id, spec, ctx)?;
            // Untrained regions are noise: downstream stages get the embedded model's.
            let fallback = if model.untrained {
                Some(layout::stage::LayoutStage::load(
                    detr::stage::LAYOUT_FALLBACK,
                    &ctx.cache_root,
                    ctx.offline,
                    &ctx.device,
                )?)
            } else {
                None
            };
            Ok(Box::new(detr::stage::DetrLayoutStage::new(model, fallback)))
        }
        (StageKind::Table, id @ ("tatr-structure" | "tatr-structure-v1.1")) => {
            let model = load_seed(id, spec, ctx)?;
            // Table crops per forward pass: the stage's batch size (crops reach 1000 px, so
            // SLANet's floor of eight would hold gigabytes of ResNet activations).
            Ok(Box::new(detr::stage::TatrTableStage::new(
                model,
                spec.batch_size,
            )))
        }
        (StageKind::Figure, "crop") => Ok(Box::new(figure::FigureCropStage::default())),
        (_, other) => Err(StageError::new(
            "config",
            format!(
                "unknown model `{other}` for stage {kind}; available: {}",
                available_models(kind).join(", ")
            ),
        )),
    }
}

/// A seed model (DETR family) for a stage, from the weights the context and spec choose.
fn load_seed(
    id: &str,
    spec: &StageSpec,
    ctx: &BuildContext,
) -> Result<detr::stage::SeedModel, StageError> {
    let card = detr::stage::seed_card(id)
        .ok_or_else(|| StageError::new("config", format!("no seed card `{id}`")))?;
    let choice = detr::stage::resolve_weights(id, ctx.weights.as_deref(), spec.weights.as_deref());
    detr::stage::SeedModel::load(&card, &choice, spec.masks, &ctx.device)
}

/// Tables per SLANet call at least (a page's tables are batched together; more when the
/// stage's batch size asks for it). Eight bound the encoder input to 23 MB.
const TABLES_PER_CALL: usize = 8;

/// Model ids a strategy file may name for each stage.
pub fn available_models(kind: StageKind) -> &'static [&'static str] {
    match kind {
        StageKind::Layout => &[
            "picodet-layout-cdla",
            "detr-layout",
            "tatr-detection",
            "null",
        ],
        StageKind::Ocr => &["ppocrv5", "ppocrv4", "null"],
        StageKind::Table => &[
            "slanet-plus",
            "tatr-structure",
            "tatr-structure-v1.1",
            "null",
        ],
        StageKind::Figure => &["crop", "null"],
        StageKind::Render => &["null"],
    }
}
