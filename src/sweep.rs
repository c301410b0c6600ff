//! `pipebench sweep`: a grid over strategy parameters (and strategies), one full report per
//! point in a sweep folder, and a summary of all points (Markdown, CSV, JSON).
//!
//! A point is a strategy file with some keys set (`--set ocr.batch_size=1,4,8`): its TOML is
//! edited and validated like any strategy file, so a bad value names the point and the key.
//! Points already measured (their report is in the folder and readable) are kept on restart;
//! `--shard i/n` runs every n-th point, so a CI matrix can split a sweep across machines, and
//! `pipebench merge` joins the shards' folders into one summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config;
use crate::plan::{self, RunPlan};
use crate::stats;

/// One `--set KEY=V1,V2,…`: a dotted key of the strategy file and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

impl Axis {
    /// Parses `KEY=V1,V2`. `ocr.batch=4` is short for `stages.ocr.batch_size=4`, `workers=2`
    /// for `device.workers=2`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected KEY=V1,V2,… (e.g. ocr.batch_size=1,4,8)"))?;
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        // A model stage's name may start a key without the `stages.` prefix.
        let is_stage = |p: &str| {
            crate::vocab::StageKind::MODELS
                .iter()
                .any(|k| k.name() == p)
        };
        if parts.len() == 2 && is_stage(parts[0]) {
            parts.insert(0, "stages");
        }
        // `workers` and `threads` alone are the model workers' (`device.*`).
        if parts.len() == 1 && matches!(parts[0], "workers" | "threads") {
            parts.insert(0, "device");
        }
        if parts.last() == Some(&"batch") {
            *parts.last_mut().expect("non-empty") = "batch_size";
        }
        let values: Vec<toml::Value> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(value)
            .collect();
        if values.is_empty() {
            return Err(format!("`{s}`: no values"));
        }
        Ok(Self {
            key: parts.join("."),
            values,
        })
    }
}

fn value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = v.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_string())
    }
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// File-name-safe id: the strategy's name and the values set.
    pub id: String,
    pub strategy: String,
    /// The strategy file it came from.
    pub file: String,
    /// The keys set, and their values as text.
    pub values: BTreeMap<String, String>,
    /// The point's strategy file text (validated): what `recommend` writes out.
    pub text: String,
}

impl Point {
    /// The point's run plan; `profile` (`--models`) overrides the file's. Reports name the
    /// point's label as their strategy file.
    pub fn plan(&self, profile: Option<&str>) -> Result<RunPlan, config::ConfigError> {
        let mut plan = plan::resolve(
            &config::parse(&self.text, Path::new(&self.label()))?,
            profile,
        )?;
        plan.file = self.label();
        Ok(plan)
    }

    /// `strategies/x.toml [ocr.batch_size=4]`, for messages.
    pub fn label(&self) -> String {
        let v: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} [{}]", self.file, v.join(", "))
    }
}

/// Every point: each strategy file × the cartesian product of the axes, validated.
pub fn points(strategies: &[(String, String)], axes: &[Axis]) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for (file, text) in strategies {
        let base: toml::Table =
            toml::from_str(text).map_err(|e| format!("{file}: invalid strategy file: {e}"))?;
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for axis in axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    axis.values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((axis.key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        for combo in combos {
            let mut table = base.clone();
            for (key, v) in &combo {
                set(&mut table, key, v.clone());
            }
            let text = toml::to_string(&table).map_err(|e| format!("{file}: {e}"))?;
            let values: BTreeMap<String, String> =
                combo.iter().map(|(k, v)| (k.clone(), show(v))).collect();
            let name = table
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("strategy")
                .to_string();
            let mut id = name.clone();
            for (k, v) in &values {
                let short = k.strip_prefix("stages.").unwrap_or(k);
                id.push_str(&format!("__{short}={v}"));
            }
            let id: String = id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let point = Point {
                id,
                strategy: name,
                file: file.clone(),
                values,
                text,
            };
            point.plan(None).map_err(|e| e.to_string())?;
            out.push(point);
        }
    }
    Ok(out)
}

fn set(table: &mut toml::Table, key: &str, v: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().expect("a key has a leaf");
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("strategy tables are tables");
    }
    t.insert(leaf.to_string(), v);
}

/// `i/n`: this machine's share of the points (0-based).
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard {s}: expected i/n, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.parse().map_err(|_| format!("--shard {s}: bad index"))?,
        n.parse().map_err(|_| format!("--shard {s}: bad count"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("--shard {s}: need 0 ≤ i < n"));
    }
    Ok((i, n))
}

/// The folder layout: `sweep.json` (the points), `points/<id>.json` (their reports), and the
/// summaries.
pub fn report_path(dir: &Path, p: &Point) -> PathBuf {
    dir.join("points").join(format!("{}.json", p.id))
}

/// What `sweep.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub corpus: Vec<String>,
    pub keys: Vec<String>,
    pub points: Vec<Point>,
}

/// One row of the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub strategy: String,
    pub values: BTreeMap<String, String>,
    pub ok: bool,
    /// Runs of this point; every figure is their median.
    pub repeats: u32,
    pub pages: u64,
    pub wall_s: f64,
    pub pages_per_s: f64,
    /// Bootstrap 95 % interval of the median pages/s (percentile bootstrap over the repeats,
    /// three or more; with three to five it is their range, slowest to fastest).
    pub pages_per_s_ci: Option<[f64; 2]>,
    /// Repeats (1-based) whose pages/s is an outlier (modified z-score above 3.5).
    pub outlier_repeats: Vec<u32>,
    pub p50_page_ms: f64,
    pub p99_page_ms: f64,
    pub peak_rss_bytes: u64,
    pub efficiency: f64,
    /// Busy seconds per stage.
    pub stage_busy_s: BTreeMap<String, f64>,
    /// Service time per page (p50, ms) per stage.
    pub stage_ms_per_page: BTreeMap<String, f64>,
    pub digest: String,
}

impl Row {
    /// A point's row from its repeats: the median of each figure; for pages/s a bootstrap
    /// 95 % interval of the median (three repeats or more) and, from five repeats on, the
    /// outliers (modified z-score above 3.5).
    pub fn of(p: &Point, runs: &[crate::report::schema::Report]) -> Self {
        // A point with no runs (or a stage missing from them) shows 0, not NaN: the summary's
        // JSON must read back (`merge`), and NaN does not survive serde_json.
        let median = |v: &[f64]| stats::median(v).unwrap_or(0.0);
        let med = |f: &dyn Fn(&crate::report::schema::Report) -> f64| -> f64 {
            median(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let pps: Vec<f64> = runs.iter().map(|r| r.summary.pages_per_s).collect();
        let m = median(&pps);
        let outliers = stats::outliers(&pps)
            .into_iter()
            .map(|i| i as u32 + 1)
            .collect();
        // A one-sample percentile bootstrap of the median. (It used to be the ratio of two
        // independent resamples of the same runs, scaled by the median: the runs' noise
        // counted twice, about √2 too wide; see `stats`' tests.)
        let ci = (runs.len() >= 3)
            .then(|| stats::bootstrap_interval(&pps, stats::median))
            .flatten()
            .map(|(lo, hi)| [lo, hi]);
        let stages: Vec<String> = runs
            .first()
            .map(|r| {
                r.stages
                    .iter()
                    .map(|s| s.stage.name().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let per_stage = |f: &dyn Fn(&crate::report::schema::StageReport) -> f64| {
            stages
                .iter()
                .map(|name| {
                    let v: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.stages.iter().find(|s| s.stage.name() == name))
                        .map(f)
                        .collect();
                    (name.clone(), median(&v))
                })
                .collect()
        };
        Self {
            id: p.id.clone(),
            strategy: p.strategy.clone(),
            values: p.values.clone(),
            ok: runs.iter().all(|r| r.ok),
            repeats: runs.len() as u32,
            pages: runs.first().map_or(0, |r| r.summary.pages_ok),
            wall_s: med(&|r| r.summary.wall_ms / 1e3),
            pages_per_s: m,
            pages_per_s_ci: ci,
            outlier_repeats: outliers,
            p50_page_ms: med(&|r| r.summary.page_latency.p50_ms),
            p99_page_ms: med(&|r| r.summary.page_latency.p99_ms),
            peak_rss_bytes: med(&|r| {
                r.memory
                    .peak_rss_bytes
                    .max(r.memory.peak_rss_with_children_bytes) as f64
            }) as u64,
            efficiency: med(&|r| r.summary.bottleneck.efficiency),
            stage_busy_s: per_stage(&|s| s.busy_ms / 1e3),
            stage_ms_per_page: per_stage(&|s| s.service_per_item.p50_ms),
            digest: runs
                .first()
                .map(|r| r.output.digest.chars().take(16).collect())
                .unwrap_or_default(),
        }
    }
}

/// The reports of a point's repeats already in `dir`, in order, as `load` reads them; stops
/// at the first missing or unreadable one.
pub fn existing_repeats<R>(dir: &Path, p: &Point, load: impl Fn(&Path) -> Option<R>) -> Vec<R> {
    (1..).map_while(|r| load(&repeat_path(dir, p, r))).collect()
}

/// The report of a point's repeat `r` (1-based): `points/<id>.json`, then `<id>.r2.json`, …
pub fn repeat_path(dir: &Path, p: &Point, r: u32) -> PathBuf {
    if r <= 1 {
        report_path(dir, p)
    } else {
        dir.join("points").join(format!("{}.r{r}.json", p.id))
    }
}

/// The plots of a sweep, as (file name, SVG): pages/s against p99 page latency and against
/// peak memory (one series per strategy, each point labelled with its settings), and for each
/// batch-size axis the stage's time per page against the batch size.
pub fn plots(keys: &[String], rows: &[Row]) -> Vec<(String, String)> {
    use crate::report::plot::{Chart, Series};
    let mut strategies: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
    strategies.dedup();
    let label = |r: &Row| -> String {
        r.values
            .iter()
            .map(|(k, v)| format!("{}={v}", k.strip_prefix("stages.").unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let by_strategy = |f: &dyn Fn(&Row) -> (f64, f64)| -> Vec<Series> {
        strategies
            .iter()
            .map(|s| Series {
                name: s.to_string(),
                points: rows
                    .iter()
                    .filter(|r| r.strategy == *s && r.ok)
                    .map(|r| {
                        let (x, y) = f(r);
                        (x, y, label(r))
                    })
                    .collect(),
            })
            .collect()
    };
    let mut out = vec![
        (
            "throughput_vs_p99.svg".to_string(),
            Chart {
                title: "Throughput vs p99 page latency (up and left is better)".into(),
                x_label: "p99 page latency (ms)".into(),
                y_label: "pages/s".into(),
                series: by_strategy(&|r| (r.p99_page_ms, r.pages_per_s)),
                lines: false,
            }
            .svg(),
        ),
        (
            "throughput_vs_memory.svg".to_string(),
            Chart {
                title: "Throughput vs peak memory (up and left is better)".into(),
                x_label: "peak RSS (MiB)".into(),
                y_label: "pages/s".into(),
                series: by_strategy(&|r| {
                    (r.peak_rss_bytes as f64 / (1u64 << 20) as f64, r.pages_per_s)
                }),
                lines: false,
            }
            .svg(),
        ),
    ];
    for key in keys {
        let Some(stage) = key
            .strip_prefix("stages.")
            .and_then(|k| k.strip_suffix(".batch_size"))
        else {
            continue;
        };
        // One line per strategy and setting of the other axes: one point per batch size.
        let mut series: Vec<Series> = Vec::new();
        for r in rows.iter().filter(|r| r.ok) {
            let others: Vec<String> = r
                .values
                .iter()
                .filter(|(k, _)| *k != key)
                .map(|(k, v)| format!("{}={v}", k.strip_prefix("stages.").unwrap_or(k)))
                .collect();
            let name = if others.is_empty() {
                r.strategy.clone()
            } else {
                format!("{} {}", r.strategy, others.join(" "))
            };
            let point = (
                r.values
                    .get(key)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                r.stage_ms_per_page.get(stage).copied().unwrap_or(0.0),
                String::new(),
            );
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push(point),
                None => series.push(Series {
                    name,
                    points: vec![point],
                }),
            }
        }
        out.push((
            format!("{stage}_time_vs_batch.svg"),
            Chart {
                title: format!("{stage}: service time per page vs batch size"),
                x_label: format!("{stage} batch size"),
                y_label: format!("{stage} ms per page (p50)"),
                series,
                lines: true,
            }
            .svg(),
        ));
    }
    out
}

/// Settings a person can defend: the fastest point within the limits, and the Pareto frontier
/// (no other point is at least as good on pages/s, p99 page latency and peak memory, and
/// better on one).
pub struct Recommendation<'a> {
    pub best: Option<&'a Row>,
    pub frontier: Vec<&'a Row>,
    /// Points that failed or broke a limit, with why.
    pub excluded: Vec<(&'a Row, String)>,
}

pub fn recommend(
    rows: &[Row],
    max_p99_page_ms: Option<f64>,
    max_memory_bytes: Option<u64>,
) -> Recommendation<'_> {
    let mut feasible = Vec::new();
    let mut excluded = Vec::new();
    for r in rows {
        if !r.ok {
            excluded.push((r, "had errors".to_string()));
        } else if let Some(m) = max_p99_page_ms.filter(|m| r.p99_page_ms > *m) {
            excluded.push((r, format!("p99 page {:.0} ms > {m:.0} ms", r.p99_page_ms)));
        } else if let Some(m) = max_memory_bytes.filter(|m| r.peak_rss_bytes > *m) {
            excluded.push((
                r,
                format!(
                    "peak RSS {:.0} MiB > {:.0} MiB",
                    r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
                    m as f64 / (1u64 << 20) as f64
                ),
            ));
        } else {
            feasible.push(r);
        }
    }
    let dominates = |a: &Row, b: &Row| {
        a.pages_per_s >= b.pages_per_s
            && a.p99_page_ms <= b.p99_page_ms
            && a.peak_rss_bytes <= b.peak_rss_bytes
            && (a.pages_per_s > b.pages_per_s
                || a.p99_page_ms < b.p99_page_ms
                || a.peak_rss_bytes < b.peak_rss_bytes)
    };
    let mut frontier: Vec<&Row> = feasible
        .iter()
        .copied()
        .filter(|r| !feasible.iter().any(|o| dominates(o, r)))
        .collect();
    frontier.sort_by(|a, b| b.pages_per_s.total_cmp(&a.pages_per_s));
    // The fastest; among equally fast (within 1 %, noise), the lower p99 latency.
    let best = frontier.first().map(|top| {
        frontier
            .iter()
            .copied()
            .filter(|r| r.pages_per_s >= top.pages_per_s * 0.99)
            .min_by(|a, b| a.p99_page_ms.total_cmp(&b.p99_page_ms))
            .unwrap_or(top)
    });
    Recommendation {
        best,
        frontier,
        excluded,
    }
}

/// `512MiB`, `2GiB`, `1.5G`, or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size like 2GiB or 512MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{s}`: unknown unit (use KiB, MiB or GiB)")),
    };
    Ok((n * mult) as u64)
}

/// The summary as Markdown, CSV and JSON, written into `dir`.
pub fn write_summary(dir: &Path, keys: &[String], rows: &[Row]) -> std::io::Result<()> {
    let stages: Vec<String> = rows
        .iter()
        .flat_map(|r| r.stage_busy_s.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut csv = String::from("id,strategy");
    for k in keys {
        csv.push_str(&format!(",{k}"));
    }
    csv.push_str(",ok,repeats,pages,wall_s,pages_per_s,pages_per_s_ci_low,pages_per_s_ci_high,outlier_repeats,p50_page_ms,p99_page_ms,peak_rss_bytes,efficiency");
    for s in &stages {
        csv.push_str(&format!(",{s}_busy_s,{s}_ms_per_page"));
    }
    csv.push_str(",digest\n");
    let mut md = format!(
        "| strategy | {} | runs | pages/s (95 % CI) | p50 page ms | p99 page ms | peak RSS MiB | efficiency | output |\n|---|{}---|---|---|---|---|---|---|\n",
        keys.join(" | "),
        "---|".repeat(keys.len())
    );
    for r in rows {
        let vals: Vec<String> = keys
            .iter()
            .map(|k| r.values.get(k).cloned().unwrap_or_default())
            .collect();
        csv.push_str(&format!("{},{}", r.id, r.strategy));
        for v in &vals {
            csv.push_str(&format!(",{v}"));
        }
        let (lo, hi) = r
            .pages_per_s_ci
            .map_or((String::new(), String::new()), |[a, b]| {
                (format!("{a:.4}"), format!("{b:.4}"))
            });
        let outliers: Vec<String> = r.outlier_repeats.iter().map(u32::to_string).collect();
        csv.push_str(&format!(
            ",{},{},{},{:.3},{:.4},{lo},{hi},{},{:.1},{:.1},{},{:.3}",
            r.ok,
            r.repeats,
            r.pages,
            r.wall_s,
            r.pages_per_s,
            outliers.join(" "),
            r.p50_page_ms,
            r.p99_page_ms,
            r.peak_rss_bytes,
            r.efficiency
        ));
        for s in &stages {
            csv.push_str(&format!(
                ",{:.3},{:.3}",
                r.stage_busy_s.get(s).copied().unwrap_or(0.0),
                r.stage_ms_per_page.get(s).copied().unwrap_or(0.0)
            ));
        }
        csv.push_str(&format!(",{}\n", r.digest));
        let ci = r
            .pages_per_s_ci
            .map_or(String::new(), |[a, b]| format!(" [{a:.3}, {b:.3}]"));
        let flag = if outliers.is_empty() {
            String::new()
        } else {
            format!(" outliers: run {}", outliers.join(", "))
        };
        md.push_str(&format!(
            "| {} | {} | {}{flag} | {:.3}{ci} | {:.0} | {:.0} | {:.0} | {:.2} | `{}`{} |\n",
            r.strategy,
            vals.join(" | "),
            r.repeats,
            r.pages_per_s,
            r.p50_page_ms,
            r.p99_page_ms,
            r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
            r.efficiency,
            &r.digest[..8.min(r.digest.len())],
            if r.ok { "" } else { " (errors)" }
        ));
    }
    for (name, svg) in plots(keys, rows) {
        std::fs::write(dir.join(name), svg)?;
    }
    std::fs::write(dir.join("summary.csv"), csv)?;
    std::fs::write(dir.join("summary.md"), md)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(rows).expect("rows serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"s\"\nkind = \"staged-batch\"\n[stages.ocr]\nmodel = \"null\"\n";

    #[test]
    fn axes_accept_short_keys_and_typed_values() {
        let a = Axis::parse("ocr.batch=1,4").expect("axis");
        assert_eq!(a.key, "stages.ocr.batch_size");
        assert_eq!(
            a.values,
            vec![toml::Value::Integer(1), toml::Value::Integer(4)]
        );
        let b = Axis::parse("render.dpi=100,150.5").expect("axis");
        assert_eq!(b.key, "render.dpi");
        assert_eq!(b.values[1], toml::Value::Float(150.5));
        assert!(Axis::parse("ocr.batch_size").is_err());
        assert_eq!(
            Axis::parse("workers=1,2").expect("axis").key,
            "device.workers"
        );
        assert_eq!(
            Axis::parse("threads=1").expect("axis").key,
            "device.threads"
        );
    }

    #[test]
    fn the_grid_is_every_combination_validated() {
        let axes = [
            Axis::parse("ocr.batch_size=1,4").expect("axis"),
            Axis::parse("layout.batch_size=1,2,3").expect("axis"),
        ];
        let pts = points(&[("s.toml".into(), BASE.into())], &axes).expect("points");
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[5].id, "s__layout.batch_size=3__ocr.batch_size=4");
        let plan = pts[5].plan(None).expect("valid");
        let stage = |k| plan.stage(k);
        use crate::vocab::StageKind::{Layout, Ocr};
        assert_eq!((stage(Ocr).batch_size, stage(Layout).batch_size), (4, 3));
        // The null model survives the edit; nothing else changed.
        assert_eq!(stage(Ocr).model, "null");
        // A bad value names the point and the key.
        let bad = points(
            &[("s.toml".into(), BASE.into())],
            &[Axis::parse("ocr.batch_size=0").expect("axis")],
        )
        .expect_err("batch 0");
        assert!(
            bad.contains("ocr.batch_size=0") && bad.contains("stages.ocr.batch_size"),
            "{bad}"
        );
    }

    fn row(id: &str, pages_per_s: f64, p99: f64, mib: u64) -> Row {
        Row {
            id: id.into(),
            strategy: "s".into(),
            values: BTreeMap::new(),
            ok: true,
            pages: 10,
            wall_s: 1.0,
            pages_per_s,
            repeats: 1,
            pages_per_s_ci: None,
            outlier_repeats: Vec::new(),
            p50_page_ms: p99 / 2.0,
            p99_page_ms: p99,
            peak_rss_bytes: mib << 20,
            efficiency: 1.0,
            stage_busy_s: BTreeMap::new(),
            stage_ms_per_page: BTreeMap::new(),
            digest: String::new(),
        }
    }

    #[test]
    fn recommend_picks_the_fastest_within_limits_from_the_frontier() {
        let rows = vec![
            row("fast-fat", 10.0, 900.0, 4000),
            row("balanced", 8.0, 300.0, 1000),
            row("slow-lean", 4.0, 250.0, 500),
            row("dominated", 7.0, 400.0, 1200),
            row("tie-lower-p99", 8.05, 280.0, 1100),
        ];
        let all = recommend(&rows, None, None);
        assert_eq!(all.best.map(|r| r.id.as_str()), Some("fast-fat"));
        let ids: Vec<&str> = all.frontier.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["fast-fat", "tie-lower-p99", "balanced", "slow-lean"]
        );
        // Under 2 GiB and 500 ms: two points equally fast within 1 %; the lower p99 wins.
        let limited = recommend(&rows, Some(500.0), Some(2 << 30));
        assert_eq!(limited.best.map(|r| r.id.as_str()), Some("tie-lower-p99"));
        assert_eq!(limited.excluded.len(), 1);
        assert!(limited.excluded[0].1.contains("p99"));
        assert!(recommend(&rows, Some(10.0), None).best.is_none());
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn repeats_give_medians_intervals_and_outliers() {
        let base: crate::report::schema::Report = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("results/baselines/smoke-null.json"),
            )
            .expect("the committed baseline"),
        )
        .expect("a v5 report");
        let runs: Vec<_> = [10.0, 10.2, 9.9, 10.1, 4.0]
            .iter()
            .map(|pps| {
                let mut r = base.clone();
                r.summary.pages_per_s = *pps;
                r
            })
            .collect();
        let p = &points(&[("s.toml".into(), BASE.into())], &[]).expect("points")[0];
        let row = Row::of(p, &runs);
        assert_eq!((row.repeats, row.pages_per_s), (5, 10.0));
        assert_eq!(row.outlier_repeats, vec![5]);
        let [lo, hi] = row.pages_per_s_ci.expect("an interval from 5 runs");
        assert!(lo <= 10.0 && 10.0 <= hi, "[{lo}, {hi}]");
        // An interval of the median is made of medians of resampled runs: it never leaves
        // their range. (The ratio construction gave [4, 25] here: 25 = 10 × 10/4, the
        // median times a resample's median of 10 over another's of 4, which drew the slow
        // run three times or more.)
        assert!(4.0 <= lo && hi <= 10.2, "[{lo}, {hi}]");
        let one = Row::of(p, &runs[..1]);
        assert!(one.pages_per_s_ci.is_none() && one.outlier_repeats.is_empty());
    }

    #[test]
    fn shards_split_the_points() {
        assert_eq!(parse_shard("1/3"), Ok((1, 3)));
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("x").is_err());
    }
}
