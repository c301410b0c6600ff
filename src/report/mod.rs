//! Reports: built from the full histograms and spans of a run (never from live snapshots),
//! written atomically, summarized for the terminal.
//!
//! - `schema`: the JSON contract, the only place report types are defined.
//! - `build`: a run's data into a [`schema::Report`]; `analysis`: steady state, pages in
//!   flight and the bottleneck; [`quality`]: OCR against the text layer.
//! - `summary`: the terminal summary; `write`: paths and atomic writes of reports and page
//!   outputs.
//! - [`compare`], [`export`], [`plot`], [`output_check`]: what is done with reports afterwards;
//!   [`agreement`]: how far two runs' outputs agree, with tolerance (for `--check-outputs` and
//!   `compare`).

pub mod agreement;
mod analysis;
mod build;
pub mod compare;
pub mod environment;
pub mod export;
pub mod output_check;
pub mod plot;
pub mod quality;
pub mod schema;
mod summary;
mod write;

pub use analysis::{bottleneck, max_in_flight, occupancy, steady_state};
pub use build::{RunData, build, latency_summary, output_content, page_output_sha256};
pub use quality::measure_ocr_cer;
pub use schema::SpansMode;
pub(crate) use summary::human_bytes;
pub use summary::summary_text;
pub use write::{WriteError, default_path, save_outputs, write};

/// Nanoseconds as milliseconds, the unit of every `_ms` figure in a report.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
