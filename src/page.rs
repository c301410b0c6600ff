//! The unit of work that flows through the stages: one page, its image and its outputs.

use std::path::Path;
use std::sync::Arc;

use crate::corpus::PageRef;
use crate::corpus::render::PageImage;

/// A page in flight. Stages read the image and write outputs; timing fields belong to the
/// executor (nanoseconds since the run's clock origin).
#[derive(Debug)]
pub struct PageWork {
    pub page: PageRef,
    /// Stable page id, e.g. `paper.pdf#p3`.
    pub id: Arc<str>,
    /// Document id, e.g. `paper.pdf`.
    pub doc_id: Arc<str>,
    pub path: Arc<Path>,
    pub image: Option<PageImage>,
    pub output: PageOutput,
    /// When the page entered the pipeline (its render was requested).
    pub admitted_ns: u64,
    /// When the page became ready for its next stage.
    pub ready_ns: u64,
    /// Set once a stage failed on this page; later stages skip it.
    pub failed: bool,
}

/// A recognized line of text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextLine {
    /// [x0, y0, x1, y1] in page pixels.
    pub bbox: [f32; 4],
    pub text: String,
    pub confidence: f32,
    /// Index of the region it was assigned to, if any.
    pub region: Option<usize>,
}

impl PageWork {
    pub fn new(page: PageRef, id: Arc<str>, doc_id: Arc<str>, path: Arc<Path>) -> Self {
        Self {
            page,
            id,
            doc_id,
            path,
            image: None,
            output: PageOutput::default(),
            admitted_ns: 0,
            ready_ns: 0,
            failed: false,
        }
    }

    /// A page that stands for no page of a corpus, in calls that time a stage on inputs it
    /// holds itself (the executor's calibration, bench-seed's forward passes): `global` tags
    /// the call's span.
    pub fn placeholder(global: u32, label: &str) -> Self {
        let page = PageRef {
            global,
            doc: 0,
            page: 0,
        };
        Self::new(
            page,
            Arc::from(format!("{label}#p1")),
            Arc::from(label),
            Arc::from(Path::new("")),
        )
    }
}

/// Everything the pipeline extracted from a page. Serialized canonically (field order fixed,
/// floats in shortest round-trip form) for the output digest, so strategies can be compared.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PageOutput {
    pub width_px: u32,
    pub height_px: u32,
    /// Regions in reading order.
    pub regions: Vec<Region>,
    /// Every recognized text line, in reading order within its region (the table stage
    /// matches them to cells; OCR quality is measured on them, independent of how layout
    /// grouped them).
    #[serde(default)]
    pub lines: Vec<TextLine>,
}

/// A region found on a page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    /// Layout class (text, title, table, figure, …).
    pub class: String,
    /// [x0, y0, x1, y1] in page pixels.
    pub bbox: [f32; 4],
    pub confidence: f32,
    pub text: Option<String>,
    /// Table structure as HTML, for tables.
    pub html: Option<String>,
    /// Tables: decoder steps the structure model ran (a data-dependent cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_steps: Option<u32>,
    /// Charts: the data table a chart-to-table model (DePlot) read from the figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataTable>,
}

/// A chart's underlying data, as DePlot writes it: an optional title, a header row, rows of
/// cells (`models::pix2struct::stage::parse_table`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl DataTable {
    /// The table as a Markdown table (title above it in italics).
    pub fn markdown(&self) -> String {
        let cell = |c: &str| c.replace('|', "\\|").replace('\n', " ");
        let width = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0)
            .max(1);
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for i in 0..width {
                s.push(' ');
                s.push_str(&cell(cells.get(i).map_or("", String::as_str)));
                s.push_str(" |");
            }
            s.push('\n');
            s
        };
        let mut out = String::new();
        if let Some(t) = &self.title {
            out.push_str(&format!("*{}*\n\n", cell(t)));
        }
        out.push_str(&line(&self.header));
        out.push('|');
        out.push_str(&" --- |".repeat(width));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

impl Region {
    /// A region found by layout detection, before any content is attached.
    pub fn detected(class: &str, bbox: [f32; 4], confidence: f32) -> Self {
        Self {
            class: class.to_string(),
            bbox,
            confidence,
            text: None,
            html: None,
            decoder_steps: None,
            data: None,
        }
    }
}
