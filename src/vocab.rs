//! The shared vocabulary of every layer: the pipeline's stages and the kinds of failure. A
//! bottom module: it imports nothing from the crate, so `metrics`, `config`, `corpus`,
//! `models`, `pipeline` and `report` can all name a stage or a failure without importing each
//! other.

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

/// Why a document, page or stage failed: the `kind` of a report's errors (its snake_case
/// [`name`](FailureKind::name) is what reports carry, so this enum changes no report).
///
/// One enum for stage and document failures because a render failure of one page is a stage
/// failure of the render stage: the same kind reaches the report either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The device ran out of memory: the executor splits the batch and retries the halves.
    Oom,
    /// Any other device or runtime error.
    Device,
    /// The model failed on a page (e.g. its input has a shape the model rejects).
    Model,
    /// Weights are missing, unreadable or do not match the model.
    Weights,
    /// The strategy asks for something the model cannot do.
    Config,
    /// A stage's input is missing (no rendered image reached it).
    Input,
    /// A failure injected by a test stage (`fail_pages`).
    Injected,
    /// The stage panicked (a bug).
    Panic,
    /// `--check-outputs`: the reference outputs could not be read.
    Reference,
    /// libpdfium was not bound before rendering (a bug).
    NotBound,
    /// The file cannot be read.
    Unreadable,
    /// The file is empty.
    EmptyFile,
    /// The file is not a PDF.
    NotPdf,
    /// pdfium cannot parse the PDF.
    Corrupt,
    /// The PDF needs a password.
    Encrypted,
    /// The PDF's security settings forbid opening it.
    Security,
    /// The document has no pages.
    NoPages,
    /// A page number past the document's end.
    NoSuchPage,
    /// pdfium could not load a page.
    Page,
    /// The page would be too large to render at this resolution.
    TooLarge,
    /// A render worker process failed.
    Worker,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 21] = [
        FailureKind::Oom,
        FailureKind::Device,
        FailureKind::Model,
        FailureKind::Weights,
        FailureKind::Config,
        FailureKind::Input,
        FailureKind::Injected,
        FailureKind::Panic,
        FailureKind::Reference,
        FailureKind::NotBound,
        FailureKind::Unreadable,
        FailureKind::EmptyFile,
        FailureKind::NotPdf,
        FailureKind::Corrupt,
        FailureKind::Encrypted,
        FailureKind::Security,
        FailureKind::NoPages,
        FailureKind::NoSuchPage,
        FailureKind::Page,
        FailureKind::TooLarge,
        FailureKind::Worker,
    ];

    /// The name reports carry (snake_case).
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Oom => "oom",
            FailureKind::Device => "device",
            FailureKind::Model => "model",
            FailureKind::Weights => "weights",
            FailureKind::Config => "config",
            FailureKind::Input => "input",
            FailureKind::Injected => "injected",
            FailureKind::Panic => "panic",
            FailureKind::Reference => "reference",
            FailureKind::NotBound => "not_bound",
            FailureKind::Unreadable => "unreadable",
            FailureKind::EmptyFile => "empty_file",
            FailureKind::NotPdf => "not_pdf",
            FailureKind::Corrupt => "corrupt",
            FailureKind::Encrypted => "encrypted",
            FailureKind::Security => "security",
            FailureKind::NoPages => "no_pages",
            FailureKind::NoSuchPage => "no_such_page",
            FailureKind::Page => "page",
            FailureKind::TooLarge => "too_large",
            FailureKind::Worker => "worker",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kind_names_are_distinct_snake_case() {
        // ALL lists every variant once, in declaration order (Worker is the last).
        assert_eq!(FailureKind::ALL.len(), FailureKind::Worker as usize + 1);
        for (i, k) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        let names: std::collections::BTreeSet<&str> =
            FailureKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), FailureKind::ALL.len(), "{names:?}");
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
    }
}
