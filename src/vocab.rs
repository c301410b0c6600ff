//! The shared vocabulary of every layer: the pipeline's stages. A bottom module: it imports
//! nothing from the crate, so `metrics`, `config`, `models`, `pipeline` and `report` can all
//! name a stage without importing each other.

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
