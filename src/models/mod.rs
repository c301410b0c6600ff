//! The model stages behind one [`Stage`] trait, and the registry that builds them from a
//! strategy file.
//!
//! Stages know nothing of timing: the executor (`pipeline/executor.rs`) times every call at
//! this boundary. `models` never imports `metrics`.

pub mod db_det;
pub mod deploy_graph;
pub mod device;
pub mod layers;
pub mod null;
pub mod ocr;
pub mod onnx;
pub mod ops;
pub mod pplcnet_v3;
pub mod svtr_rec;
pub mod weights;

use crate::config::StageSpec;
use crate::page::PageWork;

/// The pipeline's stages, in order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Render,
    Layout,
    Ocr,
    Table,
    Figure,
}

impl StageKind {
    pub const ALL: [StageKind; 5] = [
        StageKind::Render,
        StageKind::Layout,
        StageKind::Ocr,
        StageKind::Table,
        StageKind::Figure,
    ];
    /// The model stages (everything after rendering).
    pub const MODELS: [StageKind; 4] = [
        StageKind::Layout,
        StageKind::Ocr,
        StageKind::Table,
        StageKind::Figure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Render => "render",
            StageKind::Layout => "layout",
            StageKind::Ocr => "ocr",
            StageKind::Table => "table",
            StageKind::Figure => "figure",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// Builds the model stage `kind` described by `spec`.
pub fn build_stage(kind: StageKind, spec: &StageSpec) -> Result<Box<dyn Stage>, StageError> {
    match spec.model.as_str() {
        "null" => Ok(Box::new(null::NullStage::new(kind, spec))),
        other => Err(StageError::new(
            "config",
            format!(
                "unknown model `{other}` for stage {kind}; available: {}",
                AVAILABLE_MODELS.join(", ")
            ),
        )),
    }
}

/// Model ids a strategy file may name.
pub const AVAILABLE_MODELS: &[&str] = &["null"];
