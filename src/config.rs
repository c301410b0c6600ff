//! Strategy files (`strategies/*.toml`) as written: the raw serde types, parsed with
//! `deny_unknown_fields`, and the error type that names the file, the line and the key.
//! Nothing here applies defaults or knows a model: [`crate::plan`] resolves a parsed file into
//! the run plan (models from the registry, typed options, defaults and derived values), which
//! is all the rest of pipebench reads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Model profile (`models::registry::PROFILES`): `seed` swaps the embedded layout and
    /// table models for the seed models; stages naming other models keep them.
    #[serde(default)]
    pub models: Option<String>,
    /// How many model workers run the stages, and the CPU threads of each.
    #[serde(default)]
    pub device: Option<DeviceParams>,
}

/// `[device]`: model workers (what Triton Model Analyzer calls instance count). Each worker is
/// a thread with its own pool of `threads` CPU threads; the workers share the loaded weights
/// and take batches from the same scheduler.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceParams {
    /// Model workers [default: 1].
    pub workers: Option<usize>,
    /// CPU threads per worker [default: with one worker, the process's `--threads` (else the
    /// physical cores); with several, the cores divided among them].
    pub threads: Option<usize>,
}

/// How streaming-microbatch's device thread chooses its next batch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerParams {
    /// Which ready batch runs next when several are.
    pub policy: SchedulingPolicy,
    /// Batches are fixed chunks of the page order (pages 1–4, 5–8, … for a batch size of 4,
    /// less the pages that failed earlier), whatever the timing: runs are reproducible batch
    /// for batch. Wait limits are then ignored: a batch waits for its own pages.
    pub deterministic: bool,
    /// Each stage's queue holds this many of its batches, unless the stage sets
    /// `queue_capacity` itself: the capacity follows `batch_size` (in a sweep too)
    /// [default: the larger of 2 × batch_size and 4 pages].
    pub queue_batches: Option<usize>,
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderParams {
    /// Rendering resolution in dots per inch [default: 150].
    pub dpi: Option<f32>,
    /// Optional cap on the longer side of a rendered page, in pixels.
    pub max_long_side_px: Option<u32>,
    /// Render worker processes; 0 renders in-process on one thread [default: 0].
    pub processes: Option<usize>,
    /// Rendered pages waiting for the models, at most (concurrent-render): how far rendering
    /// may run ahead, which bounds the memory held in page images [default: 4].
    /// streaming-microbatch bounds rendered pages with `stages.layout.queue_capacity` instead.
    pub queue_capacity: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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

/// One model stage's table. The strategy's own keys are typed here; every other key is the
/// model's option, checked against the model's options struct when the plan is resolved
/// (`models::registry`), so a misplaced key names the stage, the model and the line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StageSpec {
    /// Model id (`models::registry`; `pipebench models` lists them) [default: `null`].
    pub model: Option<String>,
    /// Pages per stage call [default: 1].
    pub batch_size: Option<usize>,
    /// streaming-microbatch only: pages waiting for this stage, at most; producers (the
    /// previous stage, or rendering for the first stage) hold back while it is full. At least
    /// `batch_size` [default: `scheduler.queue_batches` × batch_size, else the larger of
    /// 2 × batch_size and 4].
    pub queue_capacity: Option<usize>,
    /// streaming-microbatch only: how long a partial batch may wait for more pages before it
    /// leaves anyway, in milliseconds [default: 20].
    pub max_wait_ms: Option<f64>,
    /// The model's options (`rec_batch_size`, `scope`, `weights`, …).
    #[serde(flatten)]
    pub options: toml::Table,
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

/// A parsed strategy file: its text (for error lines) and its raw values.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyFile {
    /// The file, or `(built-in)`: for messages and reports.
    pub path: PathBuf,
    pub text: String,
    pub spec: StrategySpec,
}

impl StrategyFile {
    /// An error at dotted `key`, with the line that sets it.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line: locate(&self.text, key).unwrap_or(1),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Reads and parses a strategy file.
pub fn load(path: &Path) -> Result<StrategyFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses strategy text; `path` is used in messages.
pub fn parse(text: &str, path: &Path) -> Result<StrategyFile, ConfigError> {
    let spec: StrategySpec = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    Ok(StrategyFile {
        path: path.to_path_buf(),
        text: text.to_string(),
        spec,
    })
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
    fn stage_keys_other_than_the_strategys_are_model_options() {
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.ocr]\nmodel = \"ppocrv5\"\nscope = \"region\"\n";
        let f = parse(text, p()).expect("parses");
        assert_eq!(f.spec.stages.ocr.model.as_deref(), Some("ppocrv5"));
        assert_eq!(
            f.spec
                .stages
                .ocr
                .options
                .get("scope")
                .and_then(|v| v.as_str()),
            Some("region")
        );
        assert_eq!(locate(text, "stages.ocr.scope"), Some(5));
    }
}
