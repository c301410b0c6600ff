//! The JSON report: the only place its types are defined. `results/report.schema.json` is
//! generated from these types (`pipebench schema`) and a test keeps the two identical.
//! Bump [`SCHEMA_VERSION`] whenever the shape changes.
//!
//! Units are in the names (`_ms`, `_ns`, `_bytes`, `_per_s`). Times are wall-clock from a
//! monotonic clock; `*_ns` offsets count from the start of the measured run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::corpus::pdfium::PdfiumInfo;
use crate::metrics::memory::MemorySample;
use crate::metrics::span::{Span, WorkerId};
use crate::models::ModelInfo;
use crate::vocab::StageKind;

pub const SCHEMA_VERSION: u32 = 10;
/// The oldest report version this one reads: v6 to v9 only added optional fields (v6: models'
/// `untrained` / `fallback`, the strategy's `models` profile, stages' `weights`; v7: stages'
/// `worker_ms` / `transfer_ms`, spans' `worker_ns`, and the strategy's parameters as the
/// resolved run plan with its `derived` and `ignored` keys; v8: the environment's model
/// `workers` and the plan's `device`; v9: `output.saved_to`, and the output check's
/// `agreement` and `min_agreement_pct`; v10: stages' `generation`), so v5 reports (e.g. committed baselines) still load
/// and compare.
pub const MIN_READABLE_SCHEMA: u32 = 5;

/// A pipebench run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Version of this report format.
    pub schema_version: u32,
    /// When the run started (RFC 3339, UTC).
    pub created_at: String,
    /// The command line that produced the report.
    pub command: Vec<String>,
    /// True when every document and page went through every stage without error.
    pub ok: bool,
    /// True when the run was stopped (Ctrl-C) before every selected page was processed.
    pub interrupted: bool,
    /// Things that make the numbers less trustworthy (debug build, dropped spans…).
    pub warnings: Vec<String>,
    /// Machine, build, device and libraries that produced the numbers.
    pub environment: Environment,
    /// The documents: what was given, what opened, their hashes.
    pub corpus: CorpusInfo,
    /// The execution strategy and every parameter.
    pub strategy: StrategyInfo,
    /// The model of every stage, render included.
    pub models: Vec<ModelInfo>,
    /// Whole-run figures: wall time, pages/s, page latency, overhead.
    pub summary: Summary,
    /// Per-stage statistics, in pipeline order.
    pub stages: Vec<StageReport>,
    /// Memory peaks and a downsampled series.
    pub memory: MemoryReport,
    /// Every page, in corpus order.
    pub pages: Vec<PageReport>,
    /// Every timed stage call (inline, in a side file, or omitted).
    pub spans: SpansReport,
    /// Every failure: documents that could not be opened, pages that failed a stage.
    pub errors: Vec<ErrorReport>,
    /// A digest of everything extracted, to check strategies agree.
    pub output: OutputDigest,
    /// How good the outputs are, where the corpus says (measured after the run, untimed).
    pub quality: QualityReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityReport {
    /// OCR character error rate against the PDFs' own text layers; absent when the OCR stage
    /// ran a test model.
    pub ocr_cer: Option<CerReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CerReport {
    /// How the reference was made and matched.
    pub method: String,
    /// Pages with a visible text layer that were measured.
    pub pages_measured: u64,
    /// Processed pages without a visible text layer (scans): not measured.
    pub pages_without_text_layer: u64,
    /// Non-whitespace reference characters.
    pub reference_chars: u64,
    /// Edits within OCR lines that cover reference characters.
    pub edits: u64,
    /// Reference characters outside every OCR line.
    pub missed: u64,
    /// (edits + missed) / reference_chars.
    pub cer: f64,
    /// Per measured page, in corpus order.
    pub pages: Vec<PageCer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageCer {
    /// `document#pN`.
    pub id: String,
    pub reference_chars: u64,
    pub errors: u64,
    pub cer: f64,
}

/// How the numbers were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// pipebench's crate version.
    pub pipebench_version: String,
    /// Git commit of the pipebench source, with `-dirty` if it had local changes.
    pub git_sha: String,
    /// `release` or `debug` (debug timings are not representative).
    pub build_profile: String,
    /// Compiler that built pipebench (`rustc -V`).
    pub rustc: String,
    /// Operating system family (linux, macos).
    pub os: String,
    /// Long OS name and version.
    pub os_version: String,
    /// CPU architecture (x86_64, aarch64).
    pub arch: String,
    /// Machine name.
    pub hostname: String,
    /// CPU brand string.
    pub cpu_model: String,
    /// Physical cores, where the OS says.
    pub cpu_cores_physical: Option<usize>,
    /// Logical CPUs available to the process.
    pub cpu_cores_logical: usize,
    /// CPU threads used by model kernels (candle / rayon): per model worker.
    pub threads: usize,
    /// Model workers (`device.workers`), each with `threads` threads [1 in reports before
    /// workers existed].
    #[serde(default = "one_worker")]
    pub workers: usize,
    /// The device the model stages ran on.
    pub device: DeviceInfo,
    /// candle-core version series.
    pub candle_version: String,
    /// Compiled-in candle features (cuda, metal, mkl, accelerate, avx).
    pub candle_features: Vec<String>,
    /// The libpdfium that rendered the pages.
    pub pdfium: PdfiumInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// As given: `cpu`, `cuda:0`, `metal:0`.
    pub spec: String,
    /// `cpu`, `cuda` or `metal`.
    pub kind: String,
    /// Human name (CPU model for the CPU).
    pub name: String,
    /// Driver or runtime version, where known.
    pub driver: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorpusInfo {
    /// Paths given on the command line.
    pub inputs: Vec<String>,
    /// Short name (the first input's file or folder name).
    pub name: String,
    /// sha256 over the sorted (document id, file sha256) pairs.
    pub hash: String,
    /// Documents found.
    pub documents_total: usize,
    /// Documents that could not be opened (listed in `errors`).
    pub documents_failed: usize,
    /// Pages in the documents that opened.
    pub pages_total: u64,
    /// Pages this run processed (`--max-pages` may cut it).
    pub pages_selected: u64,
    /// Time to discover, hash and open every document before the run.
    pub scan_ms: f64,
    /// Every document, in id order.
    pub documents: Vec<DocumentReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentReport {
    /// Stable id: the path relative to the corpus folder.
    pub id: String,
    /// Path as found on disk.
    pub path: String,
    /// File size.
    pub bytes: u64,
    /// sha256 of the file.
    pub sha256: String,
    /// Page count (0 if it could not be opened).
    pub pages: u32,
    /// Why the document could not be processed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyInfo {
    /// The strategy file's `name`.
    pub name: String,
    /// `sequential`, …
    pub kind: String,
    /// The strategy file, or `(built-in)`.
    pub file: String,
    /// Every parameter, defaults filled in.
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Pages that went through every stage.
    pub pages_ok: u64,
    /// Pages that failed a stage (listed in `errors`).
    pub pages_failed: u64,
    /// From the first page admitted to the last page done.
    pub wall_ms: f64,
    /// Pages completed (ok) per second of wall time.
    pub pages_per_s: f64,
    /// From the start of the run to the first page done.
    pub time_to_first_page_ms: f64,
    /// The most pages in flight at once (admitted, not yet done): what a strategy holds in
    /// memory, in pages — bounded by the queues in streaming-microbatch, the whole corpus in
    /// staged-batch.
    pub pages_in_flight_max: u64,
    /// Throughput once warm: pages done after the first tenth of the pages (at least one)
    /// divided by the time from that page's completion to the last one's. Cold start (model
    /// load) is `model_load_ms`; first calls are `stages[].first_call_ms`.
    pub steady_pages_per_s: f64,
    /// Pages counted as warm-up for `steady_pages_per_s`.
    pub warmup_pages: u64,
    /// Building the stages (model loading: the cold start), before the run.
    pub model_load_ms: f64,
    /// End-to-end page latency: admitted → done.
    pub page_latency: LatencySummary,
    /// Cost of recording one span (executor overhead with a no-op stage), measured before
    /// the run. Target: ≤ 2000 ns.
    pub instrumentation_overhead_ns: f64,
    /// Spans handed to the collector.
    pub spans_recorded: u64,
    /// Spans lost because the collector fell behind (the hot path never waits).
    pub spans_dropped: u64,
    /// Where the time went by resource, and how close the run came to the best its busiest
    /// resource allows.
    pub bottleneck: Bottleneck,
}

/// Busy time per resource and the ideal bound it implies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bottleneck {
    /// One entry per resource kind that did work (render threads, render processes, the
    /// device thread that owns the models).
    pub resources: Vec<ResourceReport>,
    /// The ideal wall time: the busiest resource kind's work divided by its workers. No
    /// schedule of the same work on the same resources can finish sooner.
    pub bound_ms: f64,
    /// The resource kind that sets the bound.
    pub bound_resource: String,
    /// `bound_ms / wall_ms`: 1.0 means the bottleneck was never left waiting.
    pub efficiency: f64,
}

/// One resource kind's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceReport {
    /// `render-thread`, `render-proc` or `device`.
    pub resource: String,
    /// Workers of this kind (threads or processes) that ran at least one call; for the
    /// device, every model worker the run had (`device.workers`), busy or not.
    pub workers: u64,
    /// Time inside stage calls, summed over the workers.
    pub busy_ms: f64,
    /// `busy / (wall × workers)`.
    pub utilization: f64,
    /// Gaps between a worker's consecutive calls, summed over the workers: for the device,
    /// the time the models waited for work.
    pub idle_gaps_ms: f64,
    /// The longest single gap.
    pub max_idle_gap_ms: f64,
}

/// Latency percentiles in milliseconds (from an HdrHistogram, 3 significant digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest value.
    pub max_ms: f64,
    /// The full histogram in nanoseconds: HdrHistogram V2 + deflate, base64 (mergeable).
    pub histogram_ns: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageReport {
    /// The stage.
    pub stage: StageKind,
    /// Model id of the stage.
    pub model: String,
    /// Workers that ran this stage.
    pub workers: Vec<WorkerId>,
    /// Items (pages) processed successfully.
    pub items: u64,
    /// Items on which the stage failed.
    pub items_failed: u64,
    /// Stage calls, retries included.
    pub batches: u64,
    /// Calls that re-ran one page of a failed batch.
    pub retries: u64,
    /// Batch size → number of calls.
    pub batch_sizes: BTreeMap<String, u64>,
    /// Sum of call durations.
    pub busy_ms: f64,
    /// busy / (wall × workers).
    pub utilization: f64,
    /// Items per second of busy time: the stage's capacity when it is never starved.
    pub items_per_busy_s: f64,
    /// Duration of one call (one batch).
    pub service_per_batch: LatencySummary,
    /// Duration of a call divided by its batch size, once per item.
    pub service_per_item: LatencySummary,
    /// Per item: ready (previous stage done) → call start.
    pub queue_wait: LatencySummary,
    /// The stage's first call (lazy initialization, cold caches), apart from the rest.
    pub first_call_ms: f64,
    /// Part of `busy_ms` spent inside worker processes, as they measured it (render with
    /// `render.processes > 0`: opening and rendering pages). Absent when the stage runs in
    /// pipebench's own process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_ms: Option<f64>,
    /// `busy_ms − worker_ms`: the round trip to the workers (request, reply, pixels through
    /// shared memory or the pipe, the copy out). Absent with `worker_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_ms: Option<f64>,
    /// Autoregressive stages (GOT-OCR 2.0): what their decoders generated and where the time
    /// went. Absent for other stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationReport>,
}

/// An autoregressive stage's generation, named as serving benchmarks name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationReport {
    /// Sequences generated (regions, or pages in page scope).
    pub sequences: u64,
    /// Tokens generated, end tokens included.
    pub tokens_generated: u64,
    /// `tokens_generated` per second of decode and prefill time.
    pub tokens_per_s: f64,
    /// Tokens per second of decode time alone (the steps).
    pub decode_tokens_per_s: f64,
    /// Images (tiles) through the vision tower and projector, and the time they took.
    pub images: u64,
    pub vision_ms: f64,
    /// Prompt processing (one sequence at a time), giving each sequence's first token.
    pub prefill_ms: f64,
    /// Decode steps (all sequences of a step together).
    pub decode_ms: f64,
    /// The rest of the stage's busy time: cropping and resizing, the oracle, outputs.
    pub other_ms: f64,
    pub decode_steps: u64,
    /// Mean sequences per decode step (batch occupancy).
    pub sequences_per_step: f64,
    /// Mean time from the start of a call's generation (after its images are encoded) to a
    /// sequence's first token.
    pub time_to_first_token_ms: f64,
    /// The largest KV cache a call held.
    pub kv_cache_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryReport {
    /// Sampling interval (`--sample-ms`).
    pub sample_interval_ms: u64,
    /// Samples taken (the series below is downsampled).
    pub samples_taken: usize,
    /// Kernel high-water mark of pipebench's resident set during this run (Linux: VmHWM, reset
    /// when the run starts; elsewhere getrusage, the process's).
    pub peak_rss_bytes: u64,
    /// Largest sampled pipebench RSS + render workers' RSS.
    pub peak_rss_with_children_bytes: u64,
    /// Physical memory of the machine.
    pub system_total_bytes: u64,
    /// Lowest available system memory seen: how close the run came to memory pressure.
    pub min_system_available_bytes: u64,
    /// Swap space of the machine.
    pub swap_total_bytes: u64,
    /// Most swap in use at any sample (swapping distorts timings).
    pub peak_swap_used_bytes: u64,
    /// CUDA: device total; Metal: recommended max working set. Absent on CPU.
    pub accelerator_total_bytes: Option<u64>,
    /// Most accelerator memory in use at any sample.
    pub peak_accelerator_used_bytes: Option<u64>,
    /// At most 512 samples, each bucket keeping its largest RSS so peaks survive.
    pub series: Vec<MemorySample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageReport {
    /// Global page index (what spans' `items` refer to).
    pub index: u32,
    /// `document#pN`.
    pub id: String,
    /// Document id.
    pub document: String,
    /// 1-based page number in its document.
    pub page: u32,
    /// True if the page went through every stage.
    pub ok: bool,
    /// The stage that failed, if one did.
    pub failed_stage: Option<StageKind>,
    /// When the page entered the pipeline (its render was requested), since the run started.
    pub admitted_ms: f64,
    /// When its last stage finished, since the run started.
    pub done_ms: f64,
    /// done − admitted: end-to-end page latency.
    pub latency_ms: f64,
    /// Rendered width.
    pub width_px: u32,
    /// Rendered height.
    pub height_px: u32,
    /// sha256 of this page's canonical output JSON.
    pub output_sha256: String,
}

/// Where a report's spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpansMode {
    /// In the report.
    Inline,
    /// In a JSON-lines file next to the report.
    File,
    /// Nowhere.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpansReport {
    /// `inline`, `file` or `none`.
    pub mode: SpansMode,
    /// With `file`: the JSON-lines file next to the report (one span per line).
    pub file: Option<String>,
    /// With `inline`: every stage call, sorted by start.
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// Document id.
    pub document: String,
    /// 1-based page, when the error concerns one page.
    pub page: Option<u32>,
    /// `open` for documents that could not be opened, else the stage.
    pub stage: String,
    /// Short kind: corrupt, encrypted, not_pdf, no_pages, oom, …
    pub kind: String,
    /// What went wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDigest {
    /// Hash algorithm of the digests.
    pub algorithm: String,
    /// sha256 over the per-page output hashes in corpus order: equal digests mean equal
    /// extracted outputs, whatever the strategy.
    pub digest: String,
    /// Pages covered.
    pub pages: u64,
    /// What was extracted, counted: makes the work behind the timings visible (a strategy
    /// or OCR scope that finds less text is cheaper for that reason).
    pub content: OutputContent,
    /// With `run --check-outputs DIR`: this run's outputs compared with a reference run's.
    pub check: Option<OutputCheck>,
    /// With `run --save-outputs DIR`: that folder, as an absolute path (`compare` finds the
    /// outputs there, or in a folder of the same name beside the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
}

/// This run's outputs against a reference run's saved outputs, page by page and region by
/// region (exact: any difference is listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputCheck {
    /// The folder of the reference run's `--save-outputs`.
    pub reference: String,
    /// Pages found in both runs and compared.
    pub pages_compared: u64,
    /// Pages of this run the reference does not have (not compared).
    pub pages_missing: u64,
    /// Compared pages whose outputs differ.
    pub pages_differing: u64,
    /// Differences found, over all pages.
    pub differences_total: u64,
    /// The first differences (at most 50), in page order.
    pub differences: Vec<OutputDifference>,
    /// How far the outputs agree, with tolerance (absent in reports before v9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<OutputAgreement>,
    /// With `--min-agreement PCT`: differences fail the run only when a figure of `agreement`
    /// is below PCT percent. Without it, any difference fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement_pct: Option<f64>,
}

/// Two runs' outputs compared with tolerance: regions matched by IoU, text by character error
/// rate between the runs, table cells by position and text. Fractions (1 = full agreement);
/// a figure is absent when neither run has anything it measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputAgreement {
    /// How regions, lines and cells were matched and counted.
    pub method: String,
    /// Pages found in both runs and compared.
    pub pages_compared: u64,
    /// Regions of the reference run.
    pub regions_reference: u64,
    /// Regions of this run.
    pub regions_actual: u64,
    /// Regions matched one to one (same class, IoU ≥ 0.5).
    pub regions_matched: u64,
    /// `regions_matched` / Σ over pages of max(reference regions, this run's regions).
    pub region_agreement: Option<f64>,
    /// Non-whitespace characters of the reference run's text.
    pub reference_chars: u64,
    /// Edit distance of this run's text from the reference's, lines matched by overlap, the rest
    /// in reading order.
    pub char_errors: u64,
    /// 1 − `char_errors` / `reference_chars` (1 − CER), at least 0.
    pub char_agreement: Option<f64>,
    /// Cells of the reference run's tables.
    pub table_cells_reference: u64,
    /// Cells of this run's tables.
    pub table_cells_actual: u64,
    /// Cells at the same (row, column) with the same text, in tables matched as regions.
    pub table_cells_agreeing: u64,
    /// `table_cells_agreeing` / Σ over tables of max(reference cells, this run's cells).
    pub table_cell_agreement: Option<f64>,
    /// The worst differences, bounded: regions found by one run only (largest first, 5), the
    /// tables with the most differing cells (5), the text with the most character errors (10).
    pub worst: Vec<AgreementDifference>,
}

/// One of the worst differences, with both values (long values shortened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementDifference {
    /// Page id (`doc.pdf#p3`).
    pub page: String,
    /// `region` (found by one run only), `table` (cells differ) or `text` (a line or a group
    /// of overlapping lines, or the lines that overlap nothing, joined in reading order).
    pub kind: String,
    /// Region index in reading order, in the run that has it (the reference's for tables).
    pub region: Option<u64>,
    /// The reference run's value.
    pub reference: String,
    /// This run's value.
    pub actual: String,
    /// Characters (text) or cells (table) that differ; 1 for a region.
    pub errors: u64,
    /// Out of: the reference's characters (text), max(cells) (table); 1 for a region.
    pub of: u64,
}

/// One difference: where, what, and both values (long values shortened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDifference {
    /// Page id (`doc.pdf#p3`).
    pub page: String,
    /// Region index in reading order; none for page-level fields (size, lines, ok).
    pub region: Option<u64>,
    /// `class`, `bbox`, `confidence`, `text`, `html`, `decoder_steps`, `region` (present in
    /// one run only), `size`, `lines` or `ok`.
    pub field: String,
    /// The reference run's value.
    pub reference: String,
    /// This run's value.
    pub actual: String,
}

/// Counts over every page's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputContent {
    /// Regions per class (layout classes, plus `text_line` for OCR lines outside every
    /// layout region).
    pub regions_by_class: std::collections::BTreeMap<String, u64>,
    /// Recognized text lines.
    pub text_lines: u64,
    /// Characters of recognized text (whitespace excluded).
    pub text_chars: u64,
    /// Table regions that got a structure.
    pub tables: u64,
    /// Table structure decoder steps, summed over tables: the data-dependent part of the
    /// table stage's cost (one step per structure token, up to the model's limit; SLANet only,
    /// Table Transformer has no decoder loop).
    pub table_decoder_steps: u64,
    /// The most decoder steps any one table took.
    pub table_decoder_steps_max: u64,
}

fn one_worker() -> usize {
    1
}
