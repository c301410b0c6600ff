//! Exports of a report: a Chrome trace / Perfetto timeline of its spans, and a Markdown
//! summary.
//!
//! The trace has one track per worker (render threads and processes, the device thread), so
//! batches of different workers never collide, with each call as a complete event (its pages,
//! queue waits, retry flag in `args`), plus counter tracks for memory, each stage's queue depth
//! (from the spans' queue waits) and pages in flight.
//! Open it at ui.perfetto.dev or chrome://tracing.

use std::path::Path;

use serde_json::{Value, json};

use super::schema::{Report, SpansMode};
use super::{human_bytes, occupancy};
use crate::metrics::span::Span;

/// The report's spans: inline, or from the side file written next to it.
pub fn spans(report: &Report, report_path: &Path) -> Result<Vec<Span>, String> {
    match report.spans.mode {
        SpansMode::Inline => Ok(report.spans.spans.clone()),
        SpansMode::File => {
            let side = report
                .spans
                .file
                .as_ref()
                .map(|f| report_path.with_file_name(f))
                .unwrap_or_else(|| report_path.with_extension("spans.jsonl"));
            let text = std::fs::read_to_string(&side)
                .map_err(|e| format!("{}: the report's spans file: {e}", side.display()))?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}", side.display())))
                .collect()
        }
        SpansMode::None => Err(
            "the report has no spans (it was made with --spans none): re-run with --spans inline or file"
                .into(),
        ),
    }
}

/// Chrome trace event format (JSON object with `traceEvents`), times in microseconds.
pub fn chrome_trace(report: &Report, spans: &[Span]) -> Value {
    let mut workers: Vec<_> = spans.iter().map(|s| s.worker).collect();
    workers.sort();
    workers.dedup();
    let tid = |w| workers.iter().position(|x| *x == w).unwrap_or(0) + 1;
    let us = |ns: u64| ns as f64 / 1e3;
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1,
        "args": {"name": format!("pipebench {} on {}", report.strategy.name, report.corpus.name)}
    })];
    for (i, w) in workers.iter().enumerate() {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": i + 1,
            "args": {"name": w.to_string()}
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i + 1,
            "args": {"sort_index": i}
        }));
    }
    for s in spans {
        events.push(json!({
            "name": s.stage.name(),
            "cat": s.stage.name(),
            "ph": "X",
            "pid": 1,
            "tid": tid(s.worker),
            "ts": us(s.start_ns),
            "dur": us(s.end_ns.saturating_sub(s.start_ns)),
            "args": {
                "pages": s.items,
                "batch_size": s.items.len(),
                "queue_wait_ms": s.queue_wait_ns.iter().map(|w| *w as f64 / 1e6).collect::<Vec<_>>(),
                "ok": s.ok,
                "retry": s.retry,
            }
        }));
    }
    for m in &report.memory.series {
        events.push(json!({
            "name": "memory", "ph": "C", "pid": 1, "ts": m.t_ms * 1e3,
            "args": {
                "rss_MiB": m.rss_bytes as f64 / (1u64 << 20) as f64,
                "render_workers_MiB": m.children_rss_bytes as f64 / (1u64 << 20) as f64,
            }
        }));
    }
    // Queue depth per stage: each page waits from ready (its call's start minus its queue
    // wait) to its call's start.
    let mut waits: std::collections::BTreeMap<&str, Vec<(u64, u64)>> = Default::default();
    for s in spans {
        let q = waits.entry(s.stage.name()).or_default();
        for w in s.queue_wait_ns.iter().filter(|w| **w > 0) {
            q.push((s.start_ns.saturating_sub(*w), s.start_ns));
        }
    }
    for (stage, intervals) in waits {
        for (t, depth) in occupancy(intervals.into_iter()) {
            events.push(json!({
                "name": format!("queue {stage}"), "ph": "C", "pid": 1, "ts": us(t),
                "args": {"pages": depth}
            }));
        }
    }
    // Pages in flight: from admission to done.
    let ns = |ms: f64| (ms * 1e6).round() as u64;
    let pages = report
        .pages
        .iter()
        .map(|p| (ns(p.admitted_ms), ns(p.done_ms)));
    for (t, in_flight) in occupancy(pages) {
        events.push(json!({
            "name": "pages in flight", "ph": "C", "pid": 1, "ts": us(t),
            "args": {"pages": in_flight}
        }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// A Markdown summary of the report.
pub fn markdown(r: &Report) -> String {
    let s = &r.summary;
    let e = &r.environment;
    let mut out = format!(
        "# {} on {}\n\n{} pages ({} failed) · {} · {} · {} build · pipebench {} ({})\n\n",
        r.strategy.name,
        r.corpus.name,
        s.pages_ok + s.pages_failed,
        s.pages_failed,
        e.device.name,
        super::environment::threads_label(e),
        e.build_profile,
        e.pipebench_version,
        e.git_sha
    );
    if !r.ok {
        out.push_str("**The run had errors or was interrupted: see below.**\n\n");
    }
    out.push_str("| figure | value |\n|---|---|\n");
    let rows = [
        ("wall time", format!("{:.1} s", s.wall_ms / 1e3)),
        ("pages/s", format!("{:.3}", s.pages_per_s)),
        (
            "page latency p50 / p90 / p99",
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                s.page_latency.p50_ms, s.page_latency.p90_ms, s.page_latency.p99_ms
            ),
        ),
        (
            "time to first page",
            format!("{:.0} ms", s.time_to_first_page_ms),
        ),
        (
            "steady state",
            format!(
                "{:.3} pages/s after {} warm-up pages",
                s.steady_pages_per_s, s.warmup_pages
            ),
        ),
        ("model load", format!("{:.0} ms", s.model_load_ms)),
        (
            "peak RSS",
            human_bytes(
                r.memory
                    .peak_rss_bytes
                    .max(r.memory.peak_rss_with_children_bytes),
            ),
        ),
        (
            "pages in flight, at most",
            s.pages_in_flight_max.to_string(),
        ),
        (
            "bottleneck",
            format!(
                "{} (bound {:.1} s, efficiency {:.2})",
                s.bottleneck.bound_resource,
                s.bottleneck.bound_ms / 1e3,
                s.bottleneck.efficiency
            ),
        ),
        ("output digest", format!("`{}`", &r.output.digest[..16])),
    ];
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out.push_str(
        "\n| stage | model | items | batches | service p50 / p99 (ms per call) | queue wait p50 (ms) | busy (s) | util |\n|---|---|---|---|---|---|---|---|\n",
    );
    for st in &r.stages {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} % |\n",
            st.stage.name(),
            st.model,
            st.items,
            st.batches,
            st.service_per_batch.p50_ms,
            st.service_per_batch.p99_ms,
            st.queue_wait.p50_ms,
            st.busy_ms / 1e3,
            st.utilization * 100.0
        ));
    }
    if let Some(c) = &r.quality.ocr_cer {
        out.push_str(&format!(
            "\nOCR character error rate: {:.2} % over {} pages with a text layer.\n",
            c.cer * 100.0,
            c.pages_measured
        ));
    }
    if !r.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &r.warnings {
            out.push_str(&format!("- {w}\n"));
        }
    }
    if !r.errors.is_empty() {
        out.push_str("\n## Errors\n\n");
        for x in &r.errors {
            out.push_str(&format!(
                "- {}{} [{}] {}: {}\n",
                x.document,
                x.page.map(|p| format!(" page {p}")).unwrap_or_default(),
                x.stage,
                x.kind,
                x.message.lines().next().unwrap_or("")
            ));
        }
    }
    out
}
