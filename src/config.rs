//! Strategy files (`strategies/*.toml`): parsing with `deny_unknown_fields` and validation.
//! Every error names the file, the line and the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::corpus::render::RenderSpec;
use crate::models::available_models;
use crate::vocab::StageKind;

/// The built-in default strategy (the same text as strategies/sequential.toml).
pub const DEFAULT_STRATEGY: &str = include_str!("../strategies/sequential.toml");

/// The four shipped strategy files (path, text), sequential first: what `pipebench tui` runs
/// by default, compiled in so the binary works from any folder.
pub const SHIPPED_STRATEGIES: [(&str, &str); 4] = [
    ("strategies/sequential.toml", DEFAULT_STRATEGY),
    (
        "strategies/concurrent-render.toml",
        include_str!("../strategies/concurrent-render.toml"),
    ),
    (
        "strategies/staged-batch.toml",
        include_str!("../strategies/staged-batch.toml"),
    ),
    (
        "strategies/streaming-microbatch.toml",
        include_str!("../strategies/streaming-microbatch.toml"),
    ),
];

/// Execution strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// One page at a time through every stage, rendering in-process.
    Sequential,
    /// Render worker processes render ahead; the models take one page at a time, in order.
    ConcurrentRender,
    /// Every page rendered, then each stage over all pages in batches, stage after stage.
    StagedBatch,
    /// Bounded queues between stages; micro-batches leave when full or when their wait limit
    /// passes; one device thread runs them, chosen by a scheduling policy; rendering overlaps.
    StreamingMicrobatch,
}

impl StrategyKind {
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Sequential => "sequential",
            StrategyKind::ConcurrentRender => "concurrent-render",
            StrategyKind::StagedBatch => "staged-batch",
            StrategyKind::StreamingMicrobatch => "streaming-microbatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    /// A name for reports and titles.
    pub name: String,
    pub kind: StrategyKind,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub render: RenderParams,
    #[serde(default)]
    pub stages: StagesSpec,
    /// streaming-microbatch only: how the device thread picks among ready batches.
    #[serde(default)]
    pub scheduler: Option<SchedulerParams>,
    /// Model profile: `seed` swaps the embedded layout and table models for the seed models
    /// (detr-layout, tatr-structure); stages naming other models keep them.
    #[serde(default)]
    pub models: ModelProfile,
}

/// Which family of models the stages run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[derive(clap::ValueEnum)]
pub enum ModelProfile {
    /// As each stage names (the embedded models in the shipped strategies).
    #[default]
    Embedded,
    /// The production pipeline's models: DETR layout (cmarkea/detr-layout-detection) and
    /// Table Transformer structure recognition, from checkpoints or `--weights random`.
    Seed,
}

impl ModelProfile {
    pub fn name(self) -> &'static str {
        match self {
            ModelProfile::Embedded => "embedded",
            ModelProfile::Seed => "seed",
        }
    }
}

impl StrategySpec {
    /// Applies `profile`: with `seed`, a layout stage on the embedded layout model runs
    /// detr-layout and a table stage on slanet-plus runs tatr-structure.
    pub fn apply_profile(&mut self, profile: ModelProfile) {
        self.models = profile;
        if profile == ModelProfile::Seed {
            if self.stages.layout.model == "picodet-layout-cdla" {
                self.stages.layout.model = "detr-layout".into();
            }
            if self.stages.table.model == "slanet-plus" {
                self.stages.table.model = "tatr-structure".into();
            }
        }
    }
}

/// How streaming-microbatch's device thread chooses its next batch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerParams {
    /// Which ready batch runs next when several are.
    pub policy: SchedulingPolicy,
    /// Batches are fixed chunks of the page order (pages 1–4, 5–8, … for a batch size of 4,
    /// less the pages that failed earlier), whatever the timing: runs are reproducible batch
    /// for batch. Wait limits are then ignored: a batch waits for its own pages.
    pub deterministic: bool,
}

/// The order in which ready micro-batches reach the device.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulingPolicy {
    /// The ready batch of the latest stage first: pages finish (and free their image) before
    /// new ones start, so memory and page latency stay low.
    #[default]
    LatestStageFirst,
    /// The ready batch of the earliest stage first: early stages run ahead and later queues
    /// fill, giving later stages fuller batches at the cost of memory and latency.
    EarliestStageFirst,
    /// The batch whose oldest page has waited longest (first come, first served).
    OldestFirst,
}

impl SchedulingPolicy {
    pub fn name(self) -> &'static str {
        match self {
            SchedulingPolicy::LatestStageFirst => "latest-stage-first",
            SchedulingPolicy::EarliestStageFirst => "earliest-stage-first",
            SchedulingPolicy::OldestFirst => "oldest-first",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RenderParams {
    /// Rendering resolution in dots per inch.
    pub dpi: f32,
    /// Optional cap on the longer side of a rendered page, in pixels.
    pub max_long_side_px: Option<u32>,
    /// Render worker processes; 0 renders in-process on one thread.
    pub processes: usize,
    /// Rendered pages waiting for the models, at most (concurrent-render): how far rendering
    /// may run ahead, which bounds the memory held in page images [default: 4].
    /// streaming-microbatch bounds rendered pages with `stages.layout.queue_capacity` instead.
    pub queue_capacity: Option<usize>,
}

impl Default for RenderParams {
    fn default() -> Self {
        Self {
            dpi: 150.0,
            max_long_side_px: None,
            processes: 0,
            queue_capacity: None,
        }
    }
}

impl RenderParams {
    /// Rendered pages waiting for the models, at most (concurrent-render).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity.unwrap_or(DEFAULT_RENDER_QUEUE)
    }

    pub fn spec(&self) -> RenderSpec {
        RenderSpec {
            dpi: self.dpi,
            max_long_side_px: self.max_long_side_px,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StagesSpec {
    pub layout: StageSpec,
    pub ocr: StageSpec,
    pub table: StageSpec,
    pub figure: StageSpec,
}

impl StagesSpec {
    pub fn get(&self, kind: StageKind) -> Option<&StageSpec> {
        match kind {
            StageKind::Layout => Some(&self.layout),
            StageKind::Ocr => Some(&self.ocr),
            StageKind::Table => Some(&self.table),
            StageKind::Figure => Some(&self.figure),
            StageKind::Render => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StageSpec {
    /// Model id (see `models::available_models`: `null` everywhere; `ppocrv5`, `ppocrv4` for ocr).
    pub model: String,
    /// Pages per stage call.
    pub batch_size: usize,
    /// `null` model only: milliseconds to sleep per page (a deterministic fake workload).
    pub sleep_ms: f64,
    /// `null` model only: page ids (`doc.pdf#p2`) on which the stage fails (for tests).
    pub fail_pages: Vec<String>,
    /// OCR models only: text lines per recognition call (lines of similar width are batched
    /// together, across all pages of the stage call).
    pub rec_batch_size: usize,
    /// OCR models only: `page` detects text once per page and assigns the lines to layout
    /// regions by overlap; `region` runs detection on each text or table region's crop (one
    /// detection call per region, the prototype's way).
    pub scope: OcrScope,
    /// Table models only: the decoder's step limit per table (SLANet's `max_text_length`).
    pub max_decoder_steps: usize,
    /// streaming-microbatch only: pages waiting for this stage, at most; producers (the
    /// previous stage, or rendering for the first stage) hold back while it is full. At least
    /// `batch_size` [default: the larger of 2 × batch_size and 4].
    pub queue_capacity: Option<usize>,
    /// streaming-microbatch only: how long a partial batch may wait for more pages before it
    /// leaves anyway, in milliseconds [default: 20].
    pub max_wait_ms: Option<f64>,
    /// Seed models only (detr-layout, tatr-*): `random` for seeded random weights of the
    /// full-size architecture (real compute, meaningless outputs), or the checkpoint folder
    /// (`hf download <repo> --local-dir <folder>`) [default: models/<model id>]. The command
    /// line's `--weights` takes precedence.
    pub weights: Option<String>,
    /// detr-layout only: also run the checkpoint's segmentation mask head (DetrForSegmentation;
    /// about 4.5× the detector's compute). The masks are discarded: this measures what a
    /// pipeline that keeps them pays.
    pub masks: bool,
}

impl StageSpec {
    /// Pages waiting for this stage, at most (streaming-microbatch).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
            .unwrap_or((2 * self.batch_size).max(DEFAULT_STAGE_QUEUE))
    }

    /// How long a partial batch may wait, in nanoseconds (streaming-microbatch).
    pub fn max_wait_ns(&self) -> u64 {
        (self.max_wait_ms.unwrap_or(DEFAULT_MAX_WAIT_MS) * 1e6) as u64
    }
}

/// Where OCR text detection runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OcrScope {
    /// Once per page; lines are assigned to layout regions by overlap.
    #[default]
    Page,
    /// Once per text-like or table region, on its crop.
    Region,
}

impl OcrScope {
    pub fn name(self) -> &'static str {
        match self {
            OcrScope::Page => "page",
            OcrScope::Region => "region",
        }
    }
}

/// Pages rendered ahead of the models by default: enough to hide a slow page's render behind
/// the models' work on the previous ones, few enough that page images (~6 MB each at 150 dpi)
/// stay a small share of memory.
pub const DEFAULT_RENDER_QUEUE: usize = 4;

/// Pages waiting for a stage by default (streaming-microbatch), when twice the batch size is
/// less: as for the render queue, enough to keep the device fed, few enough to bound memory.
pub const DEFAULT_STAGE_QUEUE: usize = 4;

/// How long a partial micro-batch waits for more pages by default. On CPU a page costs the
/// models ~1.6 s, so 20 ms is ~1 % of a page: cheap insurance for a fuller batch. On a GPU,
/// where a batch takes milliseconds, set it near one batch's service time.
pub const DEFAULT_MAX_WAIT_MS: f64 = 20.0;

/// SLANet's `max_text_length`: 500 structure tokens.
pub const DEFAULT_MAX_DECODER_STEPS: usize = 500;

impl Default for StageSpec {
    fn default() -> Self {
        Self {
            model: "null".into(),
            batch_size: 1,
            sleep_ms: 0.0,
            fail_pages: Vec::new(),
            rec_batch_size: 6,
            scope: OcrScope::Page,
            max_decoder_steps: DEFAULT_MAX_DECODER_STEPS,
            queue_capacity: None,
            max_wait_ms: None,
            weights: None,
            masks: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read strategy file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid strategy file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Loads and validates a strategy file.
pub fn load(path: &Path) -> Result<StrategySpec, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates strategy text; `path` is used in messages.
pub fn parse(text: &str, path: &Path) -> Result<StrategySpec, ConfigError> {
    let mut spec: StrategySpec = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    spec.apply_profile(spec.models);
    validate(&spec).map_err(|(key, message)| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: locate(text, &key).unwrap_or(1),
        key,
        message,
    })?;
    Ok(spec)
}

/// Largest dpi accepted: 2400 dpi is beyond any OCR model's need; larger is almost surely a typo.
const MAX_DPI: f32 = 2400.0;
/// Largest render pool accepted: well beyond the core count of any machine we target.
const MAX_RENDER_PROCESSES: usize = 256;

fn validate(s: &StrategySpec) -> Result<(), (String, String)> {
    let bad = |k: &str, m: String| Err((k.to_string(), m));
    if s.name.trim().is_empty() {
        return bad("name", "must not be empty".into());
    }
    if !(s.render.dpi > 0.0 && s.render.dpi <= MAX_DPI) {
        return bad(
            "render.dpi",
            format!("must be in (0, {MAX_DPI}], got {}", s.render.dpi),
        );
    }
    if s.render.max_long_side_px == Some(0) {
        return bad("render.max_long_side_px", "must be at least 1".into());
    }
    if s.render.processes > MAX_RENDER_PROCESSES {
        return bad(
            "render.processes",
            format!("at most {MAX_RENDER_PROCESSES}, got {}", s.render.processes),
        );
    }
    if matches!(s.kind, StrategyKind::Sequential | StrategyKind::StagedBatch)
        && s.render.processes != 0
    {
        return bad(
            "render.processes",
            format!(
                "the {} strategy renders in-process, one page at a time: set it to 0",
                s.kind.name()
            ),
        );
    }
    if s.kind == StrategyKind::ConcurrentRender && s.render.processes == 0 {
        return bad(
            "render.processes",
            "concurrent-render renders in worker processes: set at least 1 (2 on two cores)".into(),
        );
    }
    let streaming = s.kind == StrategyKind::StreamingMicrobatch;
    match s.render.queue_capacity {
        Some(0) => return bad("render.queue_capacity", "must be at least 1".into()),
        Some(_) if streaming => {
            return bad(
                "render.queue_capacity",
                "streaming-microbatch bounds rendered pages with `stages.layout.queue_capacity`: set that instead".into(),
            );
        }
        _ => {}
    }
    if s.scheduler.is_some() && !streaming {
        return bad(
            "scheduler",
            format!(
                "applies to the streaming-microbatch strategy only, not {}",
                s.kind.name()
            ),
        );
    }
    for kind in StageKind::MODELS {
        let st = s.stages.get(kind).expect("model stages have specs");
        let key = |k: &str| format!("stages.{kind}.{k}");
        if !available_models(kind).contains(&st.model.as_str()) {
            return bad(
                &key("model"),
                format!(
                    "unknown model `{}`; available: {}",
                    st.model,
                    available_models(kind).join(", ")
                ),
            );
        }
        if st.batch_size == 0 {
            return bad(&key("batch_size"), "must be at least 1".into());
        }
        if matches!(
            s.kind,
            StrategyKind::Sequential | StrategyKind::ConcurrentRender
        ) && st.batch_size != 1
        {
            return bad(
                &key("batch_size"),
                format!(
                    "the {} strategy runs the models one page at a time: set it to 1",
                    s.kind.name()
                ),
            );
        }
        if st.rec_batch_size == 0 {
            return bad(&key("rec_batch_size"), "must be at least 1".into());
        }
        if kind != StageKind::Ocr && st.scope != OcrScope::Page {
            return bad(&key("scope"), "applies to the ocr stage only".into());
        }
        if st.max_decoder_steps == 0 {
            return bad(&key("max_decoder_steps"), "must be at least 1".into());
        }
        for (field, set) in [
            ("queue_capacity", st.queue_capacity.is_some()),
            ("max_wait_ms", st.max_wait_ms.is_some()),
        ] {
            if set && !streaming {
                return bad(
                    &key(field),
                    format!(
                        "applies to the streaming-microbatch strategy only, not {}",
                        s.kind.name()
                    ),
                );
            }
        }
        if st.queue_capacity() < st.batch_size {
            return bad(
                &key("queue_capacity"),
                format!(
                    "must hold at least one batch (batch_size = {}), got {}",
                    st.batch_size,
                    st.queue_capacity()
                ),
            );
        }
        if let Some(w) = st.max_wait_ms
            && !(w.is_finite() && w >= 0.0)
        {
            return bad(
                &key("max_wait_ms"),
                format!("must be a finite number ≥ 0, got {w}"),
            );
        }
        if !(st.sleep_ms.is_finite() && st.sleep_ms >= 0.0) {
            return bad(
                &key("sleep_ms"),
                format!("must be a finite number ≥ 0, got {}", st.sleep_ms),
            );
        }
        if st.model != "null" && (st.sleep_ms != 0.0 || !st.fail_pages.is_empty()) {
            return bad(
                &key("model"),
                "sleep_ms and fail_pages apply to the `null` test model only".into(),
            );
        }
        if st.weights.is_some() && crate::models::detr::stage::seed_card(&st.model).is_none() {
            return bad(
                &key("weights"),
                format!(
                    "applies to the seed models only (detr-layout, tatr-detection, \
                     tatr-structure, tatr-structure-v1.1), not `{}`",
                    st.model
                ),
            );
        }
        if st.masks && st.model != "detr-layout" {
            return bad(
                &key("masks"),
                format!(
                    "applies to detr-layout only (a DetrForSegmentation checkpoint), not `{}`",
                    st.model
                ),
            );
        }
        if st.weights.as_deref().is_some_and(|w| w.trim().is_empty()) {
            return bad(&key("weights"), "must be `random` or a folder".into());
        }
    }
    Ok(())
}

/// Finds the line (1-based) that sets dotted `key` (`stages.ocr.batch_size`), by tracking
/// `[table]` headers. Falls back to the table header, then None.
fn locate(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t, l),
        None => ("", key),
    };
    let mut current = String::new();
    let mut header_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = h.trim().to_string();
            // A key that names a whole table (`scheduler`) points at its header.
            if current == key {
                return Some(i + 1);
            }
            if current == table {
                header_line = Some(i + 1);
            }
            continue;
        }
        if let Some((k, _)) = line.split_once('=') {
            let k = k.trim().trim_matches('"');
            let full = if current.is_empty() {
                k.to_string()
            } else {
                format!("{current}.{k}")
            };
            if full == key || (current == table && k == leaf) {
                return Some(i + 1);
            }
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("strategies/test.toml")
    }

    #[test]
    fn default_strategy_is_valid() {
        let s = parse(DEFAULT_STRATEGY, p()).expect("valid");
        assert_eq!(s.kind, StrategyKind::Sequential);
        assert_eq!(s.render.dpi, 150.0);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "name = \"x\"\nkind = \"sequential\"\n[render]\ndpi = 150\nbogus = 1\n";
        let err = parse(text, p()).expect_err("unknown key").to_string();
        assert!(err.contains("strategies/test.toml"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let text = "name = \"x\"\nkind = \"sequential\"\n[render]\ndpi = \"high\"\n";
        let err = parse(text, p()).expect_err("bad type").to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_strategy_kind_lists_the_known_ones() {
        let err = parse("name = \"x\"\nkind = \"warp-speed\"\n", p())
            .expect_err("bad kind")
            .to_string();
        assert!(err.contains("sequential"), "{err}");
    }

    #[test]
    fn concurrent_render_needs_render_processes_and_single_pages() {
        let no_procs = "name = \"c\"\nkind = \"concurrent-render\"\n";
        match parse(no_procs, p()) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "render.processes"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let batched = "name = \"c\"\nkind = \"concurrent-render\"\n[render]\nprocesses = 2\n[stages.layout]\nmodel = \"null\"\nbatch_size = 4\n";
        match parse(batched, p()) {
            Err(ConfigError::Invalid { key, line, .. }) => {
                assert_eq!(key, "stages.layout.batch_size");
                assert_eq!(line, 7);
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let ok = "name = \"c\"\nkind = \"concurrent-render\"\n[render]\nprocesses = 2\n";
        assert_eq!(
            parse(ok, p()).expect("valid").render.queue_capacity(),
            DEFAULT_RENDER_QUEUE
        );
    }

    #[test]
    fn streaming_parameters_are_checked_and_belong_to_streaming_only() {
        let ok = "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\npolicy = \"oldest-first\"\n[stages.ocr]\nbatch_size = 3\nmax_wait_ms = 5\n";
        let s = parse(ok, p()).expect("valid");
        assert_eq!(
            s.scheduler.as_ref().map(|x| x.policy),
            Some(SchedulingPolicy::OldestFirst)
        );
        assert_eq!(s.stages.ocr.queue_capacity(), 6);
        assert_eq!(s.stages.layout.queue_capacity(), DEFAULT_STAGE_QUEUE);
        assert_eq!(s.stages.ocr.max_wait_ns(), 5_000_000);
        assert_eq!(
            s.stages.table.max_wait_ns(),
            (DEFAULT_MAX_WAIT_MS * 1e6) as u64
        );
        let key_of = |text: &str| match parse(text, p()) {
            Err(ConfigError::Invalid { key, line, .. }) => (key, line),
            other => panic!("expected Invalid, got {other:?}"),
        };
        let small_queue = "name = \"s\"\nkind = \"streaming-microbatch\"\n[stages.ocr]\nbatch_size = 8\nqueue_capacity = 4\n";
        assert_eq!(
            key_of(small_queue),
            ("stages.ocr.queue_capacity".to_string(), 5)
        );
        let render_queue =
            "name = \"s\"\nkind = \"streaming-microbatch\"\n[render]\nqueue_capacity = 2\n";
        assert_eq!(key_of(render_queue).0, "render.queue_capacity");
        let waits_elsewhere =
            "name = \"s\"\nkind = \"staged-batch\"\n[stages.layout]\nmax_wait_ms = 3\n";
        assert_eq!(
            key_of(waits_elsewhere),
            ("stages.layout.max_wait_ms".to_string(), 4)
        );
        let scheduler_elsewhere =
            "name = \"s\"\nkind = \"sequential\"\n[scheduler]\ndeterministic = true\n";
        assert_eq!(key_of(scheduler_elsewhere), ("scheduler".to_string(), 3));
        let bad_policy =
            "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\npolicy = \"random\"\n";
        let err = parse(bad_policy, p()).expect_err("bad policy").to_string();
        assert!(err.contains("latest-stage-first"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let text = "name = \"x\"\nkind = \"sequential\"\n\n[stages.ocr]\nmodel = \"null\"\nbatch_size = 0\n";
        match parse(text, p()) {
            Err(ConfigError::Invalid { line, key, .. }) => {
                assert_eq!(key, "stages.ocr.batch_size");
                assert_eq!(line, 6);
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.layout]\nmodel = \"gpt-9\"\n";
        let err = parse(text, p()).expect_err("unknown model").to_string();
        assert!(
            err.contains(":4:")
                && err.contains("stages.layout.model")
                && err
                    .contains("available: picodet-layout-cdla, detr-layout, tatr-detection, null"),
            "{err}"
        );
        let text = "name = \"x\"\nkind = \"sequential\"\n[render]\ndpi = -3\n";
        let err = parse(text, p()).expect_err("bad dpi").to_string();
        assert!(err.contains(":4:") && err.contains("render.dpi"), "{err}");
    }

    #[test]
    fn every_shipped_strategy_file_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("strategies");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("strategies/") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
