//! `pipebench tui`: runs the strategies on the main thread while `crate::tui` draws.

use std::sync::Arc;

use crate::cli;
use crate::corpus::PageBudget;
use crate::pipeline::PageRecord;
use crate::session::{ReportOptions, RunObserver, Session};
use crate::vocab::StageKind;
use crate::{ExitStatus, config, console, metrics, pipeline, plan, report, tui};

pub(crate) fn tui_command(args: cli::TuiArgs) -> anyhow::Result<ExitStatus> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "pipebench tui needs a terminal (stdout is not one); use `pipebench run` in scripts and CI"
        );
    }
    let profile = args.common.models.as_deref();
    let mut plans = Vec::new();
    if args.strategy.is_empty() {
        for (file, text) in config::SHIPPED_STRATEGIES {
            plans.push(plan::builtin(file, text, profile)?);
        }
    } else {
        for p in &args.strategy {
            plans.push(plan::load(p, profile)?);
        }
    }
    let budget = if args.all_pages {
        PageBudget::All
    } else {
        PageBudget::Spread(args.max_pages)
    };
    let session = Session::open(&args.corpus, &(&args.common).into(), budget)?;
    let mut paths: Vec<std::path::PathBuf> = plans
        .iter()
        .map(|plan| session.default_report_path(args.out_dir.as_deref(), &plan.name))
        .collect();
    // The same strategy twice (or two files with one name) must not share a report.
    for i in 1..paths.len() {
        if paths[..i].contains(&paths[i]) {
            let stem = paths[i]
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            paths[i].set_file_name(format!("{stem}-{}.json", i + 1));
        }
    }
    for p in &paths {
        if p.exists() && !args.force {
            return Err(report::WriteError::Exists(p.clone()).into());
        }
    }
    let options = ReportOptions {
        spans: report::SpansMode::Inline,
        sample_ms: args.sample_ms,
        save_outputs: None,
        check_outputs: None,
        min_agreement: None,
        force: args.force,
    };
    let budget = if args.all_pages || session.pages.len() < args.max_pages {
        format!("{} pages per strategy", session.pages.len())
    } else {
        format!(
            "{} pages per strategy, spread over the documents (--max-pages; about 3 min for four on 2 cores; --all-pages for all)",
            session.pages.len()
        )
    };
    let names = plans.iter().map(|p| p.name.clone()).collect();
    // Raw mode turns Ctrl-C into a key the TUI handles; should the TUI die and give the
    // terminal back, Ctrl-C still stops the run like `run`'s.
    pipeline::install_interrupt_handler();
    let board = metrics::live::LiveBoard::new();
    let publisher = board.start_publisher();
    console::hold();
    let ui = tui::Ui::start(
        tui::state::App::new(&session.corpus.name, names, budget),
        board.clone(),
        Box::new(pipeline::request_interrupt),
    )
    .inspect_err(|_| {
        console::release();
    })?;
    let ui = Arc::new(ui);
    let observer = Arc::new(LiveObserver {
        board: board.clone(),
        ui: ui.clone(),
    });
    let mut reference: Option<String> = None;
    let mut all_ok = true;
    let mut finished = Vec::new();
    for (i, (plan, path)) in plans.iter().zip(&paths).enumerate() {
        if pipeline::interrupted() {
            break;
        }
        ui.send(tui::state::UiMsg::Started {
            index: i,
            name: plan.name.clone(),
        });
        match session.run_strategy(plan, path, &options, observer.clone()) {
            Ok(r) => {
                let digest = r.output.digest.clone();
                let is_reference =
                    plan.kind == config::StrategyKind::Sequential && reference.is_none();
                if is_reference && !r.interrupted {
                    reference = Some(digest.clone());
                }
                let row = tui::state::ComparisonRow {
                    strategy: plan.name.clone(),
                    ok: r.ok,
                    interrupted: r.interrupted,
                    wall_s: r.summary.wall_ms / 1e3,
                    pages_per_s: r.summary.pages_per_s,
                    p99_page_s: r.summary.page_latency.p99_ms / 1e3,
                    peak_rss_bytes: r
                        .memory
                        .peak_rss_bytes
                        .max(r.memory.peak_rss_with_children_bytes),
                    efficiency: r.summary.bottleneck.efficiency,
                    digest: digest[..8].to_string(),
                    digest_matches: match &reference {
                        Some(d) if !is_reference && !r.interrupted => Some(*d == digest),
                        _ => None,
                    },
                    report: path.display().to_string(),
                };
                all_ok &= r.ok && row.digest_matches != Some(false);
                // The run's last state (published when it ended), for looking back at it.
                ui.send(tui::state::UiMsg::Finished(row.clone(), board.latest()));
                finished.push(row);
            }
            Err(e) => {
                all_ok = false;
                ui.send(tui::state::UiMsg::Failed {
                    name: plan.name.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    drop(observer);
    drop(publisher);
    let ui = Arc::into_inner(ui).expect("the observer, the only other owner, is gone");
    let closed = ui.finish();
    // Whatever happened to the TUI, the messages it held back are printed.
    for line in console::release() {
        eprintln!("{line}");
    }
    let app = closed?;
    for f in &app.failures {
        eprintln!("error: {f}");
    }
    print!("{}", comparison_text(&session.corpus.name, &finished));
    // Stopped before every strategy ran: the comparison is incomplete, say so in the code.
    Ok(
        if all_ok && app.failures.is_empty() && finished.len() == plans.len() {
            ExitStatus::Ok
        } else {
            ExitStatus::Errors
        },
    )
}

/// The comparison table printed after the TUI closes (the screen it was on is gone).
fn comparison_text(corpus: &str, rows: &[tui::state::ComparisonRow]) -> String {
    let mut s = format!(
        "{corpus}:\n  {:<24} {:>7} {:>8} {:>7} {:>9} {:>5}  output\n",
        "strategy", "wall s", "pages/s", "p99 s", "peak MiB", "eff"
    );
    for r in rows {
        let output = match r.digest_matches {
            Some(true) => format!("{} = seq", r.digest),
            Some(false) => format!("{} DIFFERS", r.digest),
            None => r.digest.clone(),
        };
        s.push_str(&format!(
            "  {:<24} {:>7.1} {:>8.3} {:>7.1} {:>9.0} {:>5.2}  {output}{}\n",
            r.strategy,
            r.wall_s,
            r.pages_per_s,
            r.p99_page_s,
            r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
            r.efficiency,
            if r.interrupted { " (stopped)" } else { "" },
        ));
    }
    for r in rows {
        s.push_str(&format!("report: {}\n", r.report));
    }
    s
}

/// Feeds the TUI: pages to the live board, phases to the screen.
struct LiveObserver {
    board: Arc<metrics::live::LiveBoard>,
    ui: Arc<tui::Ui>,
}

impl RunObserver for LiveObserver {
    fn stage_done(&self, _kind: StageKind, _pages: usize) {}

    fn page_done(&self, r: &PageRecord) {
        self.board.on_page(
            r.ok,
            r.failed_stage != Some(StageKind::Render),
            r.done_ns.saturating_sub(r.admitted_ns),
        );
    }

    fn phase(&self, what: &str) {
        self.ui.send(tui::state::UiMsg::Phase(what.to_string()));
    }

    fn live(&self) -> Option<Arc<metrics::live::LiveBoard>> {
        Some(self.board.clone())
    }
}
