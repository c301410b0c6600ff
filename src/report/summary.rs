//! The terminal summary of a report.

use std::path::Path;

use super::agreement;
use super::schema::{Report, StageReport};

/// Output differences printed in the terminal summary (the report keeps more).
const SUMMARY_DIFFERENCES: usize = 10;

/// A terminal summary in the spirit of hyperfine's.
pub fn summary_text(r: &Report, path: &Path) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "{} on {} ({} documents, {} pages) — {} · {} · {} build\n",
            r.strategy.name,
            r.corpus.name,
            r.corpus.documents_total,
            r.corpus.pages_selected,
            r.environment.device.spec,
            super::environment::threads_label(&r.environment),
            r.environment.build_profile
        ),
    );
    let mut line = |t: String| {
        out.push_str(&t);
        out.push('\n');
    };
    line(format!(
        "  Wall time:      {:>10.3} s    {:.2} pages/s   (first page after {:.1} ms; {:.2} pages/s after {} warm-up pages; models loaded in {:.0} ms before)",
        s.wall_ms / 1e3,
        s.pages_per_s,
        s.time_to_first_page_ms,
        s.steady_pages_per_s,
        s.warmup_pages,
        s.model_load_ms
    ));
    let l = &s.page_latency;
    line(format!(
        "  Page latency:   p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    ));
    line(format!(
        "  {:<8} {:>7} {:>9} {:>11} {:>11} {:>12} {:>11} {:>7}",
        "stage", "items", "batches", "p50 ms", "p99 ms", "wait p50 ms", "busy s", "util"
    ));
    for st in &r.stages {
        line(format!(
            "  {:<8} {:>7} {:>9} {:>11.3} {:>11.3} {:>12.1} {:>11.3} {:>6.1}%",
            st.stage.name(),
            st.items,
            st.batches,
            st.service_per_batch.p50_ms,
            st.service_per_batch.p99_ms,
            st.queue_wait.p50_ms,
            st.busy_ms / 1e3,
            st.utilization * 100.0
        ));
    }
    for text in r.stages.iter().filter_map(worker_split_text) {
        line(text);
    }
    let m = &r.memory;
    let workers = if m.peak_rss_with_children_bytes
        > m.series.iter().map(|x| x.rss_bytes).max().unwrap_or(0)
    {
        format!(
            ", sampled peak with render workers {}",
            human_bytes(m.peak_rss_with_children_bytes)
        )
    } else {
        String::new()
    };
    line(format!(
        "  Memory:         peak RSS {}{workers}, min system available {}; at most {} pages in flight",
        human_bytes(m.peak_rss_bytes),
        human_bytes(m.min_system_available_bytes),
        s.pages_in_flight_max
    ));
    line(format!(
        "  Overhead:       {:.0} ns per span ({} spans, {} dropped)",
        s.instrumentation_overhead_ns, s.spans_recorded, s.spans_dropped
    ));
    let b = &r.summary.bottleneck;
    if !b.resources.is_empty() {
        let device = b.resources.iter().find(|x| x.resource == "device");
        line(format!(
            "  Bottleneck:     {} (ideal bound {:.1} s, efficiency {:.2}){}",
            b.bound_resource,
            b.bound_ms / 1e3,
            b.efficiency,
            device.map_or_else(String::new, |d| format!(
                "; device idle {:.1} s between calls (longest {:.0} ms)",
                d.idle_gaps_ms / 1e3,
                d.max_idle_gap_ms
            ))
        ));
    }
    line(format!("  Output digest:  {}", &r.output.digest[..16]));
    if let Some(c) = &r.output.check {
        if c.pages_differing == 0 {
            line(format!(
                "  Output check:   identical to {} ({} pages compared{})",
                c.reference,
                c.pages_compared,
                if c.pages_missing > 0 {
                    format!(", {} not in the reference", c.pages_missing)
                } else {
                    String::new()
                }
            ));
        } else {
            line(format!(
                "  Output check:   DIFFERENT from {} on {} of {} pages ({} differences):",
                c.reference, c.pages_differing, c.pages_compared, c.differences_total
            ));
            for d in c.differences.iter().take(SUMMARY_DIFFERENCES) {
                let at = d
                    .region
                    .map_or_else(String::new, |i| format!(" region {i}"));
                line(format!(
                    "    {}{at} {}: {} → {}",
                    d.page, d.field, d.reference, d.actual
                ));
            }
            if c.differences_total as usize > SUMMARY_DIFFERENCES {
                line("    … (the report's `output.check` lists more)".into());
            }
        }
        if let Some(a) = &c.agreement {
            let gate = c.min_agreement_pct.map_or(String::new(), |pct| {
                let below = agreement::below(a, pct);
                if below.is_empty() {
                    format!(" — within --min-agreement {pct} %")
                } else {
                    format!(" — BELOW --min-agreement {pct} %: {}", below.join(", "))
                }
            });
            line(format!(
                "  Agreement:      {}{gate}",
                agreement::headline(a)
            ));
            if !a.worst.is_empty() {
                line("  Worst differences:".into());
                for d in &a.worst {
                    line(format!("    {}", agreement::describe_difference(d)));
                }
            }
        }
    }
    let c = &r.output.content;
    if !c.regions_by_class.is_empty() || c.text_lines > 0 {
        let mut classes: Vec<(&String, &u64)> = c.regions_by_class.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = classes
            .iter()
            .take(4)
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        line(format!(
            "  Outputs:        {} regions ({}{}), {} text lines, {} tables ({} decoder steps, max {})",
            c.regions_by_class.values().sum::<u64>(),
            top.join(", "),
            if classes.len() > 4 { ", …" } else { "" },
            c.text_lines,
            c.tables,
            c.table_decoder_steps,
            c.table_decoder_steps_max
        ));
    }
    if let Some(c) = &r.quality.ocr_cer {
        line(format!(
            "  OCR CER:        {:.2} % over {} pages with a text layer ({} characters; {} pages without one not measured)",
            c.cer * 100.0,
            c.pages_measured,
            c.reference_chars,
            c.pages_without_text_layer
        ));
    }
    for w in &r.warnings {
        line(format!("  warning: {w}"));
    }
    if r.errors.is_empty() {
        line("  Errors:         none".into());
    } else {
        line(format!(
            "  Errors:         {} (listed in the report)",
            r.errors.len()
        ));
    }
    line(format!("  Report:         {}", path.display()));
    out
}

/// For a stage whose work ran in worker processes (render with `render.processes > 0`): its
/// time per page inside the workers vs the round trip to them. None for the other stages.
fn worker_split_text(st: &StageReport) -> Option<String> {
    let (worker_ms, transfer_ms) = (st.worker_ms?, st.transfer_ms?);
    let pages = (st.items + st.items_failed).max(1) as f64;
    Some(format!(
        "  {:<8} in worker processes: {:.2} ms/page rendering, {:.2} ms/page round trip ({:.0} % of busy)",
        st.stage.name(),
        worker_ms / pages,
        transfer_ms / pages,
        100.0 * transfer_ms / st.busy_ms.max(f64::MIN_POSITIVE)
    ))
}

pub(crate) fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}
