//! Building a report from a run's data: warnings, pages and the output digest, stage
//! figures, errors, memory, spans, and the summary.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::analysis::{bottleneck, max_in_flight, steady_state};
use super::schema::*;
use super::{agreement, environment, ms};
use crate::assets::hex;
use crate::corpus::Corpus;
use crate::metrics::histogram::LatencyHistogram;
use crate::metrics::memory::{MemoryTrace, downsample};
use crate::metrics::span::Collected;
use crate::models::ModelInfo;
use crate::pipeline::PageRecord;
use crate::pipeline::executor::RunError;
use crate::vocab::StageKind;

/// Memory series points kept in a report.
const MAX_SERIES_POINTS: usize = 512;

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
    pub spans_mode: super::SpansMode,
    pub quality: QualityReport,
    /// With `--check-outputs`: the comparison with the reference outputs.
    pub output_check: Option<OutputCheck>,
    /// With `--save-outputs`: the folder they were written to (absolute).
    pub saved_to: Option<String>,
}

/// The report of a run: each part from its own step below, in the order the report lists
/// them.
pub fn build(mut d: RunData<'_>) -> Report {
    d.records.sort_by_key(|r| r.page.global);
    let interrupted = (d.records.len() as u64) < d.pages_selected;
    let outputs_differ = d
        .output_check
        .as_ref()
        .is_some_and(super::output_check::fails);
    let warnings = warnings(&d, interrupted);
    let (first_admit_ns, wall_ns) = run_window(&d.records);
    let pages = page_reports(&d.records);
    let stages = stage_reports(&d.collected, &d.models, wall_ns);
    let errors = error_reports(d.corpus, &d.run_errors);
    let memory = memory_report(&d.memory, d.sample_interval_ms);
    let summary = summary(&d, first_admit_ns, wall_ns);
    let spans = SpansReport {
        mode: d.spans_mode,
        file: None,
        spans: std::mem::take(&mut d.collected.spans),
    };
    let output = OutputDigest {
        algorithm: "sha256".into(),
        digest: output_digest(&pages),
        pages: d.records.len() as u64,
        content: output_content(d.records.iter().map(|r| &r.output)),
        check: d.output_check,
        saved_to: d.saved_to,
    };
    Report {
        schema_version: SCHEMA_VERSION,
        created_at: d.created_at,
        command: d.command,
        ok: errors.is_empty() && summary.pages_failed == 0 && !interrupted && !outputs_differ,
        interrupted,
        warnings,
        environment: d.environment,
        corpus: corpus_info(d.corpus, d.pages_selected, d.corpus_scan_ms),
        strategy: d.strategy,
        models: d.models,
        summary,
        stages,
        memory,
        pages,
        spans,
        errors,
        output,
        quality: d.quality,
    }
}

/// What a reader must know before trusting the figures, most general first: the build, lost
/// spans, test or untrained models, outputs that differ from the reference, an interrupted
/// run.
fn warnings(d: &RunData<'_>, interrupted: bool) -> Vec<String> {
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

    if let Some(c) = &d.output_check {
        if c.pages_differing > 0 {
            let agree = c
                .agreement
                .as_ref()
                .map_or(String::new(), |a| format!("; {}", agreement::headline(a)));
            let (what, tolerance) = match c.min_agreement_pct {
                Some(pct) if !super::output_check::fails(c) => (
                    "outputs differ",
                    format!(", within --min-agreement {pct} %"),
                ),
                Some(pct) => ("OUTPUTS DIFFER", format!(", BELOW --min-agreement {pct} %")),
                None => ("OUTPUTS DIFFER", String::new()),
            };
            warnings.push(format!(
                "{what} from {} on {} of {} pages{tolerance} ({} differences; `output.check` lists them{agree})",
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
    if interrupted {
        warnings.push(format!(
            "INTERRUPTED: {} of {} pages were processed; the statistics cover those pages only",
            d.records.len(),
            d.pages_selected
        ));
    }
    warnings
}

/// The first page's admission and the wall time from it to the last page done, in ns.
fn run_window(records: &[PageRecord]) -> (u64, u64) {
    let first_admit = records.iter().map(|r| r.admitted_ns).min().unwrap_or(0);
    let last_done = records.iter().map(|r| r.done_ns).max().unwrap_or(0);
    (first_admit, last_done.saturating_sub(first_admit))
}

/// One entry per processed page, in the records' order (sorted by page).
fn page_reports(records: &[PageRecord]) -> Vec<PageReport> {
    records
        .iter()
        .map(|r| PageReport {
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
            output_sha256: page_output_sha256(&r.output),
        })
        .collect()
}

/// sha256 over every page's id and output hash, in page order: equal digests, equal outputs.
fn output_digest(pages: &[PageReport]) -> String {
    let mut digest = Sha256::new();
    for p in pages {
        digest.update(p.id.as_bytes());
        digest.update([0]);
        digest.update(p.output_sha256.as_bytes());
        digest.update([b'\n']);
    }
    hex(&digest.finalize())
}

/// Each stage's counts, service times and queue waits, in pipeline order; utilization is
/// busy time over the wall time of all its workers.
fn stage_reports(collected: &Collected, models: &[ModelInfo], wall_ns: u64) -> Vec<StageReport> {
    let mut stages = Vec::new();
    for kind in StageKind::ALL {
        let Some(acc) = collected.stages.get(&kind) else {
            continue;
        };
        let workers = acc.workers.len().max(1) as f64;
        stages.push(StageReport {
            stage: kind,
            model: models
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
            generation: acc
                .generation
                .as_ref()
                .map(|g| generation_report(g, acc.busy_ns)),
        });
    }
    stages
}

/// A stage's summed generation figures.
pub fn generation_report(
    g: &crate::models::generate::GenerationStats,
    busy_ns: u64,
) -> super::schema::GenerationReport {
    let per_s = |n: u64, ns: u64| {
        if ns == 0 {
            0.0
        } else {
            n as f64 / (ns as f64 / 1e9)
        }
    };
    let decode_tokens = g.step_sequences;
    super::schema::GenerationReport {
        sequences: g.sequences,
        tokens_generated: g.tokens_generated,
        tokens_per_s: per_s(g.tokens_generated, g.prefill_ns + g.decode_ns),
        decode_tokens_per_s: per_s(decode_tokens, g.decode_ns),
        images: g.images,
        vision_ms: ms(g.vision_ns),
        prefill_ms: ms(g.prefill_ns),
        decode_ms: ms(g.decode_ns),
        other_ms: ms(busy_ns.saturating_sub(g.vision_ns + g.prefill_ns + g.decode_ns)),
        decode_steps: g.decode_steps,
        sequences_per_step: g.occupancy(),
        time_to_first_token_ms: if g.sequences == 0 {
            0.0
        } else {
            ms(g.first_token_ns) / g.sequences as f64
        },
        kv_cache_bytes: g.kv_cache_bytes,
    }
}

/// Documents that would not open, then the errors of the run itself.
fn error_reports(corpus: &Corpus, run_errors: &[RunError]) -> Vec<ErrorReport> {
    let mut errors: Vec<ErrorReport> = corpus
        .documents
        .iter()
        .filter_map(|doc| {
            doc.error.as_ref().map(|e| ErrorReport {
                document: doc.id.clone(),
                page: None,
                stage: "open".into(),
                kind: e.kind().name().into(),
                message: e.to_string(),
            })
        })
        .collect();
    errors.extend(run_errors.iter().map(|e| ErrorReport {
        document: e.document.clone(),
        page: e.page,
        stage: e.stage.clone(),
        kind: e.kind.name().into(),
        message: e.message.clone(),
    }));
    errors
}

/// Peaks and minima over the sampled memory trace, and the trace itself downsampled.
fn memory_report(memory: &MemoryTrace, sample_interval_ms: u64) -> MemoryReport {
    let s = &memory.samples;
    MemoryReport {
        sample_interval_ms,
        samples_taken: s.len(),
        peak_rss_bytes: memory
            .peak_rss_bytes
            .max(s.iter().map(|x| x.rss_bytes).max().unwrap_or(0)),
        peak_rss_with_children_bytes: s
            .iter()
            .map(|x| x.rss_bytes + x.children_rss_bytes)
            .max()
            .unwrap_or(0),
        system_total_bytes: memory.system_total_bytes,
        min_system_available_bytes: s
            .iter()
            .map(|x| x.system_available_bytes)
            .min()
            .unwrap_or(0),
        swap_total_bytes: memory.swap_total_bytes,
        peak_swap_used_bytes: s.iter().map(|x| x.swap_used_bytes).max().unwrap_or(0),
        accelerator_total_bytes: memory.accelerator_total_bytes,
        peak_accelerator_used_bytes: s.iter().filter_map(|x| x.accelerator_used_bytes).max(),
        series: downsample(s, MAX_SERIES_POINTS),
    }
}

/// The run's headline figures: pages, wall time and throughput (overall and after warm-up),
/// page latency, instrumentation cost and the bottleneck.
fn summary(d: &RunData<'_>, first_admit_ns: u64, wall_ns: u64) -> Summary {
    let pages_ok = d.records.iter().filter(|r| r.ok).count() as u64;
    let mut latency = LatencyHistogram::new();
    for r in d.records.iter().filter(|r| r.ok) {
        latency.record(r.done_ns - r.admitted_ns);
    }
    let (steady_pages_per_s, warmup_pages) =
        steady_state(d.records.iter().filter(|r| r.ok).map(|r| r.done_ns));
    Summary {
        pages_ok,
        pages_failed: d.records.len() as u64 - pages_ok,
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
            .map_or(0.0, |t| ms(t.saturating_sub(first_admit_ns))),
        pages_in_flight_max: max_in_flight(d.records.iter().map(|r| (r.admitted_ns, r.done_ns))),
        steady_pages_per_s,
        warmup_pages,
        model_load_ms: d.model_load_ms,
        page_latency: latency_summary(&latency),
        instrumentation_overhead_ns: d.overhead_ns,
        spans_recorded: d.collected.spans_recorded,
        spans_dropped: d.collected.spans_dropped,
        bottleneck: bottleneck(&d.collected.workers, wall_ns, d.environment.workers),
    }
}

/// The corpus as run: its inputs, identity and every document, failed ones included.
fn corpus_info(corpus: &Corpus, pages_selected: u64, scan_ms: f64) -> CorpusInfo {
    CorpusInfo {
        inputs: corpus
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        name: corpus.name.clone(),
        hash: corpus.hash.clone(),
        documents_total: corpus.documents.len(),
        documents_failed: corpus
            .documents
            .iter()
            .filter(|x| x.error.is_some())
            .count(),
        pages_total: corpus.total_pages(),
        pages_selected,
        scan_ms,
        documents: corpus
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
