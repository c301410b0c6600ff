//! Reports: built from the full histograms and spans of a run (never from live snapshots),
//! written atomically, summarized for the terminal.

pub mod compare;
pub mod environment;
pub mod export;
pub mod output_check;
pub mod plot;
pub mod quality;
pub mod schema;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::assets::hex;
use crate::corpus::Corpus;
use crate::metrics::histogram::LatencyHistogram;
use crate::metrics::memory::{MemoryTrace, downsample};
use crate::metrics::span::Collected;
use crate::models::ModelInfo;
use crate::pipeline::PageRecord;
use crate::pipeline::executor::RunError;
use crate::vocab::StageKind;
use schema::*;

/// Memory series points kept in a report.
const MAX_SERIES_POINTS: usize = 512;

/// Output differences printed in the terminal summary (the report keeps more).
const SUMMARY_DIFFERENCES: usize = 10;

pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn latency_summary(h: &LatencyHistogram) -> LatencySummary {
    let q = |x| ms(h.quantile_ns(x));
    LatencySummary {
        count: h.len(),
        mean_ms: if h.is_empty() {
            0.0
        } else {
            h.inner().mean() / 1e6
        },
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: if h.is_empty() {
            0.0
        } else {
            ms(h.inner().max())
        },
        histogram_ns: h.to_base64(),
    }
}

/// sha256 of one page's canonical output.
pub fn page_output_sha256(out: &crate::page::PageOutput) -> String {
    let bytes = serde_json::to_vec(out).expect("page outputs serialize");
    hex(&Sha256::digest(&bytes))
}

/// Everything a report is made of.
pub struct RunData<'a> {
    pub command: Vec<String>,
    pub created_at: String,
    pub environment: Environment,
    pub corpus: &'a Corpus,
    pub corpus_scan_ms: f64,
    pub strategy: StrategyInfo,
    pub models: Vec<ModelInfo>,
    pub model_load_ms: f64,
    pub records: Vec<PageRecord>,
    pub pages_selected: u64,
    pub run_errors: Vec<RunError>,
    pub collected: Collected,
    pub memory: MemoryTrace,
    pub sample_interval_ms: u64,
    pub overhead_ns: f64,
    pub spans_mode: crate::cli::SpansMode,
    pub quality: QualityReport,
    /// With `--check-outputs`: the comparison with the reference outputs.
    pub output_check: Option<OutputCheck>,
}

pub fn build(mut d: RunData<'_>) -> Report {
    let mut warnings = Vec::new();
    if environment::build_profile() == "debug" {
        warnings
            .push("DEBUG BUILD: timings are not representative; build with --release".to_string());
    }
    if d.collected.spans_dropped > 0 {
        warnings.push(format!(
            "{} spans were dropped (collector fell behind); stage statistics are incomplete",
            d.collected.spans_dropped
        ));
    }
    if d.models.iter().any(|m| m.is_test_stage) {
        let stages: Vec<_> = d
            .models
            .iter()
            .filter(|m| m.is_test_stage)
            .map(|m| m.stage.name())
            .collect();
        warnings.push(format!(
            "stages {} run the `null` test model: their outputs are empty",
            stages.join(", ")
        ));
    }

    if d.models.iter().any(|m| m.untrained) {
        let stages: Vec<String> = d
            .models
            .iter()
            .filter(|m| m.untrained)
            .map(|m| match &m.fallback {
                Some(f) => format!("{} ({}; regions from {f})", m.stage.name(), m.id),
                None => format!("{} ({})", m.stage.name(), m.id),
            })
            .collect();
        warnings.push(format!(
            "UNTRAINED: stages {} run seeded random weights (--weights random): their compute is \
             the real model's, their own outputs are meaningless",
            stages.join(", ")
        ));
    }

    let outputs_differ = d
        .output_check
        .as_ref()
        .is_some_and(|c| c.pages_differing > 0);
    if let Some(c) = &d.output_check {
        if c.pages_differing > 0 {
            warnings.push(format!(
                "OUTPUTS DIFFER from {} on {} of {} pages ({} differences; `output.check` lists them)",
                c.reference, c.pages_differing, c.pages_compared, c.differences_total
            ));
        }
        if c.pages_missing > 0 {
            warnings.push(format!(
                "{} pages are not in the reference outputs {} and were not compared",
                c.pages_missing, c.reference
            ));
        }
    }
    let interrupted = (d.records.len() as u64) < d.pages_selected;
    if interrupted {
        warnings.push(format!(
            "INTERRUPTED: {} of {} pages were processed; the statistics cover those pages only",
            d.records.len(),
            d.pages_selected
        ));
    }
    d.records.sort_by_key(|r| r.page.global);
    let first_admit = d.records.iter().map(|r| r.admitted_ns).min().unwrap_or(0);
    let last_done = d.records.iter().map(|r| r.done_ns).max().unwrap_or(0);
    let wall_ns = last_done.saturating_sub(first_admit);
    let steady = steady_state(d.records.iter().filter(|r| r.ok).map(|r| r.done_ns));
    let mut latency = LatencyHistogram::new();
    let mut digest = Sha256::new();
    let mut pages = Vec::with_capacity(d.records.len());
    for r in &d.records {
        if r.ok {
            latency.record(r.done_ns - r.admitted_ns);
        }
        let h = page_output_sha256(&r.output);
        digest.update(r.id.as_bytes());
        digest.update([0]);
        digest.update(h.as_bytes());
        digest.update([b'\n']);
        pages.push(PageReport {
            index: r.page.global,
            id: r.id.to_string(),
            document: r.doc_id.to_string(),
            page: r.page.page + 1,
            ok: r.ok,
            failed_stage: r.failed_stage,
            admitted_ms: ms(r.admitted_ns),
            done_ms: ms(r.done_ns),
            latency_ms: ms(r.done_ns - r.admitted_ns),
            width_px: r.output.width_px,
            height_px: r.output.height_px,
            output_sha256: h,
        });
    }
    let pages_ok = d.records.iter().filter(|r| r.ok).count() as u64;
    let pages_failed = d.records.len() as u64 - pages_ok;

    let mut stages = Vec::new();
    for kind in StageKind::ALL {
        let Some(acc) = d.collected.stages.get(&kind) else {
            continue;
        };
        let workers = acc.workers.len().max(1) as f64;
        stages.push(StageReport {
            stage: kind,
            model: d
                .models
                .iter()
                .find(|m| m.stage == kind)
                .map_or_else(|| "?".into(), |m| m.id.clone()),
            workers: acc.workers.iter().copied().collect(),
            items: acc.items,
            items_failed: acc.items_failed,
            batches: acc.batches,
            retries: acc.retries,
            batch_sizes: acc
                .batch_sizes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            busy_ms: ms(acc.busy_ns),
            utilization: if wall_ns == 0 {
                0.0
            } else {
                acc.busy_ns as f64 / (wall_ns as f64 * workers)
            },
            items_per_busy_s: if acc.busy_ns == 0 {
                0.0
            } else {
                acc.items as f64 / (acc.busy_ns as f64 / 1e9)
            },
            service_per_batch: latency_summary(&acc.service),
            service_per_item: latency_summary(&acc.service_per_item),
            queue_wait: latency_summary(&acc.queue_wait),
            first_call_ms: ms(acc.first_call_ns),
            worker_ms: acc.worker_ns.map(ms),
            transfer_ms: acc.worker_ns.map(|w| ms(acc.busy_ns.saturating_sub(w))),
        });
    }

    let mut errors: Vec<ErrorReport> = d
        .corpus
        .documents
        .iter()
        .filter_map(|doc| {
            doc.error.as_ref().map(|e| ErrorReport {
                document: doc.id.clone(),
                page: None,
                stage: "open".into(),
                kind: e.kind().into(),
                message: e.to_string(),
            })
        })
        .collect();
    errors.extend(d.run_errors.iter().map(|e| ErrorReport {
        document: e.document.clone(),
        page: e.page,
        stage: e.stage.clone(),
        kind: e.kind.clone(),
        message: e.message.clone(),
    }));

    let s = &d.memory.samples;
    let memory = MemoryReport {
        sample_interval_ms: d.sample_interval_ms,
        samples_taken: s.len(),
        peak_rss_bytes: d
            .memory
            .peak_rss_bytes
            .max(s.iter().map(|x| x.rss_bytes).max().unwrap_or(0)),
        peak_rss_with_children_bytes: s
            .iter()
            .map(|x| x.rss_bytes + x.children_rss_bytes)
            .max()
            .unwrap_or(0),
        system_total_bytes: d.memory.system_total_bytes,
        min_system_available_bytes: s
            .iter()
            .map(|x| x.system_available_bytes)
            .min()
            .unwrap_or(0),
        swap_total_bytes: d.memory.swap_total_bytes,
        peak_swap_used_bytes: s.iter().map(|x| x.swap_used_bytes).max().unwrap_or(0),
        accelerator_total_bytes: d.memory.accelerator_total_bytes,
        peak_accelerator_used_bytes: s.iter().filter_map(|x| x.accelerator_used_bytes).max(),
        series: downsample(s, MAX_SERIES_POINTS),
    };

    let spans = SpansReport {
        mode: match d.spans_mode {
            crate::cli::SpansMode::Inline => "inline",
            crate::cli::SpansMode::File => "file",
            crate::cli::SpansMode::None => "none",
        }
        .into(),
        file: None,
        spans: std::mem::take(&mut d.collected.spans),
    };

    let documents_failed = d
        .corpus
        .documents
        .iter()
        .filter(|x| x.error.is_some())
        .count();
    Report {
        schema_version: SCHEMA_VERSION,
        created_at: d.created_at,
        command: d.command,
        ok: errors.is_empty() && pages_failed == 0 && !interrupted && !outputs_differ,
        interrupted,
        warnings,
        environment: d.environment,
        corpus: CorpusInfo {
            inputs: d
                .corpus
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            name: d.corpus.name.clone(),
            hash: d.corpus.hash.clone(),
            documents_total: d.corpus.documents.len(),
            documents_failed,
            pages_total: d.corpus.total_pages(),
            pages_selected: d.pages_selected,
            scan_ms: d.corpus_scan_ms,
            documents: d
                .corpus
                .documents
                .iter()
                .map(|x| DocumentReport {
                    id: x.id.clone(),
                    path: x.path.display().to_string(),
                    bytes: x.bytes,
                    sha256: x.sha256.clone(),
                    pages: x.pages,
                    error: x.error.as_ref().map(|e| e.to_string()),
                })
                .collect(),
        },
        strategy: d.strategy,
        models: d.models,
        summary: Summary {
            pages_ok,
            pages_failed,
            wall_ms: ms(wall_ns),
            pages_per_s: if wall_ns == 0 {
                0.0
            } else {
                pages_ok as f64 / (wall_ns as f64 / 1e9)
            },
            time_to_first_page_ms: d
                .records
                .iter()
                .map(|r| r.done_ns)
                .min()
                .map_or(0.0, |t| ms(t.saturating_sub(first_admit))),
            pages_in_flight_max: max_in_flight(
                d.records.iter().map(|r| (r.admitted_ns, r.done_ns)),
            ),
            steady_pages_per_s: steady.0,
            warmup_pages: steady.1,
            model_load_ms: d.model_load_ms,
            page_latency: latency_summary(&latency),
            instrumentation_overhead_ns: d.overhead_ns,
            spans_recorded: d.collected.spans_recorded,
            spans_dropped: d.collected.spans_dropped,
            bottleneck: bottleneck(&d.collected.workers, wall_ns),
        },
        stages,
        memory,
        pages,
        spans,
        errors,
        output: OutputDigest {
            algorithm: "sha256".into(),
            digest: hex(&digest.finalize()),
            pages: d.records.len() as u64,
            content: output_content(d.records.iter().map(|r| &r.output)),
            check: d.output_check,
        },
        quality: d.quality,
    }
}

/// Pages per second after warm-up, and the warm-up page count: the first tenth of the pages
/// (at least one) are warm-up; the rate is the rest over the time from the last warm-up page's
/// completion to the last page's. (0, 0) with fewer than three pages.
pub fn steady_state(done_ns: impl Iterator<Item = u64>) -> (f64, u64) {
    let mut done: Vec<u64> = done_ns.collect();
    if done.len() < 3 {
        return (0.0, 0);
    }
    done.sort_unstable();
    let k = (done.len() / 10).max(1);
    let span = done[done.len() - 1].saturating_sub(done[k - 1]);
    if span == 0 {
        return (0.0, k as u64);
    }
    ((done.len() - k) as f64 / (span as f64 / 1e9), k as u64)
}

/// How many intervals `[from, to)` are open, after each start or end, in time order: the
/// occupancy of a queue or of the pipeline over time. Ends sort before starts at the same
/// instant: a page done as another is admitted does not count twice.
pub fn occupancy(intervals: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut events: Vec<(u64, i64)> = intervals
        .flat_map(|(a, d)| [(a, 1), (d.max(a), -1)])
        .collect();
    events.sort();
    let mut now = 0i64;
    events
        .into_iter()
        .map(|(t, step)| {
            now += step;
            (t, now.max(0) as u64)
        })
        .collect()
}

/// The most intervals `[admitted, done)` that overlap at one instant.
pub fn max_in_flight(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    occupancy(intervals)
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0)
}

/// `results/<corpus>-<strategy>-<UTC time>.json`.
pub fn default_path(results_dir: &Path, corpus: &str, strategy: &str, created_at: &str) -> PathBuf {
    let stamp: String = created_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    results_dir.join(format!("{corpus}-{strategy}-{stamp}.json"))
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0} exists; pass --force to overwrite it, or choose another --out")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `report` (and its spans side file, if asked) atomically: temp file + rename.
/// Refuses to replace an existing file unless `force`.
pub fn write(report: &mut Report, path: &Path, force: bool) -> Result<(), WriteError> {
    if path.exists() && !force {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if report.spans.mode == "file" {
        let side = path.with_extension("spans.jsonl");
        let mut buf = Vec::new();
        for s in &report.spans.spans {
            serde_json::to_writer(&mut buf, s).expect("spans serialize");
            buf.push(b'\n');
        }
        atomic_write(&side, &buf).map_err(io(&side))?;
        report.spans.file = side.file_name().map(|n| n.to_string_lossy().into_owned());
        report.spans.spans.clear();
    } else if report.spans.mode == "none" {
        report.spans.spans.clear();
    }
    let mut json = serde_json::to_vec_pretty(report).expect("reports serialize");
    json.push(b'\n');
    atomic_write(path, &json).map_err(io(path))
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

/// A terminal summary in the spirit of hyperfine's.
/// Busy time per resource kind, the ideal bound and the efficiency (see [`Bottleneck`]).
pub fn bottleneck(
    workers: &BTreeMap<crate::metrics::span::WorkerId, crate::metrics::span::WorkerAccum>,
    wall_ns: u64,
) -> Bottleneck {
    let mut by_kind: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for (id, w) in workers {
        let e = by_kind.entry(id.kind.to_string()).or_default();
        e.0 += 1;
        e.1 += w.busy_ns;
        e.2 += w.idle_ns;
        e.3 = e.3.max(w.max_gap_ns);
    }
    let resources: Vec<ResourceReport> = by_kind
        .iter()
        .map(|(kind, (n, busy, idle, gap))| ResourceReport {
            resource: kind.clone(),
            workers: *n,
            busy_ms: ms(*busy),
            utilization: if wall_ns == 0 {
                0.0
            } else {
                *busy as f64 / (wall_ns as f64 * *n as f64)
            },
            idle_gaps_ms: ms(*idle),
            max_idle_gap_ms: ms(*gap),
        })
        .collect();
    let (bound_resource, bound_ms) = resources
        .iter()
        .map(|r| (r.resource.clone(), r.busy_ms / r.workers.max(1) as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    Bottleneck {
        efficiency: if wall_ns == 0 {
            0.0
        } else {
            bound_ms / ms(wall_ns)
        },
        resources,
        bound_ms,
        bound_resource,
    }
}

/// Counts over page outputs (see [`OutputContent`]).
pub fn output_content<'a>(
    outputs: impl Iterator<Item = &'a crate::page::PageOutput>,
) -> OutputContent {
    let mut c = OutputContent::default();
    for out in outputs {
        for r in &out.regions {
            *c.regions_by_class.entry(r.class.clone()).or_default() += 1;
            if r.html.is_some() {
                c.tables += 1;
            }
            if let Some(steps) = r.decoder_steps {
                c.table_decoder_steps += u64::from(steps);
                c.table_decoder_steps_max = c.table_decoder_steps_max.max(u64::from(steps));
            }
        }
        c.text_lines += out.lines.len() as u64;
        c.text_chars += out
            .lines
            .iter()
            .map(|l| l.text.chars().filter(|ch| !ch.is_whitespace()).count() as u64)
            .sum::<u64>();
    }
    c
}

pub fn summary_text(r: &Report, path: &Path) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "{} on {} ({} documents, {} pages) — {} · {} threads · {} build\n",
            r.strategy.name,
            r.corpus.name,
            r.corpus.documents_total,
            r.corpus.pages_selected,
            r.environment.device.spec,
            r.environment.threads,
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

/// Writes each document's outputs as `<dir>/<document id>.json` (pages with their regions) and
/// `.md` (the text of its regions in order, one page per section). Ids with `/` become folders.
pub fn save_outputs(dir: &Path, records: &[PageRecord]) -> std::io::Result<usize> {
    let mut by_doc: BTreeMap<&str, Vec<&PageRecord>> = BTreeMap::new();
    for r in records {
        by_doc.entry(&r.doc_id).or_default().push(r);
    }
    for (doc, mut pages) in by_doc.iter_mut().map(|(d, p)| (*d, std::mem::take(p))) {
        pages.sort_by_key(|r| r.page.page);
        let json = serde_json::json!({
            "document": doc,
            "pages": pages.iter().map(|r| serde_json::json!({
                "page": r.page.page + 1,
                "ok": r.ok,
                "output": r.output,
            })).collect::<Vec<_>>(),
        });
        let base = dir.join(doc);
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut md = format!("# {doc}\n");
        for r in &pages {
            md.push_str(&format!("\n## Page {}\n\n", r.page.page + 1));
            for region in &r.output.regions {
                md.push_str(&region_markdown(region));
            }
        }
        atomic_write(
            &base.with_extension("json"),
            &serde_json::to_vec_pretty(&json).expect("outputs serialize"),
        )?;
        atomic_write(&base.with_extension("md"), md.as_bytes())?;
    }
    Ok(by_doc.len())
}

/// One region as Markdown: tables as their HTML (without the page wrapper), titles as
/// headings, figures and equations as a placeholder with their box, text as a paragraph.
fn region_markdown(r: &crate::page::Region) -> String {
    let text = r.text.as_deref().unwrap_or("").trim();
    let b = r.bbox;
    match (r.class.as_str(), &r.html) {
        (_, Some(html)) => {
            let inner = html
                .trim_start_matches("<html><body>")
                .trim_end_matches("</body></html>");
            format!("{inner}\n\n")
        }
        ("title", _) if !text.is_empty() => format!("### {}\n\n", text.replace('\n', " ")),
        ("figure" | "equation", _) => format!(
            "*[{} at {:.0},{:.0}–{:.0},{:.0}]*\n\n",
            r.class, b[0], b[1], b[2], b[3]
        ),
        _ if !text.is_empty() => format!("{text}\n\n"),
        _ => String::new(),
    }
}

/// Measures OCR against each processed page's text layer (after the run: not timed). Pages
/// without a visible text layer are counted but not measured.
pub fn measure_ocr_cer(
    corpus: &Corpus,
    records: &[PageRecord],
    spec: &crate::corpus::render::RenderSpec,
) -> CerReport {
    let mut renderer = crate::corpus::render::Renderer::new();
    let mut total = quality::CerCounts::default();
    let (mut measured, mut without) = (0u64, 0u64);
    let mut pages = Vec::new();
    let mut sorted: Vec<&PageRecord> = records.iter().filter(|r| r.ok).collect();
    sorted.sort_by_key(|r| r.page.global);
    for r in sorted {
        let path = &corpus.documents[r.page.doc as usize].path;
        let truth = match renderer
            .document(path)
            .and_then(|d| d.text_layer(r.page.page, spec))
        {
            Ok(t) if !t.is_empty() => t,
            _ => {
                without += 1;
                continue;
            }
        };
        let c = quality::page_cer(&quality::ocr_texts(&r.output), &truth);
        total.add(&c);
        measured += 1;
        pages.push(PageCer {
            id: r.id.to_string(),
            reference_chars: c.reference_chars as u64,
            errors: c.errors() as u64,
            cer: c.cer(),
        });
    }
    CerReport {
        method: "reference = the PDF's visible text layer (pdfium characters, boxes scaled to the rendered page); each reference character goes to the smallest OCR line containing its centre; edit distance per line plus uncovered reference characters; whitespace ignored".into(),
        pages_measured: measured,
        pages_without_text_layer: without,
        reference_chars: total.reference_chars as u64,
        edits: total.edits as u64,
        missed: total.missed as u64,
        cer: total.cer(),
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_state_leaves_the_warm_up_out() {
        // A slow first page (5 s), then one page a second.
        let done = [
            5_000_000_000u64,
            6e9 as u64,
            7e9 as u64,
            8e9 as u64,
            9e9 as u64,
        ];
        let (rate, warmup) = steady_state(done.into_iter());
        assert_eq!(warmup, 1);
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        assert_eq!(steady_state([1u64, 2].into_iter()), (0.0, 0));
    }

    #[test]
    fn pages_in_flight_counts_overlapping_intervals() {
        assert_eq!(max_in_flight(std::iter::empty()), 0);
        // Back to back (one done as the next is admitted): one at a time.
        assert_eq!(max_in_flight([(0, 10), (10, 20), (20, 30)].into_iter()), 1);
        assert_eq!(
            max_in_flight([(0, 10), (5, 20), (6, 7), (15, 30)].into_iter()),
            3
        );
    }
}
