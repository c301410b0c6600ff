//! `pipebench compare` and `export`: commands that read reports.

use std::path::Path;

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
    let name = |i: usize| args.reports[i].display().to_string();
    let pairs: Vec<_> = (1..reports.len())
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
    print!(
        "{}",
        report::compare::render(&pairs, args.fail_on_regression, args.markdown)
    );
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
            return Ok(ExitStatus::Regression);
        }
    }
    Ok(ExitStatus::Ok)
}
