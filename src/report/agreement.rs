//! How far two runs' outputs agree, with tolerance: two runs of the same pipeline on different
//! devices (Metal and CUDA, a CPU with and without AVX-512, two candle versions) or with two
//! OCR models differ slightly, and equal digests cannot say by how much. Three figures, each
//! over every compared page:
//!
//! - **regions**: matched one to one, same class and IoU ≥ [`MATCH_IOU`], greedily by
//!   descending IoU; agreement = matched / Σ max(reference regions, other regions) per page.
//! - **characters**: the character error rate (CER) of the other run's text against the
//!   reference run's, whitespace ignored (as the OCR CER against the text layer,
//!   `report::quality`, ignores it). Text lines are matched by their boxes ([`line_groups`]):
//!   IoU ≥ [`MATCH_IOU`], or one at least half inside the other, so a line one detector split
//!   in two is compared, in reading order, with the other's whole line; each group's texts
//!   are compared by edit distance. The lines that overlap nothing fall back to reading order:
//!   each side's are joined in reading order and the two texts compared, so a line found by
//!   one run only costs all its characters. Agreement = 1 − errors / reference characters (at
//!   least 0). Pages without lines compare their regions' text the same way.
//! - **table cells**: each table region's HTML parsed into cells at (row, column) grid
//!   positions ([`table_cells`]); in tables matched as regions, a cell agrees when the other
//!   table has a cell at its position with the same text (whitespace and `<b>` ignored);
//!   agreement = agreeing cells / Σ max(reference cells, other cells) per table, tables found by
//!   one run only counting all their cells.
//!
//! The worst differences are kept, bounded: the text lines with the most character errors,
//! the regions found by one run only (largest first), the tables with the most differing
//! cells. The edit distance is `strsim`'s Levenshtein (already built for clap's suggestions,
//! so it costs no compile time).

use std::collections::{BTreeMap, HashSet};

use super::output_check::shorten;
use super::quality::{OcrText, ocr_texts};
use super::schema::{AgreementDifference, OutputAgreement};
use crate::models::routing::{area, intersection};
use crate::page::{PageOutput, Region};

/// Regions and text lines are the same object in both runs when their boxes overlap with IoU
/// ≥ 0.5: COCO's usual match threshold (AP50), loose enough for the jitter of boxes between
/// devices or detectors, tight enough that neighbouring lines or regions never match.
pub const MATCH_IOU: f32 = 0.5;

/// Worst differing text lines kept (most character errors first).
pub const MAX_WORST_TEXT: usize = 10;
/// Regions found by one run only kept (largest first).
pub const MAX_WORST_REGIONS: usize = 5;
/// Worst differing tables kept (most differing cells first).
pub const MAX_WORST_TABLES: usize = 5;

/// Rows or columns one table cell may span, at most: our models write spans of up to 20 (the
/// SLANet vocabulary's largest); a larger value is damage, not a table, and is clamped so a
/// bad attribute cannot make the grid bookkeeping huge.
const MAX_SPAN: u32 = 100;

/// What the report's `method` says about how the figures were made.
pub const METHOD: &str = "regions: one-to-one, same class, IoU >= 0.5, greedy by IoU; \
    agreement = matched / sum over pages of max(regions). characters: 1 - CER of the run \
    against the reference, whitespace ignored; lines grouped by overlap (IoU >= 0.5, or half \
    of one inside the other), the rest of each side joined in reading order; errors = \
    Levenshtein distance per group. table cells: \
    (row, column) positions from the table HTML (colspan/rowspan applied), equal text \
    (whitespace and <b> ignored); agreement = equal cells / sum over tables of max(cells)";

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when both are empty).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let inter = intersection(a, b);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// One-to-one matches between `a` and `b`: every pair that `same` accepts and whose boxes
/// overlap with IoU ≥ [`MATCH_IOU`], taken greedily by descending IoU (ties: lower indices
/// first), each item at most once. Returns `(index in a, index in b)` pairs, sorted by `a`.
pub fn match_boxes<T>(
    a: &[T],
    b: &[T],
    bbox: impl Fn(&T) -> [f32; 4],
    same: impl Fn(&T, &T) -> bool,
) -> Vec<(usize, usize)> {
    let mut candidates = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            let v = iou(bbox(x), bbox(y));
            if v >= MATCH_IOU && same(x, y) {
                candidates.push((v, i, j));
            }
        }
    }
    candidates.sort_by(|p, q| q.0.total_cmp(&p.0).then((p.1, p.2).cmp(&(q.1, q.2))));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut pairs = Vec::new();
    for (_, i, j) in candidates {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            pairs.push((i, j));
        }
    }
    pairs.sort_unstable();
    pairs
}

/// A text without its whitespace: what the character figures count.
fn visible(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Character errors of `actual` against `reference`: their edit distance, whitespace ignored.
pub fn char_errors(reference: &str, actual: &str) -> usize {
    strsim::levenshtein(&visible(reference), &visible(actual))
}

/// A table's cells: (row, column) of a cell's top-left grid slot → its text.
pub type Cells = BTreeMap<(u32, u32), String>;

/// A table's cells from the HTML our table stages write (`<table><tr><td>…</td>…</tr>…`,
/// `<th>` for header cells, `rowspan="N"` / `colspan="N"` attributes): each cell's top-left
/// grid position (row, column), counted as HTML does (a cell spanning rows takes its slots in
/// the rows below), mapped to its text without whitespace and `<b>` markup.
///
/// A small scanner, not an HTML parser, and on purpose: the cell texts are OCR output written
/// verbatim, not escaped (`a<b`, `x > y`, a stray `</`), which a conforming parser would read
/// as markup; here only our own tags are tags, and a cell's text runs to its closing tag. It
/// also spares the test build an HTML parser's compile time.
pub fn table_cells(html: &str) -> Cells {
    let mut cells = BTreeMap::new();
    let mut taken: HashSet<(u32, u32)> = HashSet::new();
    let (mut row, mut col): (Option<u32>, u32) = (None, 0);
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at..];
        let tag = |name: &str| {
            rest.strip_prefix(name)
                .is_some_and(|t| t.starts_with('>') || t.starts_with(' '))
        };
        if tag("<tr") {
            row = Some(row.map_or(0, |r| r + 1));
            col = 0;
        } else if tag("<td") || tag("<th") {
            let Some(open_end) = rest.find('>') else {
                break;
            };
            let attributes = &rest[3..open_end];
            let body = &rest[open_end + 1..];
            let close = [body.find("</td>"), body.find("</th>")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(body.len());
            let text = visible(&body[..close].replace("<b>", "").replace("</b>", ""));
            let r = *row.get_or_insert(0);
            while taken.contains(&(r, col)) {
                col += 1;
            }
            let (rows, cols) = (span(attributes, "rowspan"), span(attributes, "colspan"));
            for dr in 0..rows {
                for dc in 0..cols {
                    taken.insert((r + dr, col + dc));
                }
            }
            cells.insert((r, col), text);
            col += cols;
            rest = &body[close..];
            continue;
        }
        rest = &rest[1..];
    }
    cells
}

/// The value of `name="N"` among a cell's attributes, clamped to 1..=[`MAX_SPAN`] (1 when
/// absent or unreadable).
fn span(attributes: &str, name: &str) -> u32 {
    attributes
        .split_whitespace()
        .find_map(|a| {
            a.strip_prefix(name)?
                .strip_prefix('=')
                .map(|v| v.trim_matches('"'))
        })
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_SPAN)
}

/// Two lines are the same text when their boxes overlap with IoU ≥ [`MATCH_IOU`] or at least
/// this share of the smaller one lies inside the other: a line one detector split in two has
/// each half inside the other detector's whole line (IoU about 0.5 or less), while lines next
/// to each other overlap by a sliver if at all.
const LINE_INSIDE: f32 = 0.5;

fn same_line(a: [f32; 4], b: [f32; 4]) -> bool {
    let smaller = area(a).min(area(b));
    iou(a, b) >= MATCH_IOU || (smaller > 0.0 && intersection(a, b) >= LINE_INSIDE * smaller)
}

/// Two runs' text lines grouped by overlap (indices into each run's lines, in reading order).
#[derive(Debug, PartialEq, Eq)]
pub struct LineGroups {
    /// Connected groups of lines that overlap a line of the other run ([`same_line`]): one
    /// line and one line, or a line and the pieces another detector split it into.
    pub groups: Vec<(Vec<usize>, Vec<usize>)>,
    /// Lines of the first run that overlap nothing.
    pub rest_a: Vec<usize>,
    /// Lines of the second run that overlap nothing.
    pub rest_b: Vec<usize>,
}

/// The text lines of two runs (`a`, `b`: their boxes, in reading order) grouped by overlap.
pub fn line_groups(a: &[[f32; 4]], b: &[[f32; 4]]) -> LineGroups {
    // Union-find over a's lines (0..n) then b's (n..n + m).
    let n = a.len();
    let mut parent: Vec<usize> = (0..n + b.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut linked = vec![false; n + b.len()];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            if same_line(*x, *y) {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, n + j));
                parent[ri.max(rj)] = ri.min(rj);
                linked[i] = true;
                linked[n + j] = true;
            }
        }
    }
    let mut groups: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    let (mut rest_a, mut rest_b) = (Vec::new(), Vec::new());
    for (k, &is_linked) in linked.iter().enumerate() {
        match (is_linked, k < n) {
            (false, true) => rest_a.push(k),
            (false, false) => rest_b.push(k - n),
            (true, is_a) => {
                let g = groups.entry(root(&mut parent, k)).or_default();
                if is_a {
                    g.0.push(k);
                } else {
                    g.1.push(k - n);
                }
            }
        }
    }
    LineGroups {
        groups: groups.into_values().collect(),
        rest_a,
        rest_b,
    }
}

/// Characters of context kept before the first difference in [`excerpts`].
const EXCERPT_CONTEXT: usize = 12;

/// Two texts to show side by side: when they share a long beginning, both start a little
/// before their first difference (after `…`), so the difference is not cut off by
/// [`shorten`].
fn excerpts(a: &str, b: &str) -> (String, String) {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let skip = common.saturating_sub(EXCERPT_CONTEXT);
    if skip < 2 {
        return (a.to_string(), b.to_string());
    }
    let cut = |s: &str| format!("…{}", s.chars().skip(skip).collect::<String>());
    (cut(a), cut(b))
}

/// Agreement counts and worst differences, accumulated page by page.
#[derive(Debug, Default)]
pub struct Agreement {
    pages: u64,
    regions_reference: u64,
    regions_actual: u64,
    regions_matched: u64,
    regions_compared: u64,
    reference_chars: u64,
    char_errors: u64,
    cells_reference: u64,
    cells_actual: u64,
    cells_agreeing: u64,
    cells_compared: u64,
    worst_text: Vec<Ranked>,
    worst_regions: Vec<Ranked>,
    worst_tables: Vec<Ranked>,
}

/// A difference with its rank: larger `key` first, then earlier pages.
#[derive(Debug)]
struct Ranked {
    key: f64,
    order: (u64, usize),
    difference: AgreementDifference,
}

/// Keeps the `max` highest-ranked of `list` plus `item`.
fn keep(list: &mut Vec<Ranked>, item: Ranked, max: usize) {
    list.push(item);
    list.sort_by(|a, b| b.key.total_cmp(&a.key).then(a.order.cmp(&b.order)));
    list.truncate(max);
}

/// Where a difference is, for ranking and for the report.
struct Place<'a> {
    page: &'a str,
    /// Pages added before this one: ranks page order.
    index: u64,
}

impl Place<'_> {
    /// A difference ranked by `key` (larger first, then earlier pages and items).
    fn ranked(&self, key: f64, item: usize, difference: Difference) -> Ranked {
        let Difference {
            kind,
            region,
            reference,
            actual,
            errors,
            of,
        } = difference;
        Ranked {
            key,
            order: (self.index, item),
            difference: AgreementDifference {
                page: self.page.to_string(),
                kind: kind.to_string(),
                region: region.map(|i| i as u64),
                reference: shorten(reference),
                actual: shorten(actual),
                errors: errors as u64,
                of: of as u64,
            },
        }
    }
}

/// A difference before it is placed and shortened.
struct Difference {
    kind: &'static str,
    region: Option<usize>,
    reference: String,
    actual: String,
    errors: usize,
    of: usize,
}

/// Regions are listed with their boxes rounded to the pixel: enough to find them, unlike the
/// exact listing of `--check-outputs`, which shows every digit.
fn describe(r: &Region) -> String {
    let b = r.bbox;
    format!(
        "{} at [{:.0}, {:.0}, {:.0}, {:.0}]",
        r.class, b[0], b[1], b[2], b[3]
    )
}

/// The regions not `matched`: (index, region, `in_reference`).
fn lone<'a>(
    regions: &'a [Region],
    matched: &'a [bool],
    in_reference: bool,
) -> impl Iterator<Item = (usize, &'a Region, bool)> {
    regions
        .iter()
        .enumerate()
        .zip(matched)
        .filter(|(_, m)| !**m)
        .map(move |((i, r), _)| (i, r, in_reference))
}

/// A table region's cells (none without HTML).
fn cells_of(r: &Region) -> Cells {
    r.html.as_deref().map(table_cells).unwrap_or_default()
}

impl Agreement {
    /// Adds one page: `reference` from the reference run, `actual` from the other.
    pub fn add_page(&mut self, page: &str, reference: &PageOutput, actual: &PageOutput) {
        let place = Place {
            page,
            index: self.pages,
        };
        self.pages += 1;
        self.add_regions(&place, &reference.regions, &actual.regions);
        self.add_text(&place, reference, actual);
    }

    /// Regions matched one to one, and the cells of the tables among them.
    fn add_regions(&mut self, place: &Place<'_>, ra: &[Region], rb: &[Region]) {
        let pairs = match_boxes(ra, rb, |r| r.bbox, |x, y| x.class == y.class);
        self.regions_reference += ra.len() as u64;
        self.regions_actual += rb.len() as u64;
        self.regions_matched += pairs.len() as u64;
        self.regions_compared += ra.len().max(rb.len()) as u64;
        for &(i, j) in &pairs {
            self.add_table(place, i, &cells_of(&ra[i]), &cells_of(&rb[j]));
        }
        let (mut in_a, mut in_b) = (vec![false; ra.len()], vec![false; rb.len()]);
        for &(i, j) in &pairs {
            in_a[i] = true;
            in_b[j] = true;
        }
        for (i, r, in_reference) in lone(ra, &in_a, true).chain(lone(rb, &in_b, false)) {
            // A table found by one run only: none of its cells agree.
            let n_cells = cells_of(r).len() as u64;
            self.cells_compared += n_cells;
            if in_reference {
                self.cells_reference += n_cells;
            } else {
                self.cells_actual += n_cells;
            }
            let (here, none) = (describe(r), "(none)".to_string());
            let (reference, actual) = if in_reference {
                (here, none)
            } else {
                (none, here)
            };
            let d = Difference {
                kind: "region",
                region: Some(i),
                reference,
                actual,
                errors: 1,
                of: 1,
            };
            let item = place.ranked(f64::from(area(r.bbox)), i, d);
            keep(&mut self.worst_regions, item, MAX_WORST_REGIONS);
        }
    }

    /// The cells of a pair of matched regions (tables, or none for other regions).
    fn add_table(&mut self, place: &Place<'_>, region: usize, x: &Cells, y: &Cells) {
        let agreeing = x.iter().filter(|(k, v)| y.get(k) == Some(v)).count();
        let compared = x.len().max(y.len());
        self.cells_reference += x.len() as u64;
        self.cells_actual += y.len() as u64;
        self.cells_agreeing += agreeing as u64;
        self.cells_compared += compared as u64;
        if agreeing == compared {
            return;
        }
        // The first position (row by row) where the tables differ, with both cells.
        let at = x
            .keys()
            .chain(y.keys())
            .filter(|k| x.get(*k) != y.get(*k))
            .min()
            .copied()
            .unwrap_or_default();
        let text = |c: &Cells| c.get(&at).map_or("(none)".to_string(), |t| t.clone());
        let (tx, ty) = excerpts(&text(x), &text(y));
        let cell = |n: usize, t: &str| format!("{n} cells; r{}c{} {t:?}", at.0 + 1, at.1 + 1);
        let d = Difference {
            kind: "table",
            region: Some(region),
            reference: cell(x.len(), &tx),
            actual: cell(y.len(), &ty),
            errors: compared - agreeing,
            of: compared,
        };
        let item = place.ranked((compared - agreeing) as f64, region, d);
        keep(&mut self.worst_tables, item, MAX_WORST_TABLES);
    }

    /// Text: lines grouped by overlap, the rest in reading order.
    fn add_text(&mut self, place: &Place<'_>, reference: &PageOutput, actual: &PageOutput) {
        let (ta, tb) = (ocr_texts(reference), ocr_texts(actual));
        let boxes = |t: &[OcrText<'_>]| t.iter().map(|l| l.0).collect::<Vec<_>>();
        let LineGroups {
            groups,
            rest_a,
            rest_b,
        } = line_groups(&boxes(&ta), &boxes(&tb));
        let joined = |t: &[OcrText<'_>], idx: &[usize]| {
            idx.iter().map(|&i| t[i].1).collect::<Vec<_>>().join(" ")
        };
        let mut compared: Vec<(usize, String, String)> = groups
            .iter()
            .map(|(ia, ib)| (ia[0], joined(&ta, ia), joined(&tb, ib)))
            .collect();
        if !rest_a.is_empty() || !rest_b.is_empty() {
            let first = rest_a.first().copied().unwrap_or(usize::MAX);
            compared.push((first, joined(&ta, &rest_a), joined(&tb, &rest_b)));
        }
        for (line, r, a) in compared {
            let errors = char_errors(&r, &a);
            let of = visible(&r).chars().count();
            self.reference_chars += of as u64;
            self.char_errors += errors as u64;
            if errors > 0 {
                let (reference, actual) = excerpts(&r, &a);
                let d = Difference {
                    kind: "text",
                    region: None,
                    reference,
                    actual,
                    errors,
                    of,
                };
                let item = place.ranked(errors as f64, line, d);
                keep(&mut self.worst_text, item, MAX_WORST_TEXT);
            }
        }
    }

    /// The figures over every page added, and the worst differences (regions found by one run
    /// only, then tables, then text lines).
    pub fn finish(self) -> OutputAgreement {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        let char_agreement = if self.reference_chars == 0 {
            (self.char_errors > 0).then_some(0.0)
        } else {
            Some((1.0 - self.char_errors as f64 / self.reference_chars as f64).max(0.0))
        };
        let worst = [self.worst_regions, self.worst_tables, self.worst_text]
            .into_iter()
            .flatten()
            .map(|r| r.difference)
            .collect();
        OutputAgreement {
            method: METHOD.to_string(),
            pages_compared: self.pages,
            regions_reference: self.regions_reference,
            regions_actual: self.regions_actual,
            regions_matched: self.regions_matched,
            region_agreement: ratio(self.regions_matched, self.regions_compared),
            reference_chars: self.reference_chars,
            char_errors: self.char_errors,
            char_agreement,
            table_cells_reference: self.cells_reference,
            table_cells_actual: self.cells_actual,
            table_cells_agreeing: self.cells_agreeing,
            table_cell_agreement: ratio(self.cells_agreeing, self.cells_compared),
            worst,
        }
    }
}

/// A fraction as a percentage that never rounds up to agreement it does not have: 1 is
/// `100`, 0.99996 is `99.99` (not `100.0`), 0.9874 is `98.7`.
pub fn percent(v: f64) -> String {
    if v >= 1.0 {
        return "100".into();
    }
    let decimals = if v >= 0.999 { 2 } else { 1 };
    let scale = 10f64.powi(decimals);
    // The epsilon undoes binary noise (0.29 × 1000 = 289.999…), not real disagreement.
    let floored = ((v * 100.0 * scale) + 1e-9).floor() / scale;
    format!("{floored:.prec$}", prec = decimals as usize)
}

/// The figures as `name → fraction`, those with something to measure.
fn figures(a: &OutputAgreement) -> Vec<(&'static str, f64)> {
    [
        ("characters", a.char_agreement),
        ("regions", a.region_agreement),
        ("table cells", a.table_cell_agreement),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name, v)))
    .collect()
}

/// `outputs agree: 99.9 % of characters, 100 % of regions, 98.7 % of table cells (166 pages)`;
/// a figure with nothing to measure says so (`no text`, `no regions`, `no tables`).
pub fn headline(a: &OutputAgreement) -> String {
    let part = |v: Option<f64>, what: &str, none: &str| {
        v.map_or(none.to_string(), |v| format!("{} % of {what}", percent(v)))
    };
    format!(
        "outputs agree: {}, {}, {} ({} page{})",
        part(a.char_agreement, "characters", "no text"),
        part(a.region_agreement, "regions", "no regions"),
        part(a.table_cell_agreement, "table cells", "no tables"),
        a.pages_compared,
        if a.pages_compared == 1 { "" } else { "s" }
    )
}

/// The figures below `min_pct` percent, as `characters 97.2 %`; empty when all pass.
pub fn below(a: &OutputAgreement, min_pct: f64) -> Vec<String> {
    figures(a)
        .into_iter()
        .filter(|(_, v)| v * 100.0 < min_pct)
        .map(|(name, v)| format!("{name} {} %", percent(v)))
        .collect()
}

/// One worst difference as a line: `doc.pdf#p3 text: "Tota1" → "Total" (1 of 5 characters)`.
pub fn describe_difference(d: &AgreementDifference) -> String {
    let at = d.region.map_or(String::new(), |i| format!(" region {i}"));
    let size = match d.kind.as_str() {
        "text" => format!(" ({} of {} characters)", d.errors, d.of),
        "table" => format!(" ({} of {} cells differ)", d.errors, d.of),
        _ => String::new(),
    };
    let quote = |s: &str| {
        if d.kind == "text" {
            format!("{s:?}")
        } else {
            s.to_string()
        }
    };
    format!(
        "{}{at} {}: {} → {}{size}",
        d.page,
        d.kind,
        quote(&d.reference),
        quote(&d.actual)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::TextLine;

    fn region(class: &str, bbox: [f32; 4]) -> Region {
        Region::detected(class, bbox, 0.9)
    }

    fn line(text: &str, bbox: [f32; 4]) -> TextLine {
        TextLine {
            bbox,
            text: text.into(),
            confidence: 0.9,
            region: None,
        }
    }

    fn page(regions: Vec<Region>, lines: Vec<TextLine>) -> PageOutput {
        PageOutput {
            width_px: 100,
            height_px: 100,
            regions,
            lines,
        }
    }

    fn agreement(pages: &[(PageOutput, PageOutput)]) -> OutputAgreement {
        let mut a = Agreement::default();
        for (i, (r, o)) in pages.iter().enumerate() {
            a.add_page(&format!("doc.pdf#p{}", i + 1), r, o);
        }
        a.finish()
    }

    #[test]
    fn iou_of_hand_made_boxes() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]), 0.0);
        // Half of each: 50 / 150.
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou([0.0; 4], [0.0; 4]), 0.0);
    }

    #[test]
    fn matching_is_one_to_one_by_best_iou_and_class() {
        let a = [
            region("text", [0.0, 0.0, 10.0, 10.0]),
            region("table", [0.0, 20.0, 10.0, 30.0]),
        ];
        let b = [
            // Overlaps a[0] at IoU 0.9: taken before the worse candidate below.
            region("text", [0.0, 0.0, 10.0, 9.0]),
            region("text", [0.0, 0.0, 10.0, 8.0]),
            // Same box as a[1], other class: no match.
            region("figure", [0.0, 20.0, 10.0, 30.0]),
        ];
        let pairs = match_boxes(&a, &b, |r| r.bbox, |x, y| x.class == y.class);
        assert_eq!(pairs, vec![(0, 0)]);
        // Below the threshold: IoU 1/3.
        let c = [region("text", [5.0, 0.0, 15.0, 10.0])];
        assert!(match_boxes(&a, &c, |r| r.bbox, |x, y| x.class == y.class).is_empty());
    }

    #[test]
    fn identical_pages_agree_fully() {
        let p = page(
            vec![region("text", [0.0, 0.0, 50.0, 10.0])],
            vec![line("Hello world", [0.0, 0.0, 50.0, 10.0])],
        );
        let a = agreement(&[(p.clone(), p)]);
        assert_eq!(a.char_agreement, Some(1.0));
        assert_eq!(a.region_agreement, Some(1.0));
        assert_eq!(a.table_cell_agreement, None);
        assert!(a.worst.is_empty());
        assert_eq!(
            headline(&a),
            "outputs agree: 100 % of characters, 100 % of regions, no tables (1 page)"
        );
    }

    #[test]
    fn cer_counts_edits_of_matched_lines_and_unmatched_lines_in_full() {
        let reference = page(
            vec![],
            vec![
                line("abcd efgh", [0.0, 0.0, 90.0, 10.0]),
                line("ijkl", [0.0, 20.0, 40.0, 30.0]),
            ],
        );
        // First line shifted a little (still matched) with one substitution; second missing.
        let other = page(vec![], vec![line("abXd efgh", [1.0, 0.0, 91.0, 10.0])]);
        let a = agreement(&[(reference, other)]);
        assert_eq!((a.reference_chars, a.char_errors), (12, 5));
        assert!((a.char_agreement.expect("text") - 7.0 / 12.0).abs() < 1e-12);
        let texts: Vec<(u64, u64)> = a.worst.iter().map(|d| (d.errors, d.of)).collect();
        assert_eq!(texts, vec![(4, 4), (1, 8)], "most errors first");
    }

    #[test]
    fn lines_split_by_one_detector_are_grouped() {
        let reference = page(vec![], vec![line("Total 12.5", [0.0, 0.0, 100.0, 10.0])]);
        // One detector split the line in two: each half overlaps it at IoU 0.3 only, but lies
        // wholly inside it.
        let other = page(
            vec![],
            vec![
                line("Total", [0.0, 0.0, 30.0, 10.0]),
                line("12.5", [70.0, 0.0, 100.0, 10.0]),
            ],
        );
        let a = agreement(&[(reference, other)]);
        assert_eq!((a.reference_chars, a.char_errors), (9, 0));
    }

    #[test]
    fn line_groups_follow_overlap_and_leave_the_rest_in_reading_order() {
        let a = [
            [0.0, 0.0, 100.0, 10.0],
            [0.0, 12.0, 100.0, 22.0],
            [0.0, 50.0, 100.0, 60.0],
        ];
        let b = [
            [0.0, 0.0, 40.0, 10.0],
            // Overlaps a[0] by a sliver (a neighbour, not the same line), matches a[1].
            [0.0, 9.0, 100.0, 21.0],
            [50.0, 0.0, 100.0, 10.0],
            [0.0, 80.0, 100.0, 90.0],
        ];
        assert_eq!(
            line_groups(&a, &b),
            LineGroups {
                groups: vec![(vec![0], vec![0, 2]), (vec![1], vec![1])],
                rest_a: vec![2],
                rest_b: vec![3],
            }
        );
    }

    #[test]
    fn lines_that_overlap_nothing_fall_back_to_reading_order() {
        // The same text found at other places (a page rendered with another size): compared
        // in reading order, it agrees.
        let reference = page(
            vec![],
            vec![
                line("first", [0.0, 0.0, 50.0, 10.0]),
                line("second", [0.0, 20.0, 50.0, 30.0]),
            ],
        );
        let other = page(
            vec![],
            vec![
                line("first", [0.0, 40.0, 50.0, 50.0]),
                line("second", [0.0, 60.0, 50.0, 70.0]),
            ],
        );
        let a = agreement(&[(reference, other)]);
        assert_eq!((a.reference_chars, a.char_errors), (11, 0));
    }

    #[test]
    fn excerpts_start_near_the_first_difference() {
        let (a, b) = excerpts(
            &format!("{}abc", "x".repeat(100)),
            &format!("{}abd", "x".repeat(100)),
        );
        // 12 characters of context before the first difference.
        assert_eq!(a, format!("…{}abc", "x".repeat(10)));
        assert_eq!(b, format!("…{}abd", "x".repeat(10)));
        assert_eq!(excerpts("ab", "ac"), ("ab".to_string(), "ac".to_string()));
    }

    #[test]
    fn whitespace_is_ignored_and_agreement_never_goes_below_zero() {
        assert_eq!(char_errors("kitten", "sitting"), 3);
        assert_eq!(char_errors("a b  c", "abc"), 0);
        let a = agreement(&[(
            page(vec![], vec![line("ab", [0.0, 0.0, 10.0, 10.0])]),
            page(vec![], vec![line("xyzuvw", [0.0, 0.0, 10.0, 10.0])]),
        )]);
        assert_eq!(a.char_errors, 6);
        assert_eq!(a.char_agreement, Some(0.0));
        // Text where the reference has none: nothing agrees.
        let a = agreement(&[(
            page(vec![], vec![]),
            page(vec![], vec![line("x", [0.0, 0.0, 10.0, 10.0])]),
        )]);
        assert_eq!(a.char_agreement, Some(0.0));
    }

    #[test]
    fn regions_agree_as_matched_over_the_larger_count() {
        let reference = page(
            vec![
                region("text", [0.0, 0.0, 50.0, 10.0]),
                region("title", [0.0, 20.0, 50.0, 30.0]),
            ],
            vec![],
        );
        let other = page(
            vec![
                region("text", [0.0, 0.0, 50.0, 11.0]),
                region("text", [0.0, 20.0, 50.0, 30.0]),
                region("figure", [0.0, 40.0, 90.0, 90.0]),
            ],
            vec![],
        );
        let a = agreement(&[(reference.clone(), other), (reference.clone(), reference)]);
        // Page 1: 1 of max(2, 3); page 2: 2 of 2.
        assert_eq!(a.region_agreement, Some(3.0 / 5.0));
        assert_eq!((a.regions_reference, a.regions_actual), (4, 5));
        // Unmatched regions, largest first.
        let listed: Vec<String> = a.worst.iter().map(describe_difference).collect();
        assert_eq!(
            listed,
            vec![
                "doc.pdf#p1 region 2 region: (none) → figure at [0, 40, 90, 90]",
                "doc.pdf#p1 region 1 region: title at [0, 20, 50, 30] → (none)",
                "doc.pdf#p1 region 1 region: (none) → text at [0, 20, 50, 30]",
            ]
        );
    }

    #[test]
    fn table_cells_follow_rowspan_and_colspan() {
        let html = "<html><body><table><thead><tr><th colspan=\"2\">Head</th><th>C</th></tr>\
                    </thead><tbody><tr><td rowspan=\"2\">a</td><td> b 1 </td><td><b>c</b></td></tr>\
                    <tr><td>e</td><td>f</td></tr></tbody></table></body></html>";
        let cells = table_cells(html);
        let expected: BTreeMap<(u32, u32), String> = [
            ((0, 0), "Head"),
            ((0, 2), "C"),
            ((1, 0), "a"),
            ((1, 1), "b1"),
            ((1, 2), "c"),
            ((2, 1), "e"),
            ((2, 2), "f"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        assert_eq!(cells, expected);
    }

    #[test]
    fn cell_text_is_not_markup() {
        // OCR text is written into cells unescaped: `<`, `>` and `</` are text.
        let cells = table_cells(
            "<table><tr><td>a<b >x</td><td>Head ab >yz αβ</</td><td></td></tr></table>",
        );
        let texts: Vec<&str> = cells.values().map(String::as_str).collect();
        assert_eq!(texts, vec!["a<b>x", "Headab>yzαβ</", ""]);
        assert_eq!(span(" colspan=\"999999\"", "colspan"), MAX_SPAN);
        assert_eq!(span(" colspan=\"x\"", "colspan"), 1);
    }

    #[test]
    fn table_cells_agree_by_position_and_text() {
        let table = |html: &str| {
            let mut r = region("table", [0.0, 0.0, 90.0, 90.0]);
            r.html = Some(html.into());
            r
        };
        let reference = page(
            vec![table(
                "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>",
            )],
            vec![],
        );
        let other = page(
            vec![table(
                "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>5</td><td>6</td></tr></table>",
            )],
            vec![],
        );
        let a = agreement(&[(reference.clone(), other)]);
        assert_eq!(a.table_cell_agreement, Some(3.0 / 5.0));
        assert_eq!(
            describe_difference(&a.worst[0]),
            "doc.pdf#p1 region 0 table: 4 cells; r2c2 \"4\" → 5 cells; r2c2 \"5\" (2 of 5 cells \
             differ)"
        );
        // A table found by one run only counts all its cells.
        let a = agreement(&[(reference, page(vec![], vec![]))]);
        assert_eq!(a.table_cell_agreement, Some(0.0));
        assert_eq!(a.table_cells_reference, 4);
    }

    #[test]
    fn percentages_never_round_up_to_agreement() {
        assert_eq!(percent(1.0), "100");
        assert_eq!(percent(0.99996), "99.99");
        assert_eq!(percent(0.9874), "98.7");
        assert_eq!(percent(0.0), "0.0");
        assert_eq!(percent(0.29), "29.0");
    }

    #[test]
    fn the_gate_names_the_figures_below_it() {
        let reference = page(vec![], vec![line("abcdefghij", [0.0, 0.0, 90.0, 10.0])]);
        let other = page(vec![], vec![line("abcdefghiX", [0.0, 0.0, 90.0, 10.0])]);
        let a = agreement(&[(reference, other)]);
        assert_eq!(below(&a, 90.0), Vec::<String>::new());
        assert_eq!(below(&a, 95.0), vec!["characters 90.0 %".to_string()]);
        // Figures with nothing to measure are not judged.
        assert_eq!(a.region_agreement, None);
    }
}
