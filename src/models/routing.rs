//! Region routing, shared by every strategy: which stage handles which layout class, how OCR
//! lines are assigned to regions, and the reading order of a page's regions.
//!
//! - text-like classes (text, title, header, footer, reference, captions) → OCR;
//! - `table` → table structure, plus OCR for the cells' text;
//! - `figure` → the figure stage;
//! - `equation` and anything unknown → recorded as found.
//!
//! OCR lines that fall in no region (layout missed them) are kept as `text_line` regions, so
//! no recognized text is dropped; without a layout model every line is such a region.

use crate::page::{Region, TextLine};

/// Which stage handles a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Ocr,
    Table,
    Figure,
    Record,
}

/// Class of a region made from an OCR line that no layout region contains.
pub const TEXT_LINE_CLASS: &str = "text_line";

pub fn route(class: &str) -> Route {
    match class {
        "text" | "title" | "header" | "footer" | "reference" | "figure_caption"
        | "table_caption" | TEXT_LINE_CLASS => Route::Ocr,
        "table" => Route::Table,
        "figure" => Route::Figure,
        _ => Route::Record,
    }
}

/// Regions whose text OCR reads (text-like and tables).
pub fn needs_ocr(class: &str) -> bool {
    matches!(route(class), Route::Ocr | Route::Table)
}

/// The area of an `[x0, y0, x1, y1]` box (0 when it is empty or inverted).
pub(crate) fn area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// The area two boxes share.
pub(crate) fn intersection(a: [f32; 4], b: [f32; 4]) -> f32 {
    area([
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ])
}

/// A line belongs to the OCR-routed region that covers the largest share of it, if that share
/// is at least this. Half: a line straddling two regions goes to the one holding most of it;
/// one mostly outside every region stays on its own.
const MIN_LINE_OVERLAP: f32 = 0.5;

/// Page scope: assigns every line to the OCR-routed region covering most of it (see
/// [`MIN_LINE_OVERLAP`]), or to none.
pub fn assign_lines(regions: &[Region], lines: &mut [TextLine]) {
    for line in lines.iter_mut() {
        let a = area(line.bbox).max(1e-6);
        line.region = regions
            .iter()
            .enumerate()
            .filter(|(_, r)| needs_ocr(&r.class))
            .map(|(i, r)| (i, intersection(r.bbox, line.bbox) / a))
            .filter(|(_, share)| *share >= MIN_LINE_OVERLAP)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
    }
}

/// Fills each OCR-routed region's text from its lines (in the lines' order, one per row) and
/// appends a `text_line` region for every unassigned line. Lines must be in reading order.
pub fn attach_text(regions: &mut Vec<Region>, lines: &mut [TextLine]) {
    let mut texts: Vec<Vec<&str>> = vec![Vec::new(); regions.len()];
    let mut orphans = Vec::new();
    for (li, line) in lines.iter().enumerate() {
        match line.region {
            Some(r) if r < texts.len() => texts[r].push(&line.text),
            _ => orphans.push(li),
        }
    }
    for (r, t) in regions.iter_mut().zip(&texts) {
        if needs_ocr(&r.class) {
            r.text = Some(t.join("\n"));
        }
    }
    for li in orphans {
        let line = &mut lines[li];
        line.region = Some(regions.len());
        let mut r = Region::detected(TEXT_LINE_CLASS, line.bbox, line.confidence);
        r.text = Some(line.text.clone());
        regions.push(r);
    }
}

/// A region's box grown by `pad`, rounded out to whole pixels and clipped to the image; None
/// when too small to hold text.
pub fn pixel_rect(b: [f32; 4], pad: f32, w: usize, h: usize) -> Option<[usize; 4]> {
    let x0 = (b[0] - pad).floor().max(0.0) as usize;
    let y0 = (b[1] - pad).floor().max(0.0) as usize;
    let x1 = ((b[2] + pad).ceil().max(0.0) as usize).min(w);
    let y1 = ((b[3] + pad).ceil().max(0.0) as usize).min(h);
    (x1 >= x0 + 4 && y1 >= y0 + 4).then_some([x0, y0, x1, y1])
}

/// Puts regions in reading order by recursive XY-cut: split the set at the widest gap between
/// rows (then read top to bottom) or between columns (then left to right), whichever is wider;
/// on a tie columns win, because a column gutter runs the page's height while rows of two
/// columns line up only by chance. Without any gap: top-to-bottom, left-to-right. Returns the permutation applied (old indices in
/// new order), so line→region links can be remapped.
pub fn reading_order(regions: &mut Vec<Region>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..regions.len()).collect();
    xy_cut(regions, &mut order);
    let old = std::mem::take(regions);
    let mut slots: Vec<Option<Region>> = old.into_iter().map(Some).collect();
    *regions = order
        .iter()
        .map(|&i| slots[i].take().expect("a permutation uses each index once"))
        .collect();
    order
}

/// Applies a [`reading_order`] permutation to lines' region links.
pub fn remap_lines(order: &[usize], lines: &mut [TextLine]) {
    let mut new_index = vec![0usize; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    for l in lines {
        l.region = l.region.and_then(|r| new_index.get(r).copied());
    }
}

fn xy_cut(regions: &[Region], idx: &mut [usize]) {
    if idx.len() <= 1 {
        return;
    }
    // Per axis (0: columns, 1: rows), the widest gap: sort the intervals by start; a gap is
    // where the running end stops short of the next start.
    let widest = |idx: &mut [usize], axis: usize| -> Option<(usize, f32)> {
        idx.sort_by(|&a, &b| {
            regions[a].bbox[axis]
                .total_cmp(&regions[b].bbox[axis])
                .then(regions[a].bbox[1 - axis].total_cmp(&regions[b].bbox[1 - axis]))
        });
        let mut end = regions[idx[0]].bbox[axis + 2];
        let mut best: Option<(usize, f32)> = None;
        for k in 1..idx.len() {
            let start = regions[idx[k]].bbox[axis];
            if start > end && best.is_none_or(|(_, g)| start - end > g) {
                best = Some((k, start - end));
            }
            end = end.max(regions[idx[k]].bbox[axis + 2]);
        }
        best
    };
    let cols = widest(idx, 0).map(|(_, g)| g);
    let rows = widest(idx, 1).map(|(_, g)| g);
    let axis = match (cols, rows) {
        (Some(c), Some(r)) if r > c => Some(1),
        (Some(_), _) => Some(0),
        (None, Some(_)) => Some(1),
        (None, None) => None,
    };
    if let Some(axis) = axis {
        let (k, _) = widest(idx, axis).expect("a gap was found on this axis");
        let (first, second) = idx.split_at_mut(k);
        xy_cut(regions, first);
        xy_cut(regions, second);
        return;
    }
    // No clean cut (overlapping regions): top to bottom, then left to right.
    idx.sort_by(|&a, &b| {
        let (ra, rb) = (regions[a].bbox, regions[b].bbox);
        ra[1].total_cmp(&rb[1]).then(ra[0].total_cmp(&rb[0]))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(class: &str, b: [f32; 4]) -> Region {
        Region::detected(class, b, 0.9)
    }

    fn line(b: [f32; 4], t: &str) -> TextLine {
        TextLine {
            bbox: b,
            text: t.into(),
            confidence: 0.9,
            region: None,
        }
    }

    #[test]
    fn routes_by_class() {
        assert_eq!(route("title"), Route::Ocr);
        assert_eq!(route("table_caption"), Route::Ocr);
        assert_eq!(route("table"), Route::Table);
        assert_eq!(route("figure"), Route::Figure);
        assert_eq!(route("equation"), Route::Record);
        assert!(needs_ocr("table") && !needs_ocr("figure"));
    }

    #[test]
    fn a_wider_row_gap_reads_rows_first() {
        // Two figures side by side above two paragraphs side by side, far apart vertically.
        let mut regions = vec![
            r("text", [10.0, 400.0, 290.0, 500.0]),
            r("figure", [320.0, 10.0, 600.0, 200.0]),
            r("text", [320.0, 400.0, 600.0, 500.0]),
            r("figure", [10.0, 10.0, 290.0, 200.0]),
        ];
        assert_eq!(reading_order(&mut regions), vec![3, 1, 0, 2]);
    }

    #[test]
    fn two_columns_read_left_column_first() {
        // Title across the page, then two columns of two paragraphs each.
        let mut regions = vec![
            r("text", [320.0, 100.0, 600.0, 200.0]), // right top
            r("text", [10.0, 220.0, 300.0, 400.0]),  // left bottom
            r("title", [10.0, 10.0, 600.0, 60.0]),
            r("text", [10.0, 100.0, 300.0, 200.0]), // left top
            r("text", [320.0, 220.0, 600.0, 400.0]), // right bottom
        ];
        let order = reading_order(&mut regions);
        assert_eq!(order, vec![2, 3, 1, 0, 4]);
        assert_eq!(regions[0].class, "title");
    }

    #[test]
    fn lines_go_to_the_region_holding_most_of_them_and_orphans_are_kept() {
        let mut regions = vec![
            r("text", [0.0, 0.0, 100.0, 50.0]),
            r("figure", [0.0, 60.0, 100.0, 200.0]),
            r("table", [0.0, 210.0, 100.0, 300.0]),
        ];
        let mut lines = vec![
            line([5.0, 5.0, 95.0, 15.0], "first"),
            line([5.0, 40.0, 95.0, 70.0], "straddles"), // 1/3 in text, rest in the figure
            line([5.0, 220.0, 95.0, 230.0], "cell"),
            line([5.0, 20.0, 95.0, 30.0], "second"),
        ];
        assign_lines(&regions, &mut lines);
        assert_eq!(
            lines.iter().map(|l| l.region).collect::<Vec<_>>(),
            vec![Some(0), None, Some(2), Some(0)]
        );
        attach_text(&mut regions, &mut lines);
        assert_eq!(regions[0].text.as_deref(), Some("first\nsecond"));
        assert_eq!(regions[1].text, None, "figures get no OCR text");
        assert_eq!(regions[2].text.as_deref(), Some("cell"));
        assert_eq!(regions.len(), 4);
        assert_eq!(regions[3].class, TEXT_LINE_CLASS);
        assert_eq!(regions[3].text.as_deref(), Some("straddles"));
        assert_eq!(lines[1].region, Some(3));
    }

    #[test]
    fn remapping_follows_the_permutation() {
        let mut regions = vec![
            r("text", [0.0, 100.0, 10.0, 110.0]),
            r("text", [0.0, 0.0, 10.0, 10.0]),
        ];
        let mut lines = vec![line([0.0, 0.0, 1.0, 1.0], "a")];
        lines[0].region = Some(1);
        let order = reading_order(&mut regions);
        remap_lines(&order, &mut lines);
        assert_eq!(lines[0].region, Some(0));
    }
}
