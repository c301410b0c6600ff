//! `pipebench run`: one strategy, a progress bar, a report and its summary.

use crate::cli::RunArgs;
use crate::corpus::PageBudget;
use crate::session::{ReportOptions, Session, progress_bar};
use crate::{ExitStatus, config, pipeline, plan, report};

pub(crate) fn run_command(args: RunArgs) -> anyhow::Result<ExitStatus> {
    let profile = args.common.models.as_deref();
    let plan = match &args.strategy {
        Some(p) => plan::load(p, profile)?,
        None => plan::builtin(
            "strategies/sequential.toml",
            config::DEFAULT_STRATEGY,
            profile,
        )?,
    };
    let budget = match args.max_pages {
        Some(n) if args.spread => PageBudget::Spread(n),
        max => PageBudget::first(max),
    };
    let session = Session::open(&args.corpus, &(&args.common).into(), budget)?;
    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| session.default_report_path(None, &plan.name));
    // Refuse early, before any work, if the report could not be written.
    if out_path.exists() && !args.force {
        return Err(report::WriteError::Exists(out_path).into());
    }
    if let Some(dir) = &args.check_outputs
        && !dir.is_dir()
    {
        return Err(report::output_check::CheckError::NotAFolder(dir.display().to_string()).into());
    }
    let options = ReportOptions {
        spans: args.spans.into(),
        sample_ms: args.sample_ms,
        save_outputs: args.save_outputs.clone(),
        check_outputs: args.check_outputs.clone(),
        min_agreement: args.min_agreement,
        force: args.force,
    };
    // Progress counts page-stages (render + each model stage), so strategies whose pages only
    // complete at the end (staged-batch) still advance and give an ETA.
    let progress = progress_bar(session.pages.len() as u64, args.quiet);
    pipeline::install_interrupt_handler();
    let report = session.run_strategy(&plan, &out_path, &options, progress.clone())?;
    progress.finish();
    if !args.quiet {
        print!("{}", report::summary_text(&report, &out_path));
    }
    if let Some((pct, c)) = args.min_agreement.zip(report.output.check.as_ref())
        && let Some(a) = c.agreement.as_ref()
        && report::output_check::fails(c)
    {
        eprintln!(
            "error: outputs agree with {} below --min-agreement {pct} %: {}",
            c.reference,
            report::agreement::below(a, pct).join(", ")
        );
    }
    Ok(if report.ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Errors
    })
}
