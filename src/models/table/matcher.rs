//! Table matching: OCR lines → SLANet cells → the table's HTML with text.
//!
//! A port of `rapid-table` 0.3.0's `TableMatch` (with its defaults `filter_ocr_result=True`,
//! `use_master=False`) and of the box conversion `RapidTable.get_boxes_recs` applies first;
//! both come from PaddleOCR's `ppstructure/table/matcher.py`. The rules, in order:
//!
//! 1. Each OCR quad becomes its axis-aligned bounding box grown by 1 px on every side and
//!    clamped to the crop.
//! 2. OCR boxes whose bottom lies above the top of the highest cell are dropped (titles and
//!    captions above the table).
//! 3. Each remaining OCR box goes to exactly one cell: the one with the largest IoU with the
//!    cell's axis-aligned box, ties (including "no overlap anywhere") broken by the smallest
//!    corner distance (the L1 distance of both corners plus the smaller of the two), then by
//!    the lower cell index.
//! 4. The HTML is the token sequence with each cell's OCR texts written before its `</td>` in
//!    OCR order; with several texts in a cell they are cleaned up and joined by single spaces
//!    (see [`fill_html`]); `<thead>`, `</thead>`, `<tbody>`, `</tbody>` are dropped.
//!
//! Numbers are reproduced as the reference computes them, so that near-ties resolve the same
//! way: OCR boxes in f64, cell boxes in f32, and numpy's scalar promotion in the IoU (an
//! f32 − f32 difference stays f32, a mixed one is f64; Python's `max`/`min` keep the type of
//! the operand they return).
//!
//! Where this differs from rapid_table on purpose: a table without cells matches nothing and
//! yields its bare HTML (the reference raises on the empty array).

use super::decode::TableStructure;

/// Structure tokens that `get_pred_html` filters out of the final HTML.
const DROPPED_TOKENS: [&str; 4] = ["<thead>", "</thead>", "<tbody>", "</tbody>"];
/// rapid_table wraps the tokens in these before matching (`TableStructurer.__call__`).
const HTML_OPEN: &str = "<html><body><table>";
/// Closing counterpart of [`HTML_OPEN`].
const HTML_CLOSE: &str = "</table></body></html>";
/// How far `get_boxes_recs` grows every OCR box on each side, in pixels (it pads the detector's
/// tight box so that text touching a cell border still overlaps the cell).
const OCR_BOX_MARGIN: f64 = 1.0;

/// One recognised text line, in the table crop's pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    /// Corners of the detected box, in any order (only their bounding box is used), as the
    /// OCR stage's `TextBox::points`.
    pub points: [[f32; 2]; 4],
    pub text: String,
}

impl OcrLine {
    /// A line from an axis-aligned box `[x0, y0, x1, y1]`.
    pub fn from_rect(rect: [f32; 4], text: impl Into<String>) -> Self {
        let [x0, y0, x1, y1] = rect;
        Self {
            points: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
            text: text.into(),
        }
    }
}

/// The box the matcher uses for an OCR line (`get_boxes_recs`): `[x0, y0, x1, y1]`, the
/// corners' bounding box grown by one pixel and clamped to `[0, width] × [0, height]`, in f64
/// as numpy holds it.
pub fn ocr_box(points: &[[f32; 2]; 4], crop_width: usize, crop_height: usize) -> [f64; 4] {
    let xs = points.map(|p| f64::from(p[0]));
    let ys = points.map(|p| f64::from(p[1]));
    let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
    let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
    [
        py_max(0.0, min(xs) - OCR_BOX_MARGIN),
        py_max(0.0, min(ys) - OCR_BOX_MARGIN),
        py_min(crop_width as f64, max(xs) + OCR_BOX_MARGIN),
        py_min(crop_height as f64, max(ys) + OCR_BOX_MARGIN),
    ]
}

/// Python's `max(a, b)`: `a` unless `b` is strictly greater.
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// Python's `min(a, b)`: `a` unless `b` is strictly smaller.
fn py_min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// A scalar as numpy holds it in the reference's IoU: its value and whether it is an f32
/// (a cell coordinate) or an f64 (an OCR coordinate, or anything mixed with one).
#[derive(Debug, Clone, Copy)]
struct Scalar {
    v: f64,
    f32: bool,
}

impl Scalar {
    fn f32(v: f32) -> Self {
        Self {
            v: f64::from(v),
            f32: true,
        }
    }

    fn f64(v: f64) -> Self {
        Self { v, f32: false }
    }

    /// numpy scalar arithmetic: f32 ∘ f32 is computed and rounded in f32, anything else in f64.
    fn op(self, o: Self, f: fn(f64, f64) -> f64, g: fn(f32, f32) -> f32) -> Self {
        if self.f32 && o.f32 {
            Self::f32(g(self.v as f32, o.v as f32))
        } else {
            Self::f64(f(self.v, o.v))
        }
    }

    fn sub(self, o: Self) -> Self {
        self.op(o, |a, b| a - b, |a, b| a - b)
    }

    fn mul(self, o: Self) -> Self {
        self.op(o, |a, b| a * b, |a, b| a * b)
    }

    /// Python's `max`, which returns one of its operands, type included.
    fn max(self, o: Self) -> Self {
        if o.v > self.v { o } else { self }
    }

    /// Python's `min`.
    fn min(self, o: Self) -> Self {
        if o.v < self.v { o } else { self }
    }
}

/// The axis-aligned box of a cell quad, `[min x, min y, max x, max y]` (exact in f32).
fn cell_rect(q: &[f32; 8]) -> [f32; 4] {
    let xs = [q[0], q[2], q[4], q[6]];
    let ys = [q[1], q[3], q[5], q[7]];
    let min = |v: [f32; 4]| v.into_iter().fold(f32::INFINITY, f32::min);
    let max = |v: [f32; 4]| v.into_iter().fold(f32::NEG_INFINITY, f32::max);
    [min(xs), min(ys), max(xs), max(ys)]
}

/// `distance` of the reference: the L1 distance between the two boxes' corners plus the
/// smaller of the two corners' L1 distances (so a box that shares one corner with the cell
/// scores better than one that is off by the same amount at both).
fn distance(ocr: &[f64; 4], cell: &[f32; 4]) -> f64 {
    let d = |i: usize| (f64::from(cell[i]) - ocr[i]).abs();
    let all = d(0) + d(1) + d(2) + d(3);
    let top_left = d(0) + d(1);
    let bottom_right = d(2) + d(3);
    all + py_min(top_left, bottom_right)
}

/// `compute_iou` of the reference, with its numpy scalar types (see [`Scalar`]).
fn iou(ocr: &[f64; 4], cell: &[f32; 4]) -> f64 {
    let a = ocr.map(Scalar::f64);
    let b = cell.map(Scalar::f32);
    let area_a = a[2].sub(a[0]).mul(a[3].sub(a[1]));
    let area_b = b[2].sub(b[0]).mul(b[3].sub(b[1]));
    let sum = area_a.v + area_b.v;
    // The reference's names read its boxes as (y0, x0, y1, x1); the formula is symmetric.
    let lo1 = a[1].max(b[1]);
    let hi1 = a[3].min(b[3]);
    let lo0 = a[0].max(b[0]);
    let hi0 = a[2].min(b[2]);
    if lo1.v >= hi1.v || lo0.v >= hi0.v {
        return 0.0;
    }
    let inter = hi1.sub(lo1).mul(hi0.sub(lo0));
    inter.v / (sum - inter.v)
}

/// Which OCR lines go into which cell (rules 1–3 of the module docs): for each cell in
/// `structure.cells` order, the indices into `lines` it received, ascending.
pub fn match_cells(structure: &TableStructure, lines: &[OcrLine]) -> Vec<Vec<usize>> {
    let cells: Vec<[f32; 4]> = structure.cells.iter().map(cell_rect).collect();
    let mut matched = vec![Vec::new(); cells.len()];
    let Some(top) = structure
        .cells
        .iter()
        .flat_map(|q| [q[1], q[3], q[5], q[7]])
        .reduce(f32::min)
    else {
        return matched;
    };
    for (i, line) in lines.iter().enumerate() {
        let b = ocr_box(&line.points, structure.crop_width, structure.crop_height);
        if b[1].max(b[3]) < f64::from(top) {
            continue;
        }
        // Smallest (1 - IoU, distance), first cell on ties: the reference's stable sort
        // followed by `list.index` of the winner.
        let mut best: Option<(usize, f64, f64)> = None;
        for (j, c) in cells.iter().enumerate() {
            let key = (1.0 - iou(&b, c), distance(&b, c));
            if best.is_none_or(|(_, k0, k1)| key.0 < k0 || (key.0 == k0 && key.1 < k1)) {
                best = Some((j, key.0, key.1));
            }
        }
        if let Some((j, _, _)) = best {
            matched[j].push(i);
        }
    }
    matched
}

/// The table's HTML with the OCR texts written into their cells (`get_pred_html`, rule 4).
///
/// `cell_lines[c]` are the indices into `lines` of the texts of the `c`-th cell, cells being
/// counted at each token that closes one (`</td>` or `<td></td>`). A cell with one text gets it
/// verbatim. With several, each text in turn: empty ones are skipped; one leading space is
/// removed; if it contains `<b>` its first three characters are dropped, if it contains `</b>`
/// its last four; skipped if now empty; a space is appended unless it is the cell's last text
/// or already ends in one. If the first text is exactly `<b>` the cell's content is wrapped in
/// `<b>…</b>`. (These are the reference's rules, position-blind slicing included.)
pub fn fill_html(tokens: &[String], cell_lines: &[Vec<usize>], lines: &[OcrLine]) -> String {
    let mut html = String::from(HTML_OPEN);
    let mut cell = 0;
    for tag in tokens {
        if !tag.contains("</td>") {
            if !DROPPED_TOKENS.contains(&tag.as_str()) {
                html.push_str(tag);
            }
            continue;
        }
        let merged = tag == "<td></td>";
        if merged {
            html.push_str("<td>");
        }
        if let Some(idx) = cell_lines.get(cell).filter(|v| !v.is_empty()) {
            let several = idx.len() > 1;
            let bold = several && lines[idx[0]].text == "<b>";
            if bold {
                html.push_str("<b>");
            }
            for (k, &i) in idx.iter().enumerate() {
                let mut text = lines[i].text.as_str();
                if several {
                    if text.is_empty() {
                        continue;
                    }
                    text = text.strip_prefix(' ').unwrap_or(text);
                    if text.contains("<b>") {
                        text = drop_first_chars(text, 3);
                    }
                    if text.contains("</b>") {
                        text = drop_last_chars(text, 4);
                    }
                    if text.is_empty() {
                        continue;
                    }
                    html.push_str(text);
                    if k != idx.len() - 1 && !text.ends_with(' ') {
                        html.push(' ');
                    }
                } else {
                    html.push_str(text);
                }
            }
            if bold {
                html.push_str("</b>");
            }
        }
        html.push_str(if merged { "</td>" } else { tag });
        cell += 1;
    }
    html.push_str(HTML_CLOSE);
    html
}

/// `s[n:]` in Python: without its first `n` characters (not bytes).
fn drop_first_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or("", |(i, _)| &s[i..])
}

/// `s[:-n]` in Python: without its last `n` characters (not bytes).
fn drop_last_chars(s: &str, n: usize) -> &str {
    if n == 0 {
        return s;
    }
    s.char_indices()
        .rev()
        .nth(n - 1)
        .map_or("", |(i, _)| &s[..i])
}

/// The table's final HTML: OCR lines matched into the decoded cells ([`match_cells`]) and
/// written into the structure ([`fill_html`]), as `RapidTable.__call__` returns it.
pub fn match_table(structure: &TableStructure, lines: &[OcrLine]) -> String {
    fill_html(&structure.tokens, &match_cells(structure, lines), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn quad(r: [f32; 4]) -> [f32; 8] {
        [r[0], r[1], r[2], r[1], r[2], r[3], r[0], r[3]]
    }

    /// Two cells side by side, 100 × 20 each, below a 10 px caption band.
    fn two_cells() -> TableStructure {
        TableStructure {
            tokens: strings(&[
                "<thead>",
                "<tr>",
                "<td></td>",
                "<td></td>",
                "</tr>",
                "</thead>",
            ]),
            cells: vec![
                quad([0.0, 10.0, 100.0, 30.0]),
                quad([100.0, 10.0, 200.0, 30.0]),
            ],
            score: 1.0,
            steps: 8,
            crop_width: 200,
            crop_height: 40,
        }
    }

    fn line(r: [f32; 4], text: &str) -> OcrLine {
        OcrLine::from_rect(r, text)
    }

    #[test]
    fn ocr_box_grows_and_clamps() {
        let pts = [[0.5, 2.0], [150.0, 3.0], [199.5, 39.5], [1.0, 38.0]];
        assert_eq!(ocr_box(&pts, 200, 40), [0.0, 1.0, 200.0, 40.0]);
        let pts = [[10.0, 12.0], [20.0, 12.0], [20.0, 18.0], [10.0, 18.0]];
        assert_eq!(ocr_box(&pts, 200, 40), [9.0, 11.0, 21.0, 19.0]);
    }

    #[test]
    fn iou_and_distance_follow_the_reference() {
        let cell = [0.0f32, 0.0, 10.0, 10.0];
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &cell), 1.0);
        assert_eq!(iou(&[5.0, 0.0, 15.0, 10.0], &cell), 50.0 / 150.0);
        assert_eq!(
            iou(&[10.0, 0.0, 20.0, 10.0], &cell),
            0.0,
            "touching is no overlap"
        );
        // |0-2| + |0-1| + |10-12| + |10-10| = 5, plus min(3, 2).
        assert_eq!(distance(&[2.0, 1.0, 12.0, 10.0], &cell), 7.0);
    }

    #[test]
    fn f32_cell_arithmetic_stays_f32() {
        // A cell area that is not exact in f32: the reference rounds it to f32.
        let c = [0.1f32, 0.0, 1000.3, 0.7];
        let b = c.map(Scalar::f32);
        let area = b[2].sub(b[0]).mul(b[3].sub(b[1]));
        assert!(area.f32);
        assert_eq!(area.v, f64::from((c[2] - c[0]) * (c[3] - c[1])));
        // Mixed with an OCR coordinate it is f64.
        assert!(
            Scalar::f64(0.05).max(b[0]).f32,
            "max returns the greater operand, type and all"
        );
        assert!(!Scalar::f64(0.25).max(b[0]).f32);
        assert!(!b[2].sub(Scalar::f64(0.25)).f32);
    }

    #[test]
    fn lines_go_to_the_best_overlap_and_captions_are_dropped() {
        let s = two_cells();
        let lines = [
            line([10.0, 0.0, 60.0, 7.0], "caption"), // grown bottom 8 < top 10: dropped
            line([120.0, 14.0, 180.0, 26.0], "right"),
            line([60.0, 14.0, 130.0, 26.0], "straddles, mostly left"),
            line([10.0, 14.0, 50.0, 26.0], "left"),
        ];
        assert_eq!(match_cells(&s, &lines), vec![vec![2, 3], vec![1]]);
        assert_eq!(
            match_table(&s, &lines),
            "<html><body><table><tr><td>straddles, mostly left left</td><td>right</td></tr>\
             </table></body></html>"
        );
    }

    #[test]
    fn without_overlap_the_nearest_cell_wins() {
        let s = two_cells();
        // Below both cells (y 33..37, grown 32..38): no IoU, closer to the right cell's corners.
        let lines = [line([150.0, 33.0, 190.0, 37.0], "below")];
        assert_eq!(match_cells(&s, &lines), vec![vec![], vec![0]]);
    }

    #[test]
    fn several_texts_are_cleaned_and_joined() {
        let tokens = strings(&["<tr>", "<td", " colspan=\"2\"", ">", "</td>", "</tr>"]);
        let lines = [
            line([0.0; 4], "<b>"),
            line([0.0; 4], " Head"),
            line([0.0; 4], ""),
            line([0.0; 4], "ab</b>"),
            line([0.0; 4], " "),
            line([0.0; 4], "x<b>yz "),
            line([0.0; 4], "αβ</b>γδ"),
        ];
        let html = fill_html(&tokens, &[vec![0, 1, 2, 3, 4, 5, 6]], &lines);
        assert_eq!(
            html,
            "<html><body><table><tr><td colspan=\"2\"><b>Head ab >yz αβ</</b></td></tr>\
             </table></body></html>"
        );
    }

    #[test]
    fn a_single_text_is_written_verbatim() {
        let tokens = strings(&["<tr>", "<td></td>", "<td></td>", "<td></td>", "</tr>"]);
        let lines = [line([0.0; 4], " <b>x</b> "), line([0.0; 4], "<b>")];
        let html = fill_html(&tokens, &[vec![0], vec![], vec![1]], &lines);
        assert_eq!(
            html,
            "<html><body><table><tr><td> <b>x</b> </td><td></td><td><b></td></tr>\
             </table></body></html>"
        );
    }

    #[test]
    fn no_cells_gives_the_bare_structure() {
        let mut s = two_cells();
        s.cells.clear();
        let lines = [line([10.0, 14.0, 50.0, 26.0], "lost")];
        assert_eq!(match_cells(&s, &lines), Vec::<Vec<usize>>::new());
        assert_eq!(
            match_table(&s, &lines),
            "<html><body><table><tr><td></td><td></td></tr></table></body></html>"
        );
    }

    #[test]
    fn python_slicing_counts_characters() {
        assert_eq!(drop_first_chars("αβγδ", 3), "δ");
        assert_eq!(drop_first_chars("αβ", 3), "");
        assert_eq!(drop_last_chars("αβγδε", 4), "α");
        assert_eq!(drop_last_chars("abc", 4), "");
        assert_eq!(drop_last_chars("abc", 0), "abc");
    }
}
