//! DETR outputs → detections (transformers' `post_process_object_detection`), and Table
//! Transformer structure detections → a cell grid and HTML.

use candle_core::{Result, Tensor};

use crate::models::layers::softmax_last;

/// One kept query.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub label: usize,
    pub score: f32,
    /// [x0, y0, x1, y1] in the target size's pixels.
    pub bbox: [f32; 4],
}

/// Per image: softmax over the classes, the best real class (the last column is "no object"),
/// queries scoring above `threshold` (strictly) in query order, boxes (cx, cy, w, h) turned into
/// corners scaled by the image's target (width, height).
pub fn detections(
    logits: &Tensor,
    boxes: &Tensor,
    targets: &[(f32, f32)],
    threshold: f32,
) -> Result<Vec<Vec<Detection>>> {
    let probs = softmax_last(logits)?.to_vec3::<f32>()?;
    let boxes = boxes.to_vec3::<f32>()?;
    Ok(probs
        .iter()
        .zip(&boxes)
        .zip(targets)
        .map(|((p, b), &(tw, th))| {
            p.iter()
                .zip(b)
                .filter_map(|(q, bx)| {
                    let (label, score) = q[..q.len() - 1].iter().enumerate().fold(
                        (0, f32::MIN),
                        |(bl, bs), (i, v)| if *v > bs { (i, *v) } else { (bl, bs) },
                    );
                    (score > threshold).then(|| {
                        let (cx, cy, w, h) = (bx[0], bx[1], bx[2], bx[3]);
                        Detection {
                            label,
                            score,
                            bbox: [
                                (cx - 0.5 * w) * tw,
                                (cy - 0.5 * h) * th,
                                (cx + 0.5 * w) * tw,
                                (cy + 0.5 * h) * th,
                            ],
                        }
                    })
                })
                .collect()
        })
        .collect())
}

/// Table Transformer structure classes (microsoft/table-transformer-structure-recognition).
pub const TATR_STRUCTURE_LABELS: [&str; 6] = [
    "table",
    "table column",
    "table row",
    "table column header",
    "table projected row header",
    "table spanning cell",
];

/// A table's cell grid from structure detections: rows × columns, header rows, spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TableGrid {
    /// Row boxes, top to bottom.
    pub rows: Vec<[f32; 4]>,
    /// Column boxes, left to right.
    pub columns: Vec<[f32; 4]>,
    /// Rows inside a column header.
    pub header_rows: Vec<bool>,
    /// Merged cells: (first row, first column, row span, column span).
    pub spans: Vec<(usize, usize, usize, usize)>,
}

fn overlap_1d(a0: f32, a1: f32, b0: f32, b1: f32) -> f32 {
    (a1.min(b1) - a0.max(b0)).max(0.0)
}

/// Builds the grid from labelled boxes (`labels` index [`TATR_STRUCTURE_LABELS`]): rows and
/// columns sorted, overlapping duplicates (more than half of the smaller one) dropped, a row is
/// a header row when a column-header box covers half of its height, and a spanning cell merges
/// the grid cells it covers at least half of.
pub fn table_grid(dets: &[Detection]) -> TableGrid {
    let pick = |label: usize| -> Vec<Detection> {
        let mut v: Vec<Detection> = dets.iter().filter(|d| d.label == label).cloned().collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score));
        v
    };
    // Non-maximum suppression along one axis (rows: y, columns: x).
    let dedup = |cands: Vec<Detection>, axis: usize| -> Vec<[f32; 4]> {
        let mut kept: Vec<[f32; 4]> = Vec::new();
        for d in cands {
            let b = d.bbox;
            let clash = kept.iter().any(|k| {
                let inter = overlap_1d(b[axis], b[axis + 2], k[axis], k[axis + 2]);
                let smaller = (b[axis + 2] - b[axis]).min(k[axis + 2] - k[axis]).max(1e-6);
                inter / smaller > 0.5
            });
            if !clash {
                kept.push(b);
            }
        }
        kept.sort_by(|a, b| (a[axis] + a[axis + 2]).total_cmp(&(b[axis] + b[axis + 2])));
        kept
    };
    let rows = dedup(pick(2), 1);
    let columns = dedup(pick(1), 0);
    let headers = pick(3);
    let header_rows = rows
        .iter()
        .map(|r| {
            let h = (r[3] - r[1]).max(1e-6);
            headers
                .iter()
                .any(|c| overlap_1d(r[1], r[3], c.bbox[1], c.bbox[3]) / h >= 0.5)
        })
        .collect();
    let mut spans = Vec::new();
    for s in pick(5) {
        let b = s.bbox;
        let covered = |boxes: &[[f32; 4]], axis: usize| -> Vec<usize> {
            boxes
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    let len = (r[axis + 2] - r[axis]).max(1e-6);
                    overlap_1d(r[axis], r[axis + 2], b[axis], b[axis + 2]) / len >= 0.5
                })
                .map(|(i, _)| i)
                .collect()
        };
        let (rs, cs) = (covered(&rows, 1), covered(&columns, 0));
        if let (Some(&r0), Some(&c0)) = (rs.first(), cs.first())
            && rs.len() * cs.len() > 1
        {
            let span = (r0, c0, rs.len(), cs.len());
            // The first (highest-scoring) span wins a cell.
            let clash = spans
                .iter()
                .any(|&(r, c, nr, nc): &(usize, usize, usize, usize)| {
                    r0 < r + nr && r < r0 + rs.len() && c0 < c + nc && c < c0 + cs.len()
                });
            if !clash {
                spans.push(span);
            }
        }
    }
    TableGrid {
        rows,
        columns,
        header_rows,
        spans,
    }
}

impl TableGrid {
    /// The cell box of (row, column).
    pub fn cell(&self, r: usize, c: usize) -> [f32; 4] {
        let (row, col) = (self.rows[r], self.columns[c]);
        [col[0], row[1], col[2], row[3]]
    }

    /// HTML with the cell texts `text(r, c)` (of a span's first cell), header rows in `<thead>`.
    pub fn html(&self, text: impl Fn(usize, usize) -> String) -> String {
        let mut html = String::from("<table>");
        let nh = self.header_rows.iter().take_while(|h| **h).count();
        let span_at = |r: usize, c: usize| self.spans.iter().find(|s| s.0 == r && s.1 == c);
        let inside = |r: usize, c: usize| {
            self.spans.iter().any(|s| {
                r >= s.0 && r < s.0 + s.2 && c >= s.1 && c < s.1 + s.3 && (r, c) != (s.0, s.1)
            })
        };
        for r in 0..self.rows.len() {
            if r == 0 && nh > 0 {
                html.push_str("<thead>");
            }
            if r == nh {
                html.push_str("<tbody>");
            }
            html.push_str("<tr>");
            let tag = if r < nh { "th" } else { "td" };
            for c in 0..self.columns.len() {
                if inside(r, c) {
                    continue;
                }
                html.push('<');
                html.push_str(tag);
                if let Some(&(_, _, nr, nc)) = span_at(r, c) {
                    if nr > 1 {
                        html.push_str(&format!(" rowspan=\"{nr}\""));
                    }
                    if nc > 1 {
                        html.push_str(&format!(" colspan=\"{nc}\""));
                    }
                }
                html.push('>');
                html.push_str(&text(r, c));
                html.push_str("</");
                html.push_str(tag);
                html.push('>');
            }
            html.push_str("</tr>");
            if r + 1 == nh {
                html.push_str("</thead>");
            }
        }
        if self.rows.len() > nh {
            html.push_str("</tbody>");
        }
        html.push_str("</table>");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn detections_follow_transformers_rules() {
        let dev = Device::Cpu;
        // Two queries, two classes + no-object.
        let logits = Tensor::new(&[[[2f32, 0.0, 0.0], [0.0, 0.0, 5.0]]], &dev).expect("l");
        let boxes =
            Tensor::new(&[[[0.5f32, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]], &dev).expect("b");
        let d = detections(&logits, &boxes, &[(100.0, 50.0)], 0.5).expect("d");
        assert_eq!(d[0].len(), 1, "the no-object query is dropped");
        let x = &d[0][0];
        assert_eq!(x.label, 0);
        let p = 2f32.exp() / (2f32.exp() + 2.0);
        assert!((x.score - p).abs() < 1e-6);
        for (a, b) in x.bbox.iter().zip([40.0, 15.0, 60.0, 35.0]) {
            assert!((a - b).abs() < 1e-4, "{:?}", x.bbox);
        }
    }

    fn det(label: usize, bbox: [f32; 4]) -> Detection {
        Detection {
            label,
            score: 0.9,
            bbox,
        }
    }

    #[test]
    fn grid_html_has_header_rows_and_spans() {
        let dets = vec![
            det(2, [0.0, 0.0, 100.0, 10.0]),
            det(2, [0.0, 10.0, 100.0, 20.0]),
            det(2, [0.0, 20.0, 100.0, 30.0]),
            det(2, [0.0, 21.0, 100.0, 29.0]), // duplicate row, dropped
            det(1, [50.0, 0.0, 100.0, 30.0]),
            det(1, [0.0, 0.0, 50.0, 30.0]),
            det(3, [0.0, 0.0, 100.0, 10.0]),
            det(5, [0.0, 10.0, 100.0, 20.0]),
        ];
        let g = table_grid(&dets);
        assert_eq!(g.rows.len(), 3);
        assert_eq!(g.columns.len(), 2);
        assert_eq!(g.header_rows, vec![true, false, false]);
        assert_eq!(g.spans, vec![(1, 0, 1, 2)]);
        let html = g.html(|r, c| format!("{r}{c}"));
        assert_eq!(
            html,
            "<table><thead><tr><th>00</th><th>01</th></tr></thead><tbody>\
             <tr><td colspan=\"2\">10</td></tr><tr><td>20</td><td>21</td></tr></tbody></table>"
        );
    }
}
