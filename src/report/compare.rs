//! `pipebench compare BASE.json OTHER.json …`: reports side by side, each against the first,
//! with the relative change of every figure and, for throughput and latency, a bootstrap
//! confidence interval from the run's own pages — so a change can be told from noise.
//!
//! Throughput's interval comes from the work each page cost (its share of every stage call's
//! time, from the spans): resampling pages gives the spread of the mean cost per page, which
//! is what pages/s is the inverse of when a run is bound by its stages. Latency intervals
//! resample the pages' end-to-end latencies. Reports of different corpora, page selections or
//! models are refused unless forced, and then said loudly.

use std::collections::BTreeMap;

use super::agreement;
use super::output_check::SavedComparison;
use super::schema::Report;
use crate::stats::{bootstrap_ratio, mean, quantile};

/// A figure of two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub base: f64,
    pub other: f64,
    /// Higher is better (pages/s, efficiency) or lower is (time, memory).
    pub higher_is_better: bool,
    /// 95 % interval of the relative change (−0.1 = 10 % lower), when the reports carry what
    /// it needs.
    pub ci: Option<(f64, f64)>,
}

impl Metric {
    /// Relative change of `other` against `base`.
    pub fn change(&self) -> f64 {
        if self.base == 0.0 {
            0.0
        } else {
            self.other / self.base - 1.0
        }
    }

    /// The change is worse by more than `pct` percent and its interval excludes no change
    /// (without an interval, the point estimate alone decides).
    pub fn regressed(&self, pct: f64) -> bool {
        let worse = |c: f64| {
            if self.higher_is_better { -c } else { c }
        };
        let material = worse(self.change()) * 100.0 > pct;
        let significant = self
            .ci
            .is_none_or(|(lo, hi)| worse(lo) > 0.0 && worse(hi) > 0.0);
        material && significant
    }
}

/// One report against the baseline.
#[derive(Debug, Clone)]
pub struct Pair {
    pub base: String,
    pub other: String,
    pub metrics: Vec<Metric>,
    /// Differences in how the runs were made (device, threads, build, strategy…).
    pub setup: Vec<(String, String, String)>,
    /// Why these reports should not be compared (empty: comparable).
    pub mismatches: Vec<String>,
    /// The runs' saved outputs compared with tolerance, or why they could not be; `None` when
    /// neither run saved its outputs.
    pub outputs: Option<Result<SavedComparison, String>>,
}

/// Compares `other` with `base`.
pub fn compare(base: &Report, base_name: &str, other: &Report, other_name: &str) -> Pair {
    let mut mismatches = Vec::new();
    if base.corpus.hash != other.corpus.hash {
        mismatches.push(format!(
            "different corpora: {} ({}) vs {} ({})",
            base.corpus.name,
            &base.corpus.hash[..12.min(base.corpus.hash.len())],
            other.corpus.name,
            &other.corpus.hash[..12.min(other.corpus.hash.len())]
        ));
    }
    if base.corpus.pages_selected != other.corpus.pages_selected {
        mismatches.push(format!(
            "different page selections: {} vs {} pages",
            base.corpus.pages_selected, other.corpus.pages_selected
        ));
    }
    let models = |r: &Report| -> Vec<String> {
        r.models
            .iter()
            .map(|m| {
                format!(
                    "{}={}:{}",
                    m.stage,
                    m.id,
                    m.weights_sha256.clone().unwrap_or_default()
                )
            })
            .collect()
    };
    if models(base) != models(other) {
        mismatches.push(format!(
            "different models: [{}] vs [{}]",
            base.models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            other
                .models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let e = (&base.environment, &other.environment);
    let mut setup = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        setup.push((name.to_string(), a, b));
    };
    field(
        "strategy",
        base.strategy.name.clone(),
        other.strategy.name.clone(),
    );
    field("device", e.0.device.name.clone(), e.1.device.name.clone());
    field("cpu", e.0.cpu_model.clone(), e.1.cpu_model.clone());
    field("threads", e.0.threads.to_string(), e.1.threads.to_string());
    field("workers", e.0.workers.to_string(), e.1.workers.to_string());
    field(
        "build",
        e.0.build_profile.clone(),
        e.1.build_profile.clone(),
    );
    field("git", e.0.git_sha.clone(), e.1.git_sha.clone());
    field(
        "candle features",
        e.0.candle_features.join(","),
        e.1.candle_features.join(","),
    );
    let digest = |r: &Report| r.output.digest.chars().take(16).collect::<String>();
    field("output digest", digest(base), digest(other));

    let (s0, s1) = (&base.summary, &other.summary);
    let work = (page_work_ns(base), page_work_ns(other));
    let lat = (page_latencies_ms(base), page_latencies_ms(other));
    let mut metrics = vec![
        Metric {
            name: "pages/s".into(),
            unit: "",
            base: s0.pages_per_s,
            other: s1.pages_per_s,
            higher_is_better: true,
            // pages/s is the inverse of the mean work per page.
            ci: bootstrap_ratio(&work.0, &work.1, mean)
                .map(|(lo, hi)| (1.0 / (1.0 + hi) - 1.0, 1.0 / (1.0 + lo) - 1.0)),
        },
        Metric {
            name: "wall".into(),
            unit: "s",
            base: s0.wall_ms / 1e3,
            other: s1.wall_ms / 1e3,
            higher_is_better: false,
            ci: None,
        },
        Metric {
            name: "page p50".into(),
            unit: "ms",
            base: s0.page_latency.p50_ms,
            other: s1.page_latency.p50_ms,
            higher_is_better: false,
            ci: bootstrap_ratio(&lat.0, &lat.1, |v| quantile(v, 0.5)),
        },
        Metric {
            name: "page p99".into(),
            unit: "ms",
            base: s0.page_latency.p99_ms,
            other: s1.page_latency.p99_ms,
            higher_is_better: false,
            ci: bootstrap_ratio(&lat.0, &lat.1, |v| quantile(v, 0.99)),
        },
        Metric {
            name: "first page".into(),
            unit: "ms",
            base: s0.time_to_first_page_ms,
            other: s1.time_to_first_page_ms,
            higher_is_better: false,
            ci: None,
        },
        Metric {
            name: "peak RSS".into(),
            unit: "MiB",
            base: mib(base
                .memory
                .peak_rss_bytes
                .max(base.memory.peak_rss_with_children_bytes)),
            other: mib(other
                .memory
                .peak_rss_bytes
                .max(other.memory.peak_rss_with_children_bytes)),
            higher_is_better: false,
            ci: None,
        },
        Metric {
            name: "efficiency".into(),
            unit: "",
            base: s0.bottleneck.efficiency,
            other: s1.bottleneck.efficiency,
            higher_is_better: true,
            ci: None,
        },
    ];
    for st in &base.stages {
        let Some(o) = other.stages.iter().find(|x| x.stage == st.stage) else {
            continue;
        };
        let stage = st.stage.name();
        metrics.push(Metric {
            name: format!("{stage} service/page p50"),
            unit: "ms",
            base: st.service_per_item.p50_ms,
            other: o.service_per_item.p50_ms,
            higher_is_better: false,
            ci: None,
        });
        metrics.push(Metric {
            name: format!("{stage} queue wait p50"),
            unit: "ms",
            base: st.queue_wait.p50_ms,
            other: o.queue_wait.p50_ms,
            higher_is_better: false,
            ci: None,
        });
    }
    Pair {
        base: base_name.to_string(),
        other: other_name.to_string(),
        metrics,
        setup,
        mismatches,
        outputs: None,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Each page's share of the stage calls it was part of, in nanoseconds (inline spans needed).
pub fn page_work_ns(r: &Report) -> Vec<f64> {
    let mut work: BTreeMap<u32, f64> = BTreeMap::new();
    for s in &r.spans.spans {
        let share = s.end_ns.saturating_sub(s.start_ns) as f64 / s.items.len().max(1) as f64;
        for i in &s.items {
            *work.entry(*i).or_default() += share;
        }
    }
    work.into_values().collect()
}

fn page_latencies_ms(r: &Report) -> Vec<f64> {
    r.pages
        .iter()
        .filter(|p| p.ok)
        .map(|p| p.latency_ms)
        .collect()
}

/// The comparison as text (Markdown tables when `markdown`); `fail_pct` and `min_agreement`
/// mark what fails `--fail-on-regression` and `--min-agreement`.
pub fn render(
    pairs: &[Pair],
    fail_pct: Option<f64>,
    min_agreement: Option<f64>,
    markdown: bool,
) -> String {
    let mut out = String::new();
    for p in pairs {
        if markdown {
            out.push_str(&format!("### {} vs {}\n\n", p.other, p.base));
        } else {
            out.push_str(&format!("{}  vs  {} (baseline)\n", p.other, p.base));
        }
        for m in &p.mismatches {
            out.push_str(&format!("  WARNING: NOT COMPARABLE: {m}\n"));
        }
        // How each run was made, side by side; `≠` marks what differs.
        for (name, a, b) in &p.setup {
            let mark = if a != b { "≠" } else { " " };
            if markdown {
                out.push_str(&format!("- {mark} {name}: {a} | {b}\n"));
            } else {
                out.push_str(&format!("  {mark} {name:<16} {a:<30} {b}\n"));
            }
        }
        if markdown {
            out.push_str(
                "\n| figure | baseline | this | change | 95 % CI |\n|---|---|---|---|---|\n",
            );
        } else {
            out.push_str(&format!(
                "  {:<28} {:>12} {:>12} {:>9}  {:<20}\n",
                "figure", "baseline", "this", "change", "95 % CI"
            ));
        }
        for m in &p.metrics {
            let ci = m.ci.map_or(String::new(), |(lo, hi)| {
                format!("[{:+.1} %, {:+.1} %]", lo * 100.0, hi * 100.0)
            });
            let flag = match fail_pct {
                Some(pct) if is_gating(m) && m.regressed(pct) => " REGRESSION",
                _ => "",
            };
            let value = |v: f64| {
                format!(
                    "{}{}{}",
                    significant(v),
                    if m.unit.is_empty() { "" } else { " " },
                    m.unit
                )
            };
            if markdown {
                out.push_str(&format!(
                    "| {} | {} | {} | {:+.1} %{flag} | {ci} |\n",
                    m.name,
                    value(m.base),
                    value(m.other),
                    m.change() * 100.0
                ));
            } else {
                out.push_str(&format!(
                    "  {:<28} {:>12} {:>12} {:>+8.1}%  {ci}{flag}\n",
                    m.name,
                    value(m.base),
                    value(m.other),
                    m.change() * 100.0
                ));
            }
        }
        match &p.outputs {
            Some(Ok(c)) => out.push_str(&render_outputs(c, min_agreement, markdown)),
            Some(Err(why)) => out.push_str(&format!(
                "{}outputs: not compared: {why}\n",
                if markdown { "\n" } else { "  " }
            )),
            None => {}
        }
        out.push('\n');
    }
    out
}

/// The outputs' agreement line, its gate and the worst differences.
fn render_outputs(c: &SavedComparison, min_agreement: Option<f64>, markdown: bool) -> String {
    let a = &c.agreement;
    let mut head = agreement::headline(a);
    if c.pages_differing == 0 {
        head.push_str(", identical");
    } else {
        head.push_str(&format!(", {} differ", c.pages_differing));
    }
    if c.pages_missing > 0 {
        head.push_str(&format!(
            "; {} pages not in both outputs, not compared",
            c.pages_missing
        ));
    }
    if let Some(pct) = min_agreement {
        let below = agreement::below(a, pct);
        if !below.is_empty() {
            head.push_str(&format!(
                " BELOW --min-agreement {pct} %: {}",
                below.join(", ")
            ));
        }
    }
    let (indent, item) = if markdown {
        ("\n", "- ")
    } else {
        ("  ", "    ")
    };
    let mut out = format!("{indent}{head}\n");
    if !a.worst.is_empty() {
        out.push_str(&format!("{indent}worst differences:\n"));
        if markdown {
            out.push('\n');
        }
        for d in &a.worst {
            out.push_str(&format!("{item}{}\n", agreement::describe_difference(d)));
        }
    }
    out
}

/// The metrics that gate `--fail-on-regression`: throughput and median page latency, the two
/// with intervals. The others are shown for explanation, not judged.
pub fn gating(p: &Pair) -> impl Iterator<Item = &Metric> {
    p.metrics.iter().filter(|m| is_gating(m))
}

fn is_gating(m: &Metric) -> bool {
    m.name == "pages/s" || m.name == "page p50"
}

/// Four significant digits, without exponent: 0.0123, 12.35, 1235.
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(base: f64, other: f64, ci: Option<(f64, f64)>) -> Metric {
        Metric {
            name: "pages/s".into(),
            unit: "",
            base,
            other,
            higher_is_better: true,
            ci,
        }
    }

    #[test]
    fn a_regression_must_be_material_and_outside_noise() {
        // 20 % slower, interval all below zero: a regression at 5 %.
        assert!(metric(10.0, 8.0, Some((-0.25, -0.15))).regressed(5.0));
        // 20 % slower but the interval spans zero: noise.
        assert!(!metric(10.0, 8.0, Some((-0.4, 0.05))).regressed(5.0));
        // Significant but smaller than the threshold.
        assert!(!metric(10.0, 9.8, Some((-0.03, -0.01))).regressed(5.0));
        // Faster is never a regression.
        assert!(!metric(10.0, 12.0, Some((0.1, 0.3))).regressed(5.0));
        // Lower-is-better figures regress upwards.
        let mut m = metric(100.0, 130.0, Some((0.2, 0.4)));
        m.higher_is_better = false;
        assert!(m.regressed(10.0));
    }
}
