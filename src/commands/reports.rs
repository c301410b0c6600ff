//! `pipebench compare` and `export`: commands that read reports.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli;
use crate::console::say;
use crate::{ExitStatus, report};

/// Reads a report written by this version of pipebench (or an older one whose format this one
/// still reads, see `MIN_READABLE_SCHEMA`).
pub(crate) fn load_report(p: &Path) -> anyhow::Result<report::schema::Report> {
    let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a JSON report", p.display()))?;
    let version = v["schema_version"].as_u64().unwrap_or(0);
    let (min, max) = (
        report::schema::MIN_READABLE_SCHEMA,
        report::schema::SCHEMA_VERSION,
    );
    if !(u64::from(min)..=u64::from(max)).contains(&version) {
        anyhow::bail!(
            "{}: report schema v{version}; this pipebench reads v{min} to v{max} (re-run it with \
             this version)",
            p.display(),
        );
    }
    serde_json::from_value(v).with_context(|| format!("{}: not a pipebench report", p.display()))
}

pub(crate) fn export_command(args: cli::ExportArgs) -> anyhow::Result<ExitStatus> {
    let r = load_report(&args.report)?;
    if let Some(out) = &args.trace {
        let spans = report::export::spans(&r, &args.report).map_err(|e| anyhow::anyhow!(e))?;
        let trace = report::export::chrome_trace(&r, &spans);
        std::fs::write(out, serde_json::to_vec(&trace)?)
            .with_context(|| format!("writing {}", out.display()))?;
        say(&format!(
            "trace of {} spans written to {} (open it in ui.perfetto.dev or chrome://tracing)",
            spans.len(),
            out.display()
        ));
    }
    if let Some(out) = &args.markdown {
        let md = report::export::markdown(&r);
        if out.as_os_str() == "-" {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(md.as_bytes())?;
        } else {
            std::fs::write(out, md).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(ExitStatus::Ok)
}

pub(crate) fn compare_command(args: cli::CompareArgs) -> anyhow::Result<ExitStatus> {
    let reports: Vec<_> = args
        .reports
        .iter()
        .map(|p| load_report(p))
        .collect::<anyhow::Result<_>>()?;
    if !args.outputs.is_empty() && args.outputs.len() != args.reports.len() {
        anyhow::bail!(
            "--outputs: give one folder per report, in the reports' order ({} reports, {} \
             folders)",
            args.reports.len(),
            args.outputs.len()
        );
    }
    let name = |i: usize| args.reports[i].display().to_string();
    let mut pairs: Vec<_> = (1..reports.len())
        .map(|i| report::compare::compare(&reports[0], &name(0), &reports[i], &name(i)))
        .collect();
    let refused: Vec<String> = pairs
        .iter()
        .flat_map(|p| {
            p.mismatches
                .iter()
                .map(move |m| format!("{}: {m}", p.other))
        })
        .collect();
    if !refused.is_empty() && !args.force {
        anyhow::bail!(
            "these reports are not comparable with {}:\n  {}\n  (--force compares them anyway)",
            name(0),
            refused.join("\n  ")
        );
    }
    let saved = !args.outputs.is_empty() || reports.iter().any(|r| r.output.saved_to.is_some());
    if saved || args.min_agreement.is_some() {
        let folders: Vec<Result<PathBuf, String>> = (0..reports.len())
            .map(|i| outputs_folder(&reports[i], &args.reports[i], args.outputs.get(i)))
            .collect();
        for (pair, i) in pairs.iter_mut().zip(1..) {
            pair.outputs = Some(match (&folders[0], &folders[i]) {
                (Ok(base), Ok(other)) => compare_outputs(&reports[0], base, &reports[i], other),
                (Err(why), _) | (_, Err(why)) => Err(why.clone()),
            });
        }
    }
    print!(
        "{}",
        report::compare::render(
            &pairs,
            args.fail_on_regression,
            args.min_agreement,
            args.markdown
        )
    );
    let mut status = ExitStatus::Ok;
    if let Some(pct) = args.fail_on_regression {
        let regressions: Vec<String> = pairs
            .iter()
            .flat_map(|p| {
                report::compare::gating(p)
                    .filter(move |m| m.regressed(pct))
                    .map(move |m| format!("{}: {} {:+.1} %", p.other, m.name, m.change() * 100.0))
            })
            .collect();
        if !regressions.is_empty() {
            eprintln!(
                "regression beyond {pct} % (outside noise): {}",
                regressions.join("; ")
            );
            status = ExitStatus::Regression;
        }
    }
    if let Some(pct) = args.min_agreement {
        let mut below = Vec::new();
        for p in &pairs {
            match &p.outputs {
                Some(Ok(c)) => {
                    let figures = report::agreement::below(&c.agreement, pct);
                    if !figures.is_empty() {
                        below.push(format!("{}: {}", p.other, figures.join(", ")));
                    }
                }
                Some(Err(why)) => anyhow::bail!(
                    "--min-agreement: the outputs of {} and {} cannot be compared: {why}",
                    p.base,
                    p.other
                ),
                None => {}
            }
        }
        if !below.is_empty() {
            eprintln!(
                "outputs agree with the baseline's below {pct} %: {}",
                below.join("; ")
            );
            status = ExitStatus::Regression;
        }
    }
    Ok(status)
}

/// Where a report's saved outputs are: the folder given with `--outputs`, else the one its run
/// wrote (`output.saved_to`), else a folder of that name beside the report (a report and its
/// outputs copied together to another machine). `Err` says why there are none.
fn outputs_folder(
    r: &report::schema::Report,
    report_path: &Path,
    given: Option<&PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return Ok(dir.clone());
    }
    let Some(saved) = &r.output.saved_to else {
        return Err(format!(
            "{}'s run did not save its outputs (run it with --save-outputs DIR, or pass \
             --outputs DIR once per report)",
            report_path.display()
        ));
    };
    let recorded = PathBuf::from(saved);
    if recorded.is_dir() {
        return Ok(recorded);
    }
    let beside = recorded
        .file_name()
        .map(|n| report_path.parent().unwrap_or(Path::new("")).join(n));
    match beside {
        Some(b) if b.is_dir() => Ok(b),
        _ => Err(format!(
            "{}'s outputs were saved to {saved}, which is not a folder here, nor beside the \
             report (pass --outputs DIR once per report)",
            report_path.display()
        )),
    }
}

/// The pages both reports processed, compared in the two folders with tolerance; pages only
/// one report processed count as missing.
fn compare_outputs(
    base: &report::schema::Report,
    base_dir: &Path,
    other: &report::schema::Report,
    other_dir: &Path,
) -> Result<report::output_check::SavedComparison, String> {
    let in_other: std::collections::HashSet<&str> =
        other.pages.iter().map(|p| p.id.as_str()).collect();
    let (both, only): (Vec<_>, Vec<_>) = base
        .pages
        .iter()
        .partition(|p| in_other.contains(p.id.as_str()));
    let mut c = report::output_check::compare_saved(base_dir, other_dir, both)
        .map_err(|e| e.to_string())?;
    c.pages_missing += only.len() as u64;
    Ok(c)
}
