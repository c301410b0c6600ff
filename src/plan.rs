//! The run plan: a strategy file ([`crate::config`], raw) resolved once into what runs.
//!
//! Resolving checks every value (errors name the file, the line and the key), picks the model
//! of every stage from the registry (`models::registry`), applies the model profile, turns the
//! stage's model keys into the model's typed options, fills in defaults and derives the values
//! that follow from others. The pipeline, the session, the report, the sweep and the TUI read
//! the plan, never the raw file. Compare ripgrep's `LowArgs` → `HiArgs`.
//!
//! **Derived values follow what they derive from.** A streaming queue's capacity, unless the
//! stage sets `queue_capacity` itself, is `scheduler.queue_batches` × its batch size (else the
//! larger of 2 × batch size and [`DEFAULT_STAGE_QUEUE`]): a sweep over `batch_size` moves the
//! queues with it. A value the file sets on purpose is kept, and checked. The plan lists every
//! derived value and how it was derived ([`RunPlan::derived`]), and every key a profile made
//! moot ([`RunPlan::ignored`]); the report keeps both with the parameters.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{
    ConfigError, SchedulerParams, SchedulingPolicy, StageSpec, StrategyFile, StrategyKind,
};
use crate::corpus::render::RenderSpec;
use crate::models::generate::{self, Batching};
use crate::models::registry::{self, ModelEntry};
use crate::vocab::StageKind;

/// Rendering resolution by default: PP-OCR and PicoDet expect roughly 100–200 dpi.
pub const DEFAULT_DPI: f32 = 150.0;

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

/// Largest dpi accepted: 2400 dpi is beyond any OCR model's need; larger is almost surely a typo.
const MAX_DPI: f32 = 2400.0;
/// Largest render pool accepted: well beyond the core count of any machine we target.
const MAX_RENDER_PROCESSES: usize = 256;
/// Most model workers, and most threads per worker, accepted: as for render processes, well
/// beyond the core count of any machine we target; more is almost surely a typo.
const MAX_WORKERS: usize = 256;

/// A strategy, resolved: everything a run needs, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPlan {
    pub name: String,
    pub kind: StrategyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The strategy file, or `(built-in)` (the report keeps it beside the parameters).
    #[serde(skip)]
    pub file: String,
    /// The model profile applied (`models::registry::PROFILES`).
    pub models: String,
    pub render: RenderPlan,
    /// The model stages, in pipeline order.
    pub stages: BTreeMap<StageKind, StagePlan>,
    /// streaming-microbatch only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerPlan>,
    /// Model workers and their threads.
    pub device: DevicePlan,
    /// Values the file did not set that follow from others (queue capacities from batch
    /// sizes, models from the profile).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<Derived>,
    /// Keys of the file that the plan does not use (a model's options after the profile
    /// swapped the model for one without them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderPlan {
    pub dpi: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_long_side_px: Option<u32>,
    /// Render worker processes; 0 renders in-process.
    pub processes: usize,
    /// concurrent-render only: rendered pages waiting for the models, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
}

impl RenderPlan {
    pub fn spec(&self) -> RenderSpec {
        RenderSpec {
            dpi: self.dpi,
            max_long_side_px: self.max_long_side_px,
        }
    }
}

/// Model workers (`[device]`): `workers` threads run the model stages, each with a pool of
/// `threads` CPU threads, sharing one copy of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DevicePlan {
    pub workers: usize,
    /// CPU threads per worker; None: one worker on the process's threads (`--threads`, else
    /// the physical cores), as every run before workers existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl Default for DevicePlan {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: None,
        }
    }
}

/// One model stage, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePlan {
    /// A registry id.
    pub model: String,
    /// Pages per stage call.
    pub batch_size: usize,
    /// streaming-microbatch only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueuePlan>,
    /// The model's options, defaults filled in (the model's options struct, as JSON).
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

/// A stage's queue (streaming-microbatch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueuePlan {
    /// Pages waiting for this stage, at most.
    pub queue_capacity: usize,
    /// How long a partial batch may wait, in milliseconds.
    pub max_wait_ms: f64,
}

impl QueuePlan {
    pub fn max_wait_ns(&self) -> u64 {
        (self.max_wait_ms * 1e6) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SchedulerPlan {
    pub policy: SchedulingPolicy,
    pub deterministic: bool,
}

/// A value the file did not set, and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// Dotted key (`stages.ocr.queue_capacity`).
    pub key: String,
    pub value: Value,
    pub rule: String,
}

/// A key of the file the plan does not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ignored {
    pub key: String,
    pub reason: String,
}

impl RunPlan {
    /// The plan of model stage `kind`.
    pub fn stage(&self, kind: StageKind) -> &StagePlan {
        self.stages
            .get(&kind)
            .expect("a plan has every model stage (resolve fills them)")
    }

    /// The scheduler of a streaming plan (defaults elsewhere).
    pub fn scheduler(&self) -> SchedulerPlan {
        self.scheduler.unwrap_or_default()
    }
}

/// Resolves a parsed strategy file into a plan. `profile` (the command line's `--models`)
/// overrides the file's `models`.
pub fn resolve(
    file: &StrategyFile,
    profile_override: Option<&str>,
) -> Result<RunPlan, ConfigError> {
    let s = &file.spec;
    let bad = |key: &str, message: String| Err(file.invalid(key, message));
    if s.name.trim().is_empty() {
        return bad("name", "must not be empty".into());
    }
    let render = resolve_render(file)?;
    let streaming = s.kind == StrategyKind::StreamingMicrobatch;
    if s.scheduler.is_some() && !streaming {
        return bad(
            "scheduler",
            format!(
                "applies to the streaming-microbatch strategy only, not {}",
                s.kind.name()
            ),
        );
    }
    let sched = s.scheduler.clone().unwrap_or_default();
    if sched.queue_batches == Some(0) {
        return bad("scheduler.queue_batches", "must be at least 1".into());
    }

    let profile_name = profile_override
        .or(s.models.as_deref())
        .unwrap_or(registry::DEFAULT_PROFILE);
    let Some(profile) = registry::profile(profile_name) else {
        let message = format!(
            "unknown model profile `{profile_name}`; available: {}",
            registry::profile_names().join(", ")
        );
        return match profile_override {
            Some(_) => Err(ConfigError::Parse {
                path: file.path.clone(),
                message: format!("--models: {message}"),
            }),
            None => bad("models", message),
        };
    };

    let mut plan = RunPlan {
        name: s.name.clone(),
        kind: s.kind,
        description: s.description.clone(),
        file: file.path.display().to_string(),
        models: profile.name.to_string(),
        render,
        stages: BTreeMap::new(),
        scheduler: streaming.then_some(SchedulerPlan {
            policy: sched.policy,
            deterministic: sched.deterministic,
        }),
        device: DevicePlan::default(),
        derived: Vec::new(),
        ignored: Vec::new(),
    };
    plan.device = resolve_device(file, &mut plan.derived)?;
    let mut upstream_batch: Option<(StageKind, usize)> = None;
    for kind in StageKind::MODELS {
        let raw = s.stages.get(kind).expect("model stages have specs");
        let mut stage = resolve_stage(file, kind, raw, profile, &sched, &mut plan)?;
        // A batch of the previous stage is dispatched only when this queue has room for all of
        // its pages (`pipeline::scheduler`): a queue smaller than that batch would never have
        // the room, and the run would wait forever.
        if let (Some(q), Some((prev, b))) = (stage.queue.as_mut(), upstream_batch)
            && q.queue_capacity < b
        {
            if raw.queue_capacity.is_some() {
                return bad(
                    &format!("stages.{kind}.queue_capacity"),
                    format!(
                        "must hold a whole batch of the stage before it ({prev}.batch_size = {b}), got {}",
                        q.queue_capacity
                    ),
                );
            }
            q.queue_capacity = b;
            plan.derived.push(Derived {
                key: format!("stages.{kind}.queue_capacity"),
                value: Value::from(b),
                rule: format!("at least a batch of the stage before it ({prev}.batch_size)"),
            });
        }
        upstream_batch = Some((kind, stage.batch_size));
        plan.stages.insert(kind, stage);
    }
    Ok(plan)
}

fn resolve_device(
    file: &StrategyFile,
    derived: &mut Vec<Derived>,
) -> Result<DevicePlan, ConfigError> {
    let s = &file.spec;
    let d = s.device.clone().unwrap_or_default();
    let bad = |key: &str, message: String| Err(file.invalid(key, message));
    let workers = d.workers.unwrap_or(1);
    if !(1..=MAX_WORKERS).contains(&workers) {
        return bad(
            "device.workers",
            format!("must be in 1..={MAX_WORKERS}, got {workers}"),
        );
    }
    if let Some(t) = d.threads
        && !(1..=MAX_WORKERS).contains(&t)
    {
        return bad(
            "device.threads",
            format!("must be in 1..={MAX_WORKERS}, got {t}"),
        );
    }
    if workers > 1 && s.kind == StrategyKind::Sequential {
        return bad(
            "device.workers",
            "sequential runs one page at a time on one worker: use concurrent-render, \
             staged-batch or streaming-microbatch for several"
                .into(),
        );
    }
    let threads = match d.threads {
        Some(t) => Some(t),
        None if workers > 1 => {
            let budget = crate::models::device::cpu_threads();
            let t = (budget / workers).max(1);
            derived.push(Derived {
                key: "device.threads".into(),
                value: Value::from(t),
                rule: format!("the process's {budget} threads divided among {workers} workers"),
            });
            Some(t)
        }
        None => None,
    };
    Ok(DevicePlan { workers, threads })
}

fn resolve_render(file: &StrategyFile) -> Result<RenderPlan, ConfigError> {
    let s = &file.spec;
    let r = &s.render;
    let bad = |key: &str, message: String| Err(file.invalid(key, message));
    let dpi = r.dpi.unwrap_or(DEFAULT_DPI);
    if !(dpi > 0.0 && dpi <= MAX_DPI) {
        return bad(
            "render.dpi",
            format!("must be in (0, {MAX_DPI}], got {dpi}"),
        );
    }
    if r.max_long_side_px == Some(0) {
        return bad("render.max_long_side_px", "must be at least 1".into());
    }
    let processes = r.processes.unwrap_or(0);
    if processes > MAX_RENDER_PROCESSES {
        return bad(
            "render.processes",
            format!("at most {MAX_RENDER_PROCESSES}, got {processes}"),
        );
    }
    if matches!(s.kind, StrategyKind::Sequential | StrategyKind::StagedBatch) && processes != 0 {
        return bad(
            "render.processes",
            format!(
                "the {} strategy renders in-process, one page at a time: set it to 0",
                s.kind.name()
            ),
        );
    }
    if s.kind == StrategyKind::ConcurrentRender && processes == 0 {
        return bad(
            "render.processes",
            "concurrent-render renders in worker processes: set at least 1 (2 on two cores)".into(),
        );
    }
    let queue_capacity = match (r.queue_capacity, s.kind) {
        (Some(0), _) => return bad("render.queue_capacity", "must be at least 1".into()),
        (Some(_), StrategyKind::StreamingMicrobatch) => {
            return bad(
                "render.queue_capacity",
                "streaming-microbatch bounds rendered pages with `stages.layout.queue_capacity`: set that instead".into(),
            );
        }
        (q, StrategyKind::ConcurrentRender) => Some(q.unwrap_or(DEFAULT_RENDER_QUEUE)),
        (q, _) => q,
    };
    Ok(RenderPlan {
        dpi,
        max_long_side_px: r.max_long_side_px,
        processes,
        queue_capacity,
    })
}

fn resolve_stage(
    file: &StrategyFile,
    kind: StageKind,
    raw: &StageSpec,
    profile: &registry::Profile,
    sched: &SchedulerParams,
    plan: &mut RunPlan,
) -> Result<StagePlan, ConfigError> {
    let s = &file.spec;
    let key = |k: &str| format!("stages.{kind}.{k}");
    let bad = |k: &str, message: String| Err(file.invalid(&key(k), message));
    let named = raw.model.as_deref().unwrap_or("null");
    let Some(entry) = registry::entry_for(kind, named) else {
        return bad(
            "model",
            format!(
                "unknown model `{named}`; available: {}",
                registry::available_models(kind).join(", ")
            ),
        );
    };
    let table = toml_to_json(&raw.options);
    // The file's options are checked against the model it names, whatever the profile.
    let mut options = resolve_options(file, kind, entry, &table)?;
    let mut model = entry;
    if let Some((_, _, to)) = profile
        .swaps
        .iter()
        .find(|(k, from, _)| *k == kind && *from == entry.id)
    {
        model = registry::entry_for(kind, to).expect("profiles name registry models");
        let accepted = model.option_keys();
        let (kept, dropped): (Map<String, Value>, Map<String, Value>) =
            table.into_iter().partition(|(k, _)| accepted.contains(k));
        for k in dropped.keys() {
            plan.ignored.push(Ignored {
                key: key(k),
                reason: format!(
                    "an option of {}; profile {} runs {} instead",
                    entry.id, profile.name, model.id
                ),
            });
        }
        options = resolve_options(file, kind, model, &kept)?;
        plan.derived.push(Derived {
            key: key("model"),
            value: Value::from(model.id),
            rule: format!("profile {} replaces {}", profile.name, entry.id),
        });
    }

    // Generating models (option `batching`) decode as the strategy schedules: `auto` becomes
    // the strategy's own mode.
    if options.get(generate::BATCHING_KEY) == Some(&Value::from(Batching::Auto.name())) {
        let mode = generate::strategy_batching(s.kind);
        options.insert(generate::BATCHING_KEY.into(), Value::from(mode.name()));
        plan.derived.push(Derived {
            key: key(generate::BATCHING_KEY),
            value: Value::from(mode.name()),
            rule: format!("the {} strategy's batching", s.kind.name()),
        });
    }

    let batch_size = raw.batch_size.unwrap_or(1);
    if batch_size == 0 {
        return bad("batch_size", "must be at least 1".into());
    }
    if matches!(
        s.kind,
        StrategyKind::Sequential | StrategyKind::ConcurrentRender
    ) && batch_size != 1
    {
        return bad(
            "batch_size",
            format!(
                "the {} strategy runs the models one page at a time: set it to 1",
                s.kind.name()
            ),
        );
    }
    let streaming = s.kind == StrategyKind::StreamingMicrobatch;
    for (field, set) in [
        ("queue_capacity", raw.queue_capacity.is_some()),
        ("max_wait_ms", raw.max_wait_ms.is_some()),
    ] {
        if set && !streaming {
            return bad(
                field,
                format!(
                    "applies to the streaming-microbatch strategy only, not {}",
                    s.kind.name()
                ),
            );
        }
    }
    let queue = if streaming {
        let queue_capacity = match raw.queue_capacity {
            Some(q) if q < batch_size => {
                return bad(
                    "queue_capacity",
                    format!(
                        "must hold at least one batch (batch_size = {batch_size}), got {q}; \
                         or leave it out, and set `scheduler.queue_batches`, so it follows \
                         batch_size"
                    ),
                );
            }
            Some(q) => q,
            None => {
                let (q, rule) = match sched.queue_batches {
                    Some(n) => (
                        n * batch_size,
                        format!("scheduler.queue_batches ({n}) × batch_size ({batch_size})"),
                    ),
                    None => (
                        (2 * batch_size).max(DEFAULT_STAGE_QUEUE),
                        format!(
                            "the larger of 2 × batch_size ({batch_size}) and {DEFAULT_STAGE_QUEUE}"
                        ),
                    ),
                };
                plan.derived.push(Derived {
                    key: key("queue_capacity"),
                    value: Value::from(q),
                    rule,
                });
                q
            }
        };
        let max_wait_ms = raw.max_wait_ms.unwrap_or(DEFAULT_MAX_WAIT_MS);
        if !(max_wait_ms.is_finite() && max_wait_ms >= 0.0) {
            return bad(
                "max_wait_ms",
                format!("must be a finite number ≥ 0, got {max_wait_ms}"),
            );
        }
        Some(QueuePlan {
            queue_capacity,
            max_wait_ms,
        })
    } else {
        None
    };
    Ok(StagePlan {
        model: model.id.to_string(),
        batch_size,
        queue,
        options,
    })
}

/// A stage's model keys as the model's options; errors name the key and, for a key the model
/// does not take, the models that do.
fn resolve_options(
    file: &StrategyFile,
    kind: StageKind,
    entry: &ModelEntry,
    table: &Map<String, Value>,
) -> Result<Map<String, Value>, ConfigError> {
    (entry.resolve)(table).map_err(|e| {
        let message = if e.message.is_empty() {
            let mut m = format!("not an option of `{}`", entry.id);
            let others = registry::models_with_option(&e.key, entry.id);
            if !others.is_empty() {
                m.push_str(&format!(" (it is one of {})", others.join(", ")));
            }
            let keys = entry.option_keys();
            if keys.is_empty() {
                m.push_str(&format!("; `{}` takes no options", entry.id));
            } else {
                m.push_str(&format!("; `{}` takes: {}", entry.id, keys.join(", ")));
            }
            m
        } else {
            e.message
        };
        file.invalid(&format!("stages.{kind}.{}", e.key), message)
    })
}

/// A stage table's model keys as JSON (the registry's options are JSON objects).
fn toml_to_json(table: &toml::Table) -> Map<String, Value> {
    table
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::to_value(v).expect("TOML values are JSON values"),
            )
        })
        .collect()
}

/// Reads and resolves a strategy file; `profile` (`--models`) overrides the file's.
pub fn load(path: &std::path::Path, profile: Option<&str>) -> Result<RunPlan, ConfigError> {
    resolve(&crate::config::load(path)?, profile)
}

/// Resolves a strategy compiled into pipebench (`config::SHIPPED_STRATEGIES`); reports name
/// its file `(built-in) <path>`.
pub fn builtin(path: &str, text: &str, profile: Option<&str>) -> Result<RunPlan, ConfigError> {
    let mut plan = resolve(
        &crate::config::parse(text, std::path::Path::new(path))?,
        profile,
    )?;
    plan.file = format!("(built-in) {path}");
    Ok(plan)
}

/// Parses and resolves strategy text with the file's own profile: for tests and the sweep.
pub fn parse(text: &str, path: &std::path::Path) -> Result<RunPlan, ConfigError> {
    resolve(&crate::config::parse(text, path)?, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_STRATEGY;
    use std::path::Path;

    fn p() -> &'static Path {
        Path::new("strategies/test.toml")
    }

    fn key_of(text: &str) -> (String, usize) {
        match parse(text, p()) {
            Err(ConfigError::Invalid { key, line, .. }) => (key, line),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn default_strategy_is_valid() {
        let s = parse(DEFAULT_STRATEGY, p()).expect("valid");
        assert_eq!(s.kind, StrategyKind::Sequential);
        assert_eq!(s.render.dpi, 150.0);
        assert_eq!(s.stage(StageKind::Ocr).model, "ppocrv5");
        assert_eq!(
            s.stage(StageKind::Ocr).options.get("rec_batch_size"),
            Some(&Value::from(6))
        );
        assert!(s.stage(StageKind::Ocr).queue.is_none());
    }

    #[test]
    fn model_workers_are_checked_and_share_the_threads() {
        let one = parse(DEFAULT_STRATEGY, p()).expect("valid");
        assert_eq!(one.device, DevicePlan::default());
        let two =
            "name = \"s\"\nkind = \"streaming-microbatch\"\n[device]\nworkers = 2\nthreads = 1\n";
        let plan = parse(two, p()).expect("valid");
        assert_eq!(
            plan.device,
            DevicePlan {
                workers: 2,
                threads: Some(1)
            }
        );
        // Without threads, the process's threads are divided among the workers, recorded.
        let derived = "name = \"s\"\nkind = \"staged-batch\"\n[device]\nworkers = 2\n";
        let plan = parse(derived, p()).expect("valid");
        let expected = (crate::models::device::cpu_threads() / 2).max(1);
        assert_eq!(plan.device.threads, Some(expected));
        assert!(plan.derived.iter().any(|d| d.key == "device.threads"));
        let sequential = "name = \"s\"\nkind = \"sequential\"\n[device]\nworkers = 2\n";
        assert_eq!(key_of(sequential), ("device.workers".to_string(), 4));
        let zero = "name = \"s\"\nkind = \"staged-batch\"\n[device]\nthreads = 0\n";
        assert_eq!(key_of(zero), ("device.threads".to_string(), 4));
        let typo = "name = \"s\"\nkind = \"staged-batch\"\n[device]\nworker = 2\n";
        assert!(parse(typo, p()).is_err());
    }

    #[test]
    fn concurrent_render_needs_render_processes_and_single_pages() {
        let no_procs = "name = \"c\"\nkind = \"concurrent-render\"\n";
        assert_eq!(key_of(no_procs).0, "render.processes");
        let batched = "name = \"c\"\nkind = \"concurrent-render\"\n[render]\nprocesses = 2\n[stages.layout]\nmodel = \"null\"\nbatch_size = 4\n";
        assert_eq!(key_of(batched), ("stages.layout.batch_size".to_string(), 7));
        let ok = "name = \"c\"\nkind = \"concurrent-render\"\n[render]\nprocesses = 2\n";
        assert_eq!(
            parse(ok, p()).expect("valid").render.queue_capacity,
            Some(DEFAULT_RENDER_QUEUE)
        );
    }

    #[test]
    fn streaming_parameters_are_checked_and_belong_to_streaming_only() {
        let ok = "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\npolicy = \"oldest-first\"\n[stages.ocr]\nbatch_size = 3\nmax_wait_ms = 5\n";
        let s = parse(ok, p()).expect("valid");
        assert_eq!(s.scheduler().policy, SchedulingPolicy::OldestFirst);
        let q = |k| s.stage(k).queue.expect("streaming queue");
        assert_eq!(q(StageKind::Ocr).queue_capacity, 6);
        assert_eq!(q(StageKind::Layout).queue_capacity, DEFAULT_STAGE_QUEUE);
        assert_eq!(q(StageKind::Ocr).max_wait_ns(), 5_000_000);
        assert_eq!(
            q(StageKind::Table).max_wait_ns(),
            (DEFAULT_MAX_WAIT_MS * 1e6) as u64
        );
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
    fn queue_capacities_follow_batch_sizes_unless_set_and_are_recorded() {
        let text = "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\nqueue_batches = 1\n[stages.layout]\nbatch_size = 4\n[stages.ocr]\nbatch_size = 2\nqueue_capacity = 5\n";
        let s = parse(text, p()).expect("valid");
        let q = |k| s.stage(k).queue.expect("queue").queue_capacity;
        assert_eq!(q(StageKind::Layout), 4, "one batch of 4");
        assert_eq!(q(StageKind::Ocr), 5, "set on purpose");
        // One batch of 1 would not hold a batch of 2 leaving OCR.
        assert_eq!(q(StageKind::Table), 2, "a whole OCR batch");
        let derived: Vec<&str> = s.derived.iter().map(|d| d.key.as_str()).collect();
        assert!(
            derived.contains(&"stages.layout.queue_capacity"),
            "{derived:?}"
        );
        assert!(
            !derived.contains(&"stages.ocr.queue_capacity"),
            "{derived:?}"
        );
        let rule = &s.derived[0].rule;
        assert!(
            rule.contains("queue_batches (1) × batch_size (4)"),
            "{rule}"
        );
        assert_eq!(
            key_of(
                "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\nqueue_batches = 0\n"
            ),
            ("scheduler.queue_batches".to_string(), 4)
        );
    }

    #[test]
    fn model_options_are_typed_and_misplaced_keys_name_the_models_that_take_them() {
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.table]\nmodel = \"slanet-plus\"\nmasks = true\n";
        let err = parse(text, p()).expect_err("masks on slanet").to_string();
        assert!(
            err.contains(":5:")
                && err.contains("stages.table.masks")
                && err.contains("not an option of `slanet-plus`")
                && err.contains("detr-layout")
                && err.contains("max_decoder_steps"),
            "{err}"
        );
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.ocr]\nmodel = \"ppocrv5\"\nscope = \"everywhere\"\n";
        let (key, line) = key_of(text);
        assert_eq!((key.as_str(), line), ("stages.ocr.scope", 5));
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.layout]\nmodel = \"picodet-layout-cdla\"\nsleep_ms = 3\n";
        let err = parse(text, p())
            .expect_err("sleep on a real model")
            .to_string();
        assert!(err.contains("(it is one of null)"), "{err}");
        let text = "name = \"x\"\nkind = \"sequential\"\n[stages.layout]\nmodel = \"null\"\nsleep_ms = -1\n";
        assert_eq!(key_of(text).0, "stages.layout.sleep_ms");
    }

    #[test]
    fn a_queue_holds_a_whole_batch_of_the_stage_before_it() {
        // OCR takes 4 pages per call; the table queue (batch 1, one batch per queue) must
        // still take all 4 when they leave OCR, or the run would wait forever.
        let text = "name = \"s\"\nkind = \"streaming-microbatch\"\n[scheduler]\nqueue_batches = 1\n[stages.ocr]\nbatch_size = 4\n[stages.table]\nbatch_size = 1\n";
        let plan = parse(text, p()).expect("valid");
        let table = plan.stage(StageKind::Table).queue.expect("queue");
        assert_eq!(table.queue_capacity, 4);
        assert!(
            plan.derived
                .iter()
                .any(|d| d.key == "stages.table.queue_capacity" && d.value == 4)
        );
        let text = "name = \"s\"\nkind = \"streaming-microbatch\"\n[stages.ocr]\nbatch_size = 4\n[stages.table]\nqueue_capacity = 2\n";
        let err = parse(text, p()).expect_err("too small").to_string();
        assert!(err.contains("stages.table.queue_capacity"), "{err}");
        assert!(err.contains("ocr.batch_size = 4"), "{err}");
    }

    #[test]
    fn the_seed_profile_swaps_models_and_sets_aside_their_options() {
        let file = crate::config::parse(DEFAULT_STRATEGY, p()).expect("parses");
        let plan = resolve(&file, Some("seed")).expect("valid");
        assert_eq!(plan.models, "seed");
        assert_eq!(plan.stage(StageKind::Layout).model, "detr-layout");
        assert_eq!(plan.stage(StageKind::Table).model, "tatr-structure");
        assert_eq!(plan.stage(StageKind::Ocr).model, "got-ocr2");
        assert_eq!(
            plan.ignored
                .iter()
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>(),
            vec![
                "stages.ocr.rec_batch_size",
                "stages.table.max_decoder_steps"
            ]
        );
        assert!(plan.derived.iter().any(|d| d.key == "stages.layout.model"));
        // GOT decodes as the strategy schedules: one sequence at a time in sequential.
        let ocr = plan.stage(StageKind::Ocr);
        assert_eq!(ocr.options["batching"], "single");
        assert_eq!(ocr.options["scope"], "region");
        assert!(plan.derived.iter().any(|d| d.key == "stages.ocr.batching"));
        for (kind, mode) in [
            ("staged-batch", "static"),
            ("streaming-microbatch", "continuous"),
        ] {
            let text = format!(
                "name = \"x\"\nkind = \"{kind}\"\nmodels = \"seed\"\n[stages.ocr]\nmodel = \"ppocrv5\"\n"
            );
            let plan = parse(&text, p()).expect("valid");
            assert_eq!(
                plan.stage(StageKind::Ocr).options["batching"],
                mode,
                "{kind}"
            );
        }
        // A file's own choice stands.
        let text = "name = \"x\"\nkind = \"staged-batch\"\n[stages.ocr]\nmodel = \"got-ocr2\"\nbatching = \"continuous\"\n";
        let plan = parse(text, p()).expect("valid");
        assert_eq!(plan.stage(StageKind::Ocr).options["batching"], "continuous");
        let err = resolve(&file, Some("quantum")).expect_err("unknown profile");
        assert!(err.to_string().contains("embedded, seed"), "{err}");
        let text = "name = \"x\"\nkind = \"sequential\"\nmodels = \"quantum\"\n";
        assert_eq!(key_of(text), ("models".to_string(), 3));
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let text = "name = \"x\"\nkind = \"sequential\"\n\n[stages.ocr]\nmodel = \"null\"\nbatch_size = 0\n";
        assert_eq!(key_of(text), ("stages.ocr.batch_size".to_string(), 6));
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
                let file = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                for profile in registry::PROFILES {
                    resolve(&file, Some(profile.name)).unwrap_or_else(|e| panic!("{e}"));
                }
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
