//! Checking a run's extracted outputs against a reference run's (`run --check-outputs DIR`,
//! where DIR holds a reference run's `--save-outputs`): equal digests say *that* two runs
//! agree; this says *where* they do not — page, region and field, with both values.
//!
//! The listing is exact: every strategy runs the same models on the same pixels and the
//! models batch pages without mixing them, so between strategies any difference is a bug to
//! look at, not noise to tolerate. Between devices, builds or models small differences are
//! expected: the check also measures how far the outputs agree ([`super::agreement`]), and
//! `--min-agreement` lets differences within a tolerance pass. [`compare_saved`] measures the
//! same between two saved runs, for `compare`.

use std::collections::BTreeMap;
use std::path::Path;

use super::agreement::{self, Agreement};
use super::schema::{OutputAgreement, OutputCheck, OutputDifference, PageReport};
use crate::page::{PageOutput, Region};
use crate::pipeline::PageRecord;

/// Differences listed in a report at most: enough to see the pattern, bounded in size (the
/// counts cover all of them).
pub const MAX_LISTED: usize = 50;

/// Longest value shown for a field, in characters.
const MAX_VALUE_CHARS: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "{0}: not a folder of saved outputs (make one with `pipebench run … --save-outputs DIR`)"
    )]
    NotAFolder(String),
    #[error("{path}: unreadable saved outputs: {message}")]
    Unreadable { path: String, message: String },
}

/// One document's saved outputs, as `report::save_outputs` writes them.
#[derive(serde::Deserialize)]
struct SavedDocument {
    pages: Vec<SavedPage>,
}

#[derive(serde::Deserialize)]
struct SavedPage {
    page: u32,
    ok: bool,
    output: PageOutput,
}

/// One document's saved pages by 1-based page number; `None` when `dir` does not hold the
/// document.
fn read_saved(dir: &Path, doc: &str) -> Result<Option<BTreeMap<u32, SavedPage>>, CheckError> {
    let path = dir.join(doc).with_extension("json");
    let unreadable = |message: String| CheckError::Unreadable {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let doc: SavedDocument =
                serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
            Ok(Some(doc.pages.into_iter().map(|p| (p.page, p)).collect()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// Compares every record with the reference outputs saved in `dir`: exactly (every difference
/// counted, the first listed) and with tolerance (`agreement`). `min_agreement_pct` is recorded
/// for [`fails`].
pub fn check(
    dir: &Path,
    records: &[PageRecord],
    min_agreement_pct: Option<f64>,
) -> Result<OutputCheck, CheckError> {
    if !dir.is_dir() {
        return Err(CheckError::NotAFolder(dir.display().to_string()));
    }
    let mut docs: BTreeMap<&str, Option<BTreeMap<u32, SavedPage>>> = BTreeMap::new();
    for r in records {
        if !docs.contains_key(&*r.doc_id) {
            docs.insert(&r.doc_id, read_saved(dir, &r.doc_id)?);
        }
    }
    let mut sorted: Vec<&PageRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.page.global);
    let mut out = OutputCheck {
        reference: dir.display().to_string(),
        pages_compared: 0,
        pages_missing: 0,
        pages_differing: 0,
        differences_total: 0,
        differences: Vec::new(),
        agreement: None,
        min_agreement_pct,
    };
    let mut agreement = Agreement::default();
    for r in sorted {
        let reference = docs
            .get(&*r.doc_id)
            .and_then(|d| d.as_ref())
            .and_then(|pages| pages.get(&(r.page.page + 1)));
        let Some(reference) = reference else {
            out.pages_missing += 1;
            continue;
        };
        out.pages_compared += 1;
        agreement.add_page(&r.id, &reference.output, &r.output);
        let mut diffs = Vec::new();
        if reference.ok != r.ok {
            diffs.push(difference(
                None,
                "ok",
                reference.ok.to_string(),
                r.ok.to_string(),
            ));
        }
        diff_page(&reference.output, &r.output, &mut diffs);
        if !diffs.is_empty() {
            out.pages_differing += 1;
            out.differences_total += diffs.len() as u64;
            for mut d in diffs {
                if out.differences.len() < MAX_LISTED {
                    d.page = r.id.to_string();
                    out.differences.push(d);
                }
            }
        }
    }
    out.agreement = Some(agreement.finish());
    Ok(out)
}

/// Whether a check fails its run: any difference does, unless `--min-agreement` was given
/// and every agreement figure reaches it.
pub fn fails(c: &OutputCheck) -> bool {
    c.pages_differing > 0
        && match (c.min_agreement_pct, &c.agreement) {
            (Some(pct), Some(a)) => !agreement::below(a, pct).is_empty(),
            _ => true,
        }
}

/// Two runs' saved outputs compared with tolerance, page by page.
#[derive(Debug, Clone)]
pub struct SavedComparison {
    pub agreement: OutputAgreement,
    /// Pages asked for that one of the folders does not hold (not compared).
    pub pages_missing: u64,
    /// Compared pages whose outputs are not identical.
    pub pages_differing: u64,
}

/// Compares the outputs saved in `other` with those in `reference` (both written by
/// `--save-outputs`) on `pages` (a report's), in the order given.
pub fn compare_saved<'a>(
    reference: &Path,
    other: &Path,
    pages: impl IntoIterator<Item = &'a PageReport>,
) -> Result<SavedComparison, CheckError> {
    for dir in [reference, other] {
        if !dir.is_dir() {
            return Err(CheckError::NotAFolder(dir.display().to_string()));
        }
    }
    type Saved = Option<BTreeMap<u32, SavedPage>>;
    let mut docs: BTreeMap<&str, (Saved, Saved)> = BTreeMap::new();
    let mut agreement = Agreement::default();
    let (mut missing, mut differing) = (0, 0);
    for p in pages {
        let doc = p.document.as_str();
        if !docs.contains_key(doc) {
            docs.insert(doc, (read_saved(reference, doc)?, read_saved(other, doc)?));
        }
        let (a, b) = &docs[doc];
        fn get(d: &Saved, page: u32) -> Option<&SavedPage> {
            d.as_ref()?.get(&page)
        }
        match (get(a, p.page), get(b, p.page)) {
            (Some(a), Some(b)) => {
                agreement.add_page(&p.id, &a.output, &b.output);
                if a.ok != b.ok || a.output != b.output {
                    differing += 1;
                }
            }
            _ => missing += 1,
        }
    }
    Ok(SavedComparison {
        agreement: agreement.finish(),
        pages_missing: missing,
        pages_differing: differing,
    })
}

fn difference(
    region: Option<usize>,
    field: &str,
    reference: String,
    actual: String,
) -> OutputDifference {
    OutputDifference {
        page: String::new(),
        region: region.map(|i| i as u64),
        field: field.to_string(),
        reference: shorten(reference),
        actual: shorten(actual),
    }
}

/// `s`, cut to [`MAX_VALUE_CHARS`] characters with an ellipsis when longer.
pub(super) fn shorten(s: String) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        return s;
    }
    let mut t: String = s.chars().take(MAX_VALUE_CHARS - 1).collect();
    t.push('…');
    t
}

/// The differences between two outputs of one page: size, then region by region (in reading
/// order) field by field, then the text lines.
pub fn diff_page(reference: &PageOutput, actual: &PageOutput, out: &mut Vec<OutputDifference>) {
    let size = |o: &PageOutput| format!("{}×{}", o.width_px, o.height_px);
    if size(reference) != size(actual) {
        out.push(difference(None, "size", size(reference), size(actual)));
    }
    let n = reference.regions.len().max(actual.regions.len());
    for i in 0..n {
        match (reference.regions.get(i), actual.regions.get(i)) {
            (Some(a), Some(b)) => diff_region(i, a, b, out),
            (a, b) => out.push(difference(
                Some(i),
                "region",
                a.map_or("(none)".into(), describe),
                b.map_or("(none)".into(), describe),
            )),
        }
    }
    if reference.lines != actual.lines {
        let differing = reference
            .lines
            .iter()
            .zip(&actual.lines)
            .filter(|(a, b)| a != b)
            .count()
            + reference.lines.len().abs_diff(actual.lines.len());
        let first = reference
            .lines
            .iter()
            .zip(&actual.lines)
            .find(|(a, b)| a != b);
        out.push(difference(
            None,
            "lines",
            format!(
                "{} lines{}",
                reference.lines.len(),
                first.map_or(String::new(), |(a, _)| format!(
                    ", first differing: {:?}",
                    a.text
                ))
            ),
            format!(
                "{} lines, {differing} differ{}",
                actual.lines.len(),
                first.map_or(String::new(), |(_, b)| format!(", first: {:?}", b.text))
            ),
        ));
    }
}

fn describe(r: &Region) -> String {
    format!("{} at {}", r.class, bbox(&r.bbox))
}

fn bbox(b: &[f32; 4]) -> String {
    format!("[{}, {}, {}, {}]", b[0], b[1], b[2], b[3])
}

fn diff_region(i: usize, a: &Region, b: &Region, out: &mut Vec<OutputDifference>) {
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            out.push(difference(Some(i), name, x, y));
        }
    };
    field("class", a.class.clone(), b.class.clone());
    field("bbox", bbox(&a.bbox), bbox(&b.bbox));
    field(
        "confidence",
        a.confidence.to_string(),
        b.confidence.to_string(),
    );
    let opt = |s: &Option<String>| s.as_ref().map_or("(none)".into(), |t| format!("{t:?}"));
    field("text", opt(&a.text), opt(&b.text));
    field("html", opt(&a.html), opt(&b.html));
    field(
        "decoder_steps",
        format!("{:?}", a.decoder_steps),
        format!("{:?}", b.decoder_steps),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::TextLine;

    fn region(class: &str, text: &str) -> Region {
        Region {
            class: class.into(),
            bbox: [1.0, 2.0, 30.0, 40.0],
            confidence: 0.9,
            text: Some(text.into()),
            html: None,
            decoder_steps: None,
            data: None,
        }
    }

    fn page(regions: Vec<Region>) -> PageOutput {
        PageOutput {
            width_px: 100,
            height_px: 200,
            lines: regions
                .iter()
                .map(|r| TextLine {
                    bbox: r.bbox,
                    text: r.text.clone().unwrap_or_default(),
                    confidence: 0.9,
                    region: Some(0),
                })
                .collect(),
            regions,
        }
    }

    #[test]
    fn equal_pages_have_no_differences() {
        let p = page(vec![region("text", "hello"), region("title", "Intro")]);
        let mut out = Vec::new();
        diff_page(&p, &p.clone(), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn differences_name_the_region_and_field_with_both_values() {
        let a = page(vec![region("text", "hello"), region("title", "Intro")]);
        let mut b = page(vec![region("text", "hallo"), region("title", "Intro")]);
        b.regions[1].bbox[2] = 31.5;
        b.regions.push(region("figure", ""));
        let mut out = Vec::new();
        diff_page(&a, &b, &mut out);
        let fields: Vec<(Option<u64>, &str)> =
            out.iter().map(|d| (d.region, d.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (Some(0), "text"),
                (Some(1), "bbox"),
                (Some(2), "region"),
                (None, "lines")
            ]
        );
        assert_eq!(
            (out[0].reference.as_str(), out[0].actual.as_str()),
            ("\"hello\"", "\"hallo\"")
        );
        assert_eq!(out[1].actual, "[1, 2, 31.5, 40]");
        assert_eq!(out[2].reference, "(none)");
        assert!(
            out[3].actual.starts_with("2 lines, 1 differ"),
            "{}",
            out[3].actual
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let s = shorten("x".repeat(500));
        assert_eq!(s.chars().count(), MAX_VALUE_CHARS);
        assert!(s.ends_with('…'));
    }
}
