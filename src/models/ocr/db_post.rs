//! DB (differentiable binarization) post-processing: probability map → text boxes.
//!
//! A port of PaddleOCR's `DBPostProcess` in its "quad" box / "fast" score mode
//! (`ppocr/postprocess/db_postprocess.py`; PaddleOCR 3 runs the same code from PaddleX), plus
//! the two steps the OCR pipeline applies to its boxes: the reading-order sort
//! (`sorted_boxes`) and the perspective crop of each line (`get_rotate_crop_image`).
//! DB: Liao et al., "Real-time Scene Text Detection with Differentiable Binarization",
//! AAAI 2020, <https://arxiv.org/abs/1911.08947>.
//!
//! The reference leans on OpenCV (`findContours`, `minAreaRect`, `fillPoly`,
//! `warpPerspective`) and pyclipper, and truncates or rounds their float results to whole
//! pixels at several steps, so a last-bit difference moves a box by a pixel. Each piece is
//! re-implemented here for the one shape the pipeline gives it, following OpenCV 4.10 (the
//! version PaddleX pins) and pyclipper 1.3 operation by operation where the bits matter: f32
//! rotating calipers, Bresenham outlines and 16.16 fixed-point spans in `fillPoly`, Clipper's
//! integer round joins, 1/32-pixel positions and 15-bit weights in the bicubic warp. Plain
//! slices in, plain values out; no allocation per pixel.
//!
//! Where this differs from PaddleOCR 3 on purpose:
//! * corners are clipped to `[0, size - 1]` and put in `order_points_clockwise` order, as
//!   PaddleOCR 2's `TextDetector` does; PaddleX clips to `[0, size]` and keeps the
//!   `get_mini_boxes` order, which is the same order for boxes tilted less than 45°;
//! * a contour whose hull is a point or a segment is dropped outright (the reference drops it
//!   too, through `min_size`, unless `min_size <= 0`).

use std::f64::consts::PI;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Parameters and results
// ---------------------------------------------------------------------------------------------

/// Thresholds of the DB post-processing, named as in PaddleOCR's `DBPostProcess`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbParams {
    /// A pixel is text when its probability is strictly above this.
    pub thresh: f32,
    /// A candidate is kept when the mean probability inside its rectangle is at least this.
    pub box_thresh: f32,
    /// How far a box is grown: the offset distance is `area * unclip_ratio / perimeter` of the
    /// rectangle, undoing the shrink DB applied to its training targets.
    pub unclip_ratio: f32,
    /// Candidates whose minimum-area rectangle has a short side below this (model-input pixels)
    /// are dropped; after growing, the bar is `min_size + 2`.
    pub min_size: f32,
    /// At most this many contours are examined, in OpenCV's contour order (bottom of the map
    /// first), as PaddleOCR slices `contours[:max_candidates]`.
    pub max_candidates: usize,
    /// Dilate the binary map with a 2×2 kernel before looking for regions (joins regions that a
    /// one-pixel gap splits).
    pub dilate: bool,
}

impl Default for DbParams {
    /// PaddleOCR 3 / PP-OCRv5 values: `thresh` 0.3, `box_thresh` 0.6 and `unclip_ratio` 1.5 from
    /// the PP-OCRv5 det model config and the OCR pipeline config; `min_size` 3 is hard-coded in
    /// `DBPostProcess`; `max_candidates` 1000 is its default; PaddleOCR does not dilate.
    fn default() -> Self {
        Self {
            thresh: 0.3,
            box_thresh: 0.6,
            unclip_ratio: 1.5,
            min_size: 3.0,
            max_candidates: 1000,
            dilate: false,
        }
    }
}

impl DbParams {
    /// RapidOCR's detection defaults (`box_thresh` 0.5, `unclip_ratio` 1.6, dilation on); the
    /// rest as in [`DbParams::default`]. Kept for comparing against RapidOCR runs.
    pub fn rapidocr() -> Self {
        Self {
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            dilate: true,
            ..Self::default()
        }
    }
}

/// One detected text line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    /// Corners in original-image pixels (whole numbers, clipped to the image), clockwise from
    /// the top-left: top-left, top-right, bottom-right, bottom-left, chosen the way PaddleOCR's
    /// `order_points_clockwise` chooses them (smallest and largest `x + y`, then `y - x`).
    pub points: [[f32; 2]; 4],
    /// Mean probability inside the rectangle before it was grown.
    pub score: f32,
}

// ---------------------------------------------------------------------------------------------
// Probability map → boxes
// ---------------------------------------------------------------------------------------------

/// Text boxes from a DB probability map (PaddleOCR's `DBPostProcess.boxes_from_bitmap`).
///
/// `prob` is the row-major `height × width` map at the model input size; boxes come back scaled
/// to the `src_width × src_height` original image, in OpenCV's contour order (use
/// [`sort_reading_order`] for reading order).
///
/// Steps: binarize `prob > thresh` (optionally dilate 2×2); take every connected region's outer
/// border and every hole's border (OpenCV `RETR_LIST`, 8-connected foreground); for each of the
/// first `max_candidates`: minimum-area rectangle, dropped if its short side is below
/// `min_size`; score = mean probability under the filled rectangle, dropped below `box_thresh`;
/// grow the rectangle by `d = area * unclip_ratio / perimeter` with round joins as pyclipper
/// does (for a rectangle: each side moves out by `d`, rounded to whole pixels) and take the
/// minimum-area rectangle of the result, dropped if its short side is below `min_size + 2`;
/// scale, round half to even and clip to the image; order the corners.
///
/// A full 1248 × 1760 page map takes a few milliseconds in a release build.
///
/// # Panics
///
/// If `prob.len() != width * height`.
pub fn boxes_from_prob_map(
    prob: &[f32],
    width: usize,
    height: usize,
    src_width: usize,
    src_height: usize,
    params: &DbParams,
) -> Vec<TextBox> {
    assert_eq!(
        prob.len(),
        width * height,
        "DB probability map must hold width × height values"
    );
    let mut out = Vec::new();
    if width == 0 || height == 0 || src_width == 0 || src_height == 0 {
        return out;
    }
    let mut mask: Vec<u8> = prob.iter().map(|&p| u8::from(p > params.thresh)).collect();
    if params.dilate {
        dilate_2x2(&mut mask, width, height);
    }
    let contours = contour_hulls(&mask, width, height, params.max_candidates);
    let box_thresh = as_decimal_f64(params.box_thresh);
    let unclip_ratio = as_decimal_f64(params.unclip_ratio);

    // PaddleX scales by `dest / width`, a Python float; NumPy multiplies the float32 corner by it
    // in float32.
    let scale_x = (src_width as f64 / width as f64) as f32;
    let scale_y = (src_height as f64 / height as f64) as f32;
    // Scratch buffers reused across candidates.
    let mut score_mask = Vec::new();
    let mut grown_points = Vec::new();
    let mut grown_hull = Vec::new();
    for hull in contours.iter() {
        let Some(rect) = min_area_rect(hull) else {
            continue;
        };
        if rect.short_side() < params.min_size {
            continue;
        }
        let quad = mini_box_order(rect.points());
        let score = box_score_fast(prob, width, height, &quad, &mut score_mask);
        if box_thresh > score {
            continue;
        }
        unclip(&quad, unclip_ratio, &mut grown_points);
        grown_points.sort_unstable_by_key(|p| (p[1], p[0]));
        convex_hull(&grown_points, &mut grown_hull);
        // pyclipper's outline ends at its top-right vertex; OpenCV's hull of it starts after.
        let n = grown_hull.len();
        if let Some(last) = (0..n).min_by_key(|&i| (grown_hull[i][1], -grown_hull[i][0])) {
            grown_hull.rotate_left((last + 1) % n);
        }
        let Some(grown) = min_area_rect(&grown_hull) else {
            continue;
        };
        if grown.short_side() < params.min_size + 2.0 {
            continue;
        }
        let quad = mini_box_order(grown.points());
        let points = quad.map(|[x, y]| {
            [
                to_source(x, scale_x, src_width),
                to_source(y, scale_y, src_height),
            ]
        });
        out.push(TextBox {
            points: order_points_clockwise(points),
            score: score as f32,
        });
    }
    out
}

/// The f64 a Python float written like `x` holds: the reference gets its thresholds from YAML as
/// Python floats, and 1.6 as f32 widened to f64 is 1.6000000238, enough to move a grown edge
/// across a rounding boundary.
fn as_decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Scales a map coordinate to the original image: round half to even (`np.round`, Python's
/// `round`), then clip to `[0, limit - 1]` as PaddleOCR's `clip_det_res` does.
fn to_source(v: f32, scale: f32, limit: usize) -> f32 {
    let max = limit.saturating_sub(1) as f32;
    (v * scale).round_ties_even().clamp(0.0, max)
}

/// `cv2.dilate(mask, ones((2, 2)))`: the default anchor is the kernel's centre (1, 1), so each
/// pixel becomes the OR of itself and its left, upper and upper-left neighbours; pixels outside
/// the map count as background.
fn dilate_2x2(mask: &mut [u8], w: usize, h: usize) {
    // Bottom-up, so the row above is still the original when a row reads it.
    for y in (0..h).rev() {
        let (above, rest) = mask.split_at_mut(y * w);
        let row = &mut rest[..w];
        for x in (1..w).rev() {
            row[x] |= row[x - 1];
        }
        if y > 0 {
            let up = &above[(y - 1) * w..];
            row[0] |= up[0];
            for x in 1..w {
                row[x] |= up[x] | up[x - 1];
            }
        }
    }
}

/// PaddleOCR's `get_mini_boxes` corner order: sort by x, then the upper of the two leftmost is
/// first and the upper of the two rightmost second, giving top-left, top-right, bottom-right,
/// bottom-left for any rectangle tilted less than 45°.
fn mini_box_order(corners: [[f32; 2]; 4]) -> [[f32; 2]; 4] {
    let mut p = corners;
    // Stable, like Python's `sorted`.
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if p[1][1] > p[0][1] { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3][1] > p[2][1] { (2, 3) } else { (3, 2) };
    [p[i1], p[i2], p[i3], p[i4]]
}

/// PaddleOCR's `order_points_clockwise`: top-left has the smallest `x + y`, bottom-right the
/// largest (first occurrence on ties, like `np.argmin`); of the other two, top-right has the
/// smallest `y - x` and bottom-left the largest.
fn order_points_clockwise(pts: [[f32; 2]; 4]) -> [[f32; 2]; 4] {
    let sum = |i: usize| pts[i][0] + pts[i][1];
    let first_by = |cands: &[usize], key: &dyn Fn(usize) -> f32, want_max: bool| -> usize {
        let mut best = cands[0];
        for &i in &cands[1..] {
            let better = if want_max {
                key(i) > key(best)
            } else {
                key(i) < key(best)
            };
            if better {
                best = i;
            }
        }
        best
    };
    let all = [0, 1, 2, 3];
    let tl = first_by(&all, &sum, false);
    let br = first_by(&all, &sum, true);
    // `np.delete` of both indices; if they coincide only one point goes.
    let mut rest = [0usize; 3];
    let mut n = 0;
    for i in all {
        if i != tl && i != br {
            rest[n] = i;
            n += 1;
        }
    }
    let diff = |i: usize| pts[i][1] - pts[i][0];
    let tr = first_by(&rest[..n], &diff, false);
    let bl = first_by(&rest[..n], &diff, true);
    [pts[tl], pts[tr], pts[br], pts[bl]]
}

// ---------------------------------------------------------------------------------------------
// Contours (cv2.findContours, RETR_LIST, CHAIN_APPROX_SIMPLE) — as convex hulls
// ---------------------------------------------------------------------------------------------
//
// Everything downstream of `findContours` in the quad/fast path only looks at a contour through
// `minAreaRect`, which only looks at its convex hull. So instead of tracing borders pixel by
// pixel (Suzuki–Abe, as OpenCV does) this labels runs of equal pixels and builds each hull from
// run ends:
// * an outer border passes through every extreme pixel of its 8-connected region, so its hull
//   is the hull of the leftmost and rightmost pixel of each row of the region;
// * a hole (a 4-connected background region not touching the map edge) has as border the
//   foreground pixels 4-adjacent to it; their hull is the hull of the hole's runs widened by one
//   pixel left and right and shifted one row up and down.
// OpenCV lists contours in the reverse of the order its raster scan meets them: an outer border
// at the region's first pixel, a hole border at the pixel left of the hole's first pixel. The
// same order is kept here, because `max_candidates` cuts the list and it is the output order.

/// One horizontal run of equal pixels, `x0..=x1` on row `y`.
#[derive(Debug, Clone, Copy)]
struct Run {
    y: usize,
    x0: usize,
    x1: usize,
}

/// Runs of one pixel value in raster order; row `y` holds `runs[row_start[y]..row_start[y + 1]]`.
struct RunSet {
    runs: Vec<Run>,
    row_start: Vec<usize>,
}

/// Foreground and background runs of a 0/1 mask.
fn scan_runs(mask: &[u8], w: usize, h: usize) -> (RunSet, RunSet) {
    let new_set = || RunSet {
        runs: Vec::new(),
        row_start: Vec::with_capacity(h + 1),
    };
    let (mut fg, mut bg) = (new_set(), new_set());
    fg.row_start.push(0);
    bg.row_start.push(0);
    for (y, row) in mask.chunks_exact(w).enumerate() {
        let mut x0 = 0;
        while x0 < w {
            let v = row[x0];
            let len = row[x0..].iter().position(|&p| p != v).unwrap_or(w - x0);
            let run = Run {
                y,
                x0,
                x1: x0 + len - 1,
            };
            if v != 0 {
                fg.runs.push(run);
            } else {
                bg.runs.push(run);
            }
            x0 += len;
        }
        fg.row_start.push(fg.runs.len());
        bg.row_start.push(bg.runs.len());
    }
    (fg, bg)
}

impl RunSet {
    /// Component id of every run and the number of components, ids in raster order of each
    /// component's first pixel. `gap` 1 joins runs on adjacent rows that touch diagonally
    /// (8-connectivity, the foreground), `gap` 0 only runs that share an edge (4-connectivity,
    /// the background: the dual of an 8-connected foreground).
    fn label(&self, gap: usize) -> (Vec<usize>, usize) {
        let n = self.runs.len();
        let mut parent: Vec<usize> = (0..n).collect();
        for y in 1..self.row_start.len() - 1 {
            let prev_end = self.row_start[y];
            let mut first = self.row_start[y - 1];
            for j in self.row_start[y]..self.row_start[y + 1] {
                let c = self.runs[j];
                while first < prev_end && self.runs[first].x1 + gap < c.x0 {
                    first += 1;
                }
                let mut k = first;
                while k < prev_end && self.runs[k].x0 <= c.x1 + gap {
                    union(&mut parent, k, j);
                    k += 1;
                }
            }
        }
        // The root of a set is its smallest run index, which is labelled before the rest.
        let mut comp = vec![0; n];
        let mut count = 0;
        for r in 0..n {
            let root = find(&mut parent, r);
            comp[r] = if root == r {
                count += 1;
                count - 1
            } else {
                comp[root]
            };
        }
        (comp, count)
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Joins two sets, keeping the smaller index as root (so a root is its set's first run).
fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// Run indices grouped by component (counting sort, raster order kept inside a component):
/// component `c` owns `order[offsets[c]..offsets[c + 1]]`.
fn group_by_component(comp: &[usize], count: usize) -> (Vec<usize>, Vec<usize>) {
    let mut offsets = vec![0; count + 1];
    for &c in comp {
        offsets[c + 1] += 1;
    }
    for c in 0..count {
        offsets[c + 1] += offsets[c];
    }
    let mut next = offsets.clone();
    let mut order = vec![0; comp.len()];
    for (r, &c) in comp.iter().enumerate() {
        order[next[c]] = r;
        next[c] += 1;
    }
    (offsets, order)
}

/// Convex hulls of the contours, flattened: contour `i` is `points[ends[i - 1]..ends[i]]`.
struct ContourHulls {
    points: Vec<[i64; 2]>,
    ends: Vec<usize>,
}

impl ContourHulls {
    fn iter(&self) -> impl Iterator<Item = &[[i64; 2]]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let hull = &self.points[start..end];
            start = end;
            hull
        })
    }
}

/// Hulls of the first `limit` contours `cv2.findContours(mask, RETR_LIST, CHAIN_APPROX_SIMPLE)`
/// returns, in its order (see the section comment).
fn contour_hulls(mask: &[u8], w: usize, h: usize, limit: usize) -> ContourHulls {
    let (fg, bg) = scan_runs(mask, w, h);
    let (fg_comp, fg_count) = fg.label(1);
    let (bg_comp, bg_count) = bg.label(0);

    let mut touches_edge = vec![false; bg_count];
    for (run, &c) in bg.runs.iter().zip(&bg_comp) {
        if run.y == 0 || run.y + 1 == h || run.x0 == 0 || run.x1 + 1 == w {
            touches_edge[c] = true;
        }
    }
    // (raster position where OpenCV starts the border, is a hole, component)
    let mut starts: Vec<(usize, bool, usize)> = Vec::with_capacity(fg_count);
    let mut seen = 0;
    for (run, &c) in fg.runs.iter().zip(&fg_comp) {
        if c == seen {
            starts.push((run.y * w + run.x0, false, c));
            seen += 1;
        }
    }
    seen = 0;
    for (run, &c) in bg.runs.iter().zip(&bg_comp) {
        if c == seen {
            if !touches_edge[c] {
                // A hole never starts at x0 == 0: it would touch the edge.
                starts.push((run.y * w + run.x0 - 1, true, c));
            }
            seen += 1;
        }
    }
    starts.sort_unstable_by_key(|s| s.0);

    let (fg_offsets, fg_order) = group_by_component(&fg_comp, fg_count);
    let (bg_offsets, bg_order) = group_by_component(&bg_comp, bg_count);
    let mut out = ContourHulls {
        points: Vec::new(),
        ends: Vec::new(),
    };
    let mut pts: Vec<[i64; 2]> = Vec::new();
    let mut hull = Vec::new();
    for &(_, is_hole, c) in starts.iter().rev().take(limit) {
        pts.clear();
        if is_hole {
            for &r in &bg_order[bg_offsets[c]..bg_offsets[c + 1]] {
                let run = bg.runs[r];
                let (y, x0, x1) = (run.y as i64, run.x0 as i64, run.x1 as i64);
                pts.extend_from_slice(&[
                    [x0, y - 1],
                    [x1, y - 1],
                    [x0 - 1, y],
                    [x1 + 1, y],
                    [x0, y + 1],
                    [x1, y + 1],
                ]);
            }
            pts.sort_unstable_by_key(|p| (p[1], p[0]));
        } else {
            // Runs come in raster order, so the row extremes come out sorted by (y, x).
            let runs = &fg_order[fg_offsets[c]..fg_offsets[c + 1]];
            let mut i = 0;
            while i < runs.len() {
                let first = fg.runs[runs[i]];
                while i + 1 < runs.len() && fg.runs[runs[i + 1]].y == first.y {
                    i += 1;
                }
                let last = fg.runs[runs[i]];
                pts.push([first.x0 as i64, first.y as i64]);
                pts.push([last.x1 as i64, first.y as i64]);
                i += 1;
            }
        }
        convex_hull(&pts, &mut hull);
        // Where OpenCV's convexHull(clockwise=false) starts: it shifts the hull so that the
        // contour indices of its vertices run in one direction. An outer border is traced
        // against the hull's orientation from the region's first pixel, which lands last; a
        // hole border runs with it from the pixel left of the hole, which comes first if it is
        // a hull vertex, else the hole's first border pixel above it does.
        let first = (0..hull.len()).min_by_key(|&i| (hull[i][1], hull[i][0]));
        if let Some(first) = first {
            let start = if is_hole {
                let run = bg.runs[bg_order[bg_offsets[c]]];
                let left = [run.x0 as i64 - 1, run.y as i64];
                hull.iter().position(|&p| p == left).unwrap_or(first)
            } else {
                (first + 1) % hull.len()
            };
            hull.rotate_left(start);
        }
        out.points.extend_from_slice(&hull);
        out.ends.push(out.points.len());
    }
    out
}

/// `(a - o) × (b - o)`; positive for a left turn in x-right, y-down pixel coordinates read as
/// a plain plane.
fn cross3(o: [i64; 2], a: [i64; 2], b: [i64; 2]) -> i64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain) of points sorted by `(y, x)`, without collinear
/// points, oriented so consecutive edges turn left (positive signed area). Fewer than three
/// points come back for degenerate input.
fn convex_hull(sorted: &[[i64; 2]], out: &mut Vec<[i64; 2]>) {
    out.clear();
    for &p in sorted {
        while out.len() >= 2 && cross3(out[out.len() - 2], out[out.len() - 1], p) <= 0 {
            out.pop();
        }
        out.push(p);
    }
    let lower = out.len() + 1;
    for &p in sorted.iter().rev().skip(1) {
        while out.len() >= lower && cross3(out[out.len() - 2], out[out.len() - 1], p) <= 0 {
            out.pop();
        }
        out.push(p);
    }
    // The last point pushed is the first one again.
    out.pop();
    make_positive_area(out);
}

/// Reverses an integer polygon whose signed area (shoelace sum) is negative, so it winds the
/// positive way.
fn make_positive_area(poly: &mut [[i64; 2]]) {
    let n = poly.len();
    let signed2: i64 = (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    if signed2 < 0 {
        poly.reverse();
    }
}

// ---------------------------------------------------------------------------------------------
// Minimum-area rectangle (cv2.minAreaRect, cv2.boxPoints), in OpenCV's float32 arithmetic
// ---------------------------------------------------------------------------------------------
//
// The reference truncates the rectangle's float corners to integers twice (the score mask and
// pyclipper's input), so a corner OpenCV computes as 250.99997 instead of 251 moves a box by a
// pixel. These functions therefore follow OpenCV's `rotatingCalipers` operation by operation in
// f32, including which hull vertex it starts from and how it breaks ties, rather than computing
// the exact rectangle.

/// `cv::RotatedRect` as `cv2.minAreaRect` returns it.
#[derive(Debug, Clone, Copy)]
struct RotatedRect {
    center: [f32; 2],
    size: [f32; 2],
    /// Degrees.
    angle: f32,
}

impl RotatedRect {
    fn short_side(&self) -> f32 {
        self.size[0].min(self.size[1])
    }

    /// `cv2.boxPoints` (`RotatedRect::points`).
    fn points(&self) -> [[f32; 2]; 4] {
        let rad = f64::from(self.angle) * PI / 180.0;
        let b = rad.cos() as f32 * 0.5;
        let a = rad.sin() as f32 * 0.5;
        let [cx, cy] = self.center;
        let [w, h] = self.size;
        let p0 = [cx - a * h - b * w, cy + b * h - a * w];
        let p1 = [cx + a * h - b * w, cy - b * h - a * w];
        [
            p0,
            p1,
            [2.0 * cx - p0[0], 2.0 * cy - p0[1]],
            [2.0 * cx - p1[0], 2.0 * cy - p1[1]],
        ]
    }
}

/// `cv2.minAreaRect` of a convex hull given as OpenCV's `convexHull(points, clockwise=false)`
/// would list it: positive orientation in x-right, y-down coordinates, from the vertex OpenCV
/// starts at (see the callers). `None` for fewer than three vertices: a point or a segment has
/// a zero short side, which every caller drops.
///
/// The rotating calipers start axis-aligned at the lowest-y, highest-x, highest-y and lowest-x
/// vertices, turn by the smallest angle to the next hull edge at each step, and keep the last
/// rectangle of smallest area (`<=`). This is OpenCV 4.10's version, whose choice of the next
/// edge compares edge directions rather than cosines.
fn min_area_rect(hull: &[[i64; 2]]) -> Option<RotatedRect> {
    let n = hull.len();
    if n < 3 {
        return None;
    }
    let pts: Vec<[f32; 2]> = hull.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
    let mut vect = vec![[0f32; 2]; n];
    let mut inv_len = vec![0f32; n];
    let (mut left, mut bottom, mut right, mut top) = (0, 0, 0, 0);
    let mut pt0 = pts[0];
    let (mut left_x, mut right_x, mut top_y, mut bottom_y) = (pt0[0], pt0[0], pt0[1], pt0[1]);
    for i in 0..n {
        if pt0[0] < left_x {
            (left_x, left) = (pt0[0], i);
        }
        if pt0[0] > right_x {
            (right_x, right) = (pt0[0], i);
        }
        if pt0[1] > top_y {
            (top_y, top) = (pt0[1], i);
        }
        if pt0[1] < bottom_y {
            (bottom_y, bottom) = (pt0[1], i);
        }
        let pt = pts[(i + 1) % n];
        let (dx, dy) = (f64::from(pt[0] - pt0[0]), f64::from(pt[1] - pt0[1]));
        vect[i] = [dx as f32, dy as f32];
        inv_len[i] = (1.0 / (dx * dx + dy * dy).sqrt()) as f32;
        pt0 = pt;
    }
    let mut seq = [bottom, right, top, left];
    let mut min_area = f32::MAX;
    // (leftmost vertex, base_a, width, base_b, height, bottom vertex)
    let mut best = (0, 0f32, 0f32, 0f32, 0f32, 0);
    for _ in 0..n {
        // The caliper side that meets a hull edge first: its edge, turned into the frame of
        // caliper 0, is the most clockwise (exact comparisons for integer hulls).
        let turned = [
            vect[seq[0]],
            [vect[seq[1]][1], -vect[seq[1]][0]],
            [-vect[seq[2]][0], -vect[seq[2]][1]],
            [-vect[seq[3]][1], vect[seq[3]][0]],
        ];
        let mut main = 0;
        for k in 1..4 {
            let (v1, v2) = (turned[k], turned[main]);
            if v1[1] * v2[0] + -v1[0] * v2[1] < 0.0 {
                main = k;
            }
        }
        let lead = seq[main];
        let lead_x = vect[lead][0] * inv_len[lead];
        let lead_y = vect[lead][1] * inv_len[lead];
        let (base_a, base_b) = match main {
            0 => (lead_x, lead_y),
            1 => (lead_y, -lead_x),
            2 => (-lead_x, -lead_y),
            _ => (-lead_y, lead_x),
        };
        seq[main] = (seq[main] + 1) % n;

        let dx = pts[seq[1]][0] - pts[seq[3]][0];
        let dy = pts[seq[1]][1] - pts[seq[3]][1];
        let width = dx * base_a + dy * base_b;
        let dx = pts[seq[2]][0] - pts[seq[0]][0];
        let dy = pts[seq[2]][1] - pts[seq[0]][1];
        let height = -dx * base_b + dy * base_a;
        let area = width * height;
        if area <= min_area {
            min_area = area;
            best = (seq[3], base_a, width, base_b, height, seq[0]);
        }
    }
    let (left_i, a1, width, b1, height, bottom_i) = best;
    let (a2, b2) = (-b1, a1);
    let c1 = a1 * pts[left_i][0] + pts[left_i][1] * b1;
    let c2 = a2 * pts[bottom_i][0] + pts[bottom_i][1] * b2;
    let idet = 1.0 / (a1 * b2 - a2 * b1);
    let corner = [(c1 * b2 - c2 * b1) * idet, (a1 * c2 - a2 * c1) * idet];
    let side1 = [a1 * width, b1 * width];
    let side2 = [a2 * height, b2 * height];
    let length = |v: [f32; 2]| {
        (f64::from(v[0]) * f64::from(v[0]) + f64::from(v[1]) * f64::from(v[1])).sqrt() as f32
    };
    let radians = f64::from(side1[1]).atan2(f64::from(side1[0])) as f32;
    Some(RotatedRect {
        center: [
            corner[0] + (side1[0] + side2[0]) * 0.5,
            corner[1] + (side1[1] + side2[1]) * 0.5,
        ],
        size: [length(side1), length(side2)],
        angle: (f64::from(radians * 180.0) / PI) as f32,
    })
}

// ---------------------------------------------------------------------------------------------
// Box score ("fast": mean under cv2.fillPoly of the rectangle)
// ---------------------------------------------------------------------------------------------

/// PaddleOCR's `box_score_fast`: the mean of `prob` under the filled quadrilateral, inside the
/// quadrilateral's bounding window (clipped to the map). The vertices are shifted into the
/// window and truncated toward zero (`astype(np.int32)`) before filling.
fn box_score_fast(
    prob: &[f32],
    w: usize,
    h: usize,
    quad: &[[f32; 2]; 4],
    mask: &mut Vec<u8>,
) -> f64 {
    let fold = |f: fn(f32, f32) -> f32, k: usize| quad.iter().map(|p| p[k]).fold(quad[0][k], f);
    let clip = |v: f32, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clip(fold(f32::min, 0).floor(), w);
    let xmax = clip(fold(f32::max, 0).ceil(), w);
    let ymin = clip(fold(f32::min, 1).floor(), h);
    let ymax = clip(fold(f32::max, 1).ceil(), h);
    let (mw, mh) = (xmax - xmin + 1, ymax - ymin + 1);
    // The shift happens in float32, then astype(np.int32) truncates.
    let verts = quad.map(|[x, y]| [(x - xmin as f32) as i64, (y - ymin as f32) as i64]);
    mask.clear();
    mask.resize(mw * mh, 0);
    fill_poly(mask, mw, mh, &verts);

    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (row, mrow) in mask.chunks_exact(mw).enumerate() {
        let prow = &prob[(ymin + row) * w + xmin..][..mw];
        for (&p, &m) in prow.iter().zip(mrow) {
            if m != 0 {
                sum += f64::from(p);
                count += 1;
            }
        }
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// Fractional bits of OpenCV's fixed-point polygon edges (`XY_SHIFT` in drawing.cpp).
const XY_SHIFT: u32 = 16;

/// `cv2.fillPoly(img, [verts], 1)` with `LINE_8` and no sub-pixel shift, as OpenCV 4.10 draws
/// it, for one polygon of four vertices. Every edge is drawn as an 8-connected Bresenham line;
/// then each row `y0 <= y < y1` of every non-horizontal edge is filled between pairs of edges,
/// from `floor(x)` of the left edge to `floor(x)` of the right one, x in 16.16 fixed point. An
/// edge inside the image is offset by half a pixel first (so the span rounds); an edge with an
/// end outside takes its slope from the line clipped to the image, extrapolated back to the
/// vertex row, without the offset.
fn fill_poly(img: &mut [u8], w: usize, h: usize, verts: &[[i64; 2]; 4]) {
    #[derive(Clone, Copy, Default)]
    struct Edge {
        y0: i64,
        y1: i64,
        x: i64,
        dx: i64,
    }
    let (wi, hi) = (w as i64, h as i64);
    let inside = |p: [i64; 2]| (0..wi).contains(&p[0]) && (0..hi).contains(&p[1]);
    let mut edges = [Edge::default(); 4];
    let mut n_edges = 0;
    let mut prev = verts[3];
    for &cur in verts {
        draw_line(img, w, h, prev, cur);
        // Fixed-point ends the slope is taken from: (x << 16, y).
        let (mut c0, mut c1) = ([prev[0] << XY_SHIFT, prev[1]], [cur[0] << XY_SHIFT, cur[1]]);
        if inside(prev) && inside(cur) {
            c0[0] += 1 << (XY_SHIFT - 1);
            c1[0] += 1 << (XY_SHIFT - 1);
        } else {
            let (mut t0, mut t1) = (prev, cur);
            clip_line(wi, hi, &mut t0, &mut t1);
            if t0[1] != t1[1] {
                c0 = [t0[0] << XY_SHIFT, t0[1]];
                c1 = [t1[0] << XY_SHIFT, t1[1]];
            }
        }
        if prev[1] != cur[1] {
            // C integer division: truncates toward zero, as Rust's does.
            let dx = (c1[0] - c0[0]) / (c1[1] - c0[1]);
            edges[n_edges] = if prev[1] < cur[1] {
                Edge {
                    y0: prev[1],
                    y1: cur[1],
                    x: c0[0] + (prev[1] - c0[1]) * dx,
                    dx,
                }
            } else {
                Edge {
                    y0: cur[1],
                    y1: prev[1],
                    x: c1[0] + (cur[1] - c1[1]) * dx,
                    dx,
                }
            };
            n_edges += 1;
        }
        prev = cur;
    }
    let edges = &edges[..n_edges];
    if edges.len() < 2 {
        return;
    }
    let y_min = edges.iter().map(|e| e.y0).min().unwrap_or(0);
    let y_max = edges.iter().map(|e| e.y1).max().unwrap_or(0);
    for y in y_min.max(0)..y_max.min(hi) {
        let mut xs = [0i64; 4];
        let mut n = 0;
        for e in edges.iter().filter(|e| e.y0 <= y && y < e.y1) {
            xs[n] = e.x + (y - e.y0) * e.dx;
            n += 1;
        }
        let xs = &mut xs[..n];
        xs.sort_unstable();
        let row = &mut img[y as usize * w..][..w];
        for pair in xs.chunks_exact(2) {
            let (x1, x2) = (pair[0] >> XY_SHIFT, pair[1] >> XY_SHIFT);
            if x1 < wi && x2 >= 0 && x1 <= x2 {
                row[x1.max(0) as usize..=x2.min(wi - 1) as usize].fill(1);
            }
        }
    }
}

/// OpenCV's `Line` with 8-connectivity (a `LineIterator` walked left to right), after its
/// `clipLine` when an end lies outside the image.
fn draw_line(img: &mut [u8], w: usize, h: usize, mut p1: [i64; 2], mut p2: [i64; 2]) {
    let (wi, hi) = (w as i64, h as i64);
    let inside = |p: [i64; 2]| (0..wi).contains(&p[0]) && (0..hi).contains(&p[1]);
    // LineIterator clips only when an end is outside.
    let visible = (inside(p1) && inside(p2)) || clip_line(wi, hi, &mut p1, &mut p2);
    if !visible {
        return;
    }
    if p2[0] < p1[0] {
        std::mem::swap(&mut p1, &mut p2);
    }
    let dx = p2[0] - p1[0];
    let (dy, step_y) = if p2[1] < p1[1] {
        (p1[1] - p2[1], -1)
    } else {
        (p2[1] - p1[1], 1)
    };
    let steep = dy > dx;
    let (major, minor) = if steep { (dy, dx) } else { (dx, dy) };
    let mut err = major - 2 * minor;
    let [mut x, mut y] = p1;
    for _ in 0..=major {
        if inside([x, y]) {
            img[y as usize * w + x as usize] = 1;
        }
        let side_step = err < 0;
        err += -2 * minor + if side_step { 2 * major } else { 0 };
        if steep {
            y += step_y;
            x += i64::from(side_step);
        } else {
            x += 1;
            if side_step {
                y += step_y;
            }
        }
    }
}

/// OpenCV's `clipLine` (Cohen–Sutherland against `[0, w) × [0, h)`, each intersection computed
/// in f64 and truncated, as in 4.10); false when the segment misses the image.
fn clip_line(w: i64, h: i64, p1: &mut [i64; 2], p2: &mut [i64; 2]) -> bool {
    let (right, bottom) = (w - 1, h - 1);
    if w <= 0 || h <= 0 {
        return false;
    }
    let x_code = |x: i64| i32::from(x < 0) + i32::from(x > right) * 2;
    let code = |p: [i64; 2]| x_code(p[0]) + i32::from(p[1] < 0) * 4 + i32::from(p[1] > bottom) * 8;
    // (a * b / c) in double, truncated toward zero.
    let ratio = |a: i64, b: i64, c: i64| (a as f64 * b as f64 / c as f64) as i64;
    let (mut c1, mut c2) = (code(*p1), code(*p2));
    if (c1 & c2) == 0 && (c1 | c2) != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1[0] += ratio(a - p1[1], p2[0] - p1[0], p2[1] - p1[1]);
            p1[1] = a;
            c1 = x_code(p1[0]);
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2[0] += ratio(a - p2[1], p2[0] - p1[0], p2[1] - p1[1]);
            p2[1] = a;
            c2 = x_code(p2[0]);
        }
        if (c1 & c2) == 0 && (c1 | c2) != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1[1] += ratio(a - p1[0], p2[1] - p1[1], p2[0] - p1[0]);
                p1[0] = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2[1] += ratio(a - p2[0], p2[1] - p1[1], p2[0] - p1[0]);
                p2[0] = a;
                c2 = 0;
            }
        }
    }
    (c1 | c2) == 0
}

// ---------------------------------------------------------------------------------------------
// Unclip (pyclipper.PyclipperOffset, JT_ROUND, ET_CLOSEDPOLYGON)
// ---------------------------------------------------------------------------------------------

/// pyclipper's default `arc_tolerance`: round joins may fall this far (pixels) inside the true
/// arc.
const ARC_TOLERANCE: f64 = 0.25;

/// Clipper's `Round`: half away from zero, by truncating `v ± 0.5`.
fn clipper_round(v: f64) -> i64 {
    if v < 0.0 {
        (v - 0.5) as i64
    } else {
        (v + 0.5) as i64
    }
}

/// PaddleOCR's `unclip` of a rectangle: the offset distance is `area * ratio / perimeter` of
/// the float rectangle; the outline is Clipper's round-join offset of the rectangle with its
/// corners truncated to integers (pyclipper's float → int conversion), every output vertex
/// rounded to an integer. Writes the offset outline's vertices to `out` (empty when the polygon
/// degenerates). Clipper's final union only removes self-overlaps and collinear vertices, which
/// cannot change the convex hull the caller takes, so it is left out.
fn unclip(quad: &[[f32; 2]; 4], ratio: f64, out: &mut Vec<[i64; 2]>) {
    out.clear();
    // cv2.contourArea (f64 sums of f32 coordinates) and cv2.arcLength (f32 edge lengths summed
    // in f64), in their order: from the last vertex round to it.
    let mut area2 = 0.0f64;
    let mut length = 0.0f64;
    let mut prev = quad[3];
    for &p in quad {
        area2 += f64::from(prev[0]) * f64::from(p[1]) - f64::from(prev[1]) * f64::from(p[0]);
        let (dx, dy) = (p[0] - prev[0], p[1] - prev[1]);
        length += f64::from((dx * dx + dy * dy).sqrt());
        prev = p;
    }
    let delta = (area2 * 0.5).abs() * ratio / length;
    if !delta.is_finite() {
        return;
    }
    // AddPath: truncate; drop closing and consecutive duplicates; need three points.
    let src = quad.map(|[x, y]| [x as i64, y as i64]);
    let mut high = 3;
    while high > 0 && src[high] == src[0] {
        high -= 1;
    }
    let mut poly = [[0i64; 2]; 4];
    poly[0] = src[0];
    let mut len = 1;
    for &p in &src[1..=high] {
        if poly[len - 1] != p {
            poly[len] = p;
            len += 1;
        }
    }
    let poly = &mut poly[..len];
    if len < 3 {
        return;
    }
    // FixOrientations: Clipper offsets outward along (dy, -dx) for positive-area paths.
    make_positive_area(poly);
    if delta.abs() < 1e-20 {
        out.extend_from_slice(poly);
        return;
    }
    // DoOffset: arc step so that chords stay within the tolerance of the arc.
    let tolerance = if ARC_TOLERANCE > delta.abs() * 0.25 {
        delta.abs() * 0.25
    } else {
        ARC_TOLERANCE
    };
    let mut steps = PI / (1.0 - tolerance / delta.abs()).acos();
    if steps > delta.abs() * PI {
        steps = delta.abs() * PI;
    }
    let (step_sin, step_cos) = (2.0 * PI / steps).sin_cos();
    let steps_per_rad = steps / (2.0 * PI);

    let unit_normal = |a: [i64; 2], b: [i64; 2]| {
        if a == b {
            return [0.0, 0.0];
        }
        let (dx, dy) = ((b[0] - a[0]) as f64, (b[1] - a[1]) as f64);
        let f = 1.0 / (dx * dx + dy * dy).sqrt();
        [dy * f, -dx * f]
    };
    let mut normals = [[0.0f64; 2]; 4];
    for j in 0..len {
        normals[j] = unit_normal(poly[j], poly[(j + 1) % len]);
    }
    let at = |v: [i64; 2], n: [f64; 2]| {
        [
            clipper_round(v[0] as f64 + n[0] * delta),
            clipper_round(v[1] as f64 + n[1] * delta),
        ]
    };
    let mut k = len - 1;
    for j in 0..len {
        let (nk, nj, v) = (normals[k], normals[j], poly[j]);
        let mut sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        let cos_a = nk[0] * nj[0] + nk[1] * nj[1];
        if (sin_a * delta).abs() < 1.0 {
            if cos_a > 0.0 {
                // Almost straight on: one vertex.
                out.push(at(v, nk));
                k = j;
                continue;
            }
        } else {
            sin_a = sin_a.clamp(-1.0, 1.0);
        }
        if sin_a * delta < 0.0 {
            // Concave corner.
            out.push(at(v, nk));
            out.push(v);
            out.push(at(v, nj));
        } else {
            // DoRound: walk the normal from nk to nj in fixed angular steps.
            let angle = sin_a.atan2(cos_a);
            let n_steps = clipper_round(steps_per_rad * angle.abs()).max(1);
            let [mut x, mut y] = nk;
            for _ in 0..n_steps {
                out.push(at(v, [x, y]));
                (x, y) = (x * step_cos - step_sin * y, x * step_sin + y * step_cos);
            }
            out.push(at(v, nj));
        }
        k = j;
    }
}

// ---------------------------------------------------------------------------------------------
// Reading order
// ---------------------------------------------------------------------------------------------

/// Boxes whose top-left corners are closer than this vertically count as one line
/// (PaddleOCR's `sorted_boxes` constant, in original-image pixels).
const SAME_LINE_PX: f32 = 10.0;

/// PaddleOCR's `sorted_boxes`: sort by the top-left corner's (y, x), then walk each box back
/// past its predecessors while they are on the same line (top-left y within 10 px) and to its
/// right.
pub fn sort_reading_order(boxes: &mut [TextBox]) {
    boxes.sort_by(|a, b| {
        let (a, b) = (a.points[0], b.points[0]);
        a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0]))
    });
    for i in 0..boxes.len().saturating_sub(1) {
        for j in (0..=i).rev() {
            let (upper, lower) = (boxes[j].points[0], boxes[j + 1].points[0]);
            if (lower[1] - upper[1]).abs() < SAME_LINE_PX && lower[0] < upper[0] {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Perspective crop (get_rotate_crop_image)
// ---------------------------------------------------------------------------------------------

/// A borrowed 8-bit image: row `y` starts at `data[y * stride]` and holds `width` pixels of
/// `channels` interleaved bytes.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row's start to the next's (at least `width * channels`).
    pub stride: usize,
    /// Interleaved bytes per pixel.
    pub channels: usize,
    /// The pixels.
    pub data: &'a [u8],
}

/// Crop rows with height / width at or above this are turned upright by a quarter turn
/// (PaddleOCR's `get_rotate_crop_image` constant): vertical lines become horizontal ones for
/// the recognizer.
const TALL_RATIO: f64 = 1.5;

/// PaddleOCR's `get_rotate_crop_image`: warps the quadrilateral `points` (top-left, top-right,
/// bottom-right, bottom-left) onto an upright rectangle and returns `(width, height, pixels)`
/// with `img.channels` bytes per pixel, rows packed.
///
/// The size is `int(max(|p0 - p1|, |p2 - p3|)) × int(max(|p0 - p3|, |p1 - p2|))` (truncated as
/// PaddleOCR does, at least 1); the map is the perspective transform taking the points to the
/// rectangle's corners, sampled like `cv2.warpPerspective(INTER_CUBIC, BORDER_REPLICATE)`; a
/// crop at least 1.5 times taller than wide is rotated 90° counter-clockwise (`np.rot90`).
///
/// PaddleOCR 3 (`get_minarea_rect_crop`) first re-fits `cv2.minAreaRect` to the integer box and
/// crops along that rectangle's corners; for parity with it, pass those corners.
///
/// # Panics
///
/// If the image is empty or `data` is shorter than `stride`, `width` and `height` say, or if
/// the points are so far apart that the crop cannot be allocated (points inside the image, as
/// [`boxes_from_prob_map`] returns them, never are).
pub fn crop_text_line(img: &Image, points: &[[f32; 2]; 4]) -> (usize, usize, Vec<u8>) {
    let cn = img.channels;
    assert!(
        img.width > 0 && img.height > 0 && cn > 0,
        "cannot crop from an empty image"
    );
    assert!(
        img.stride >= img.width * cn
            && img.data.len() >= (img.height - 1) * img.stride + img.width * cn,
        "image data is shorter than its width, height and stride say"
    );
    // numpy computes the norms of float32 points in float32; int() truncates.
    let dist = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).hypot(a[1] - b[1]);
    let [p0, p1, p2, p3] = *points;
    let w = (dist(p0, p1).max(dist(p2, p3)) as usize).max(1);
    let h = (dist(p0, p3).max(dist(p1, p2)) as usize).max(1);

    let (wf, hf) = (w as f32, h as f32);
    let dst = [[0.0, 0.0], [wf, 0.0], [wf, hf], [0.0, hf]];
    // warpPerspective samples through the inverse of the given transform. For a degenerate
    // quadrilateral OpenCV's solver and inverse both give zeros, so every crop pixel samples
    // the image origin; that is kept rather than inventing a better answer.
    let inverse = perspective_transform(points, &dst)
        .and_then(|m| invert3(&m))
        .unwrap_or([0.0; 9]);
    let crop = warp_perspective_cubic(img, &inverse, w, h);
    if h as f64 / w as f64 >= TALL_RATIO {
        (h, w, rot90_ccw(&crop, w, h, cn))
    } else {
        (w, h, crop)
    }
}

/// `np.rot90` of a packed `w × h` image: a quarter turn counter-clockwise, giving `h × w`.
fn rot90_ccw(src: &[u8], w: usize, h: usize, cn: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    // Output row r, column c shows input row c, column w - 1 - r.
    for (r, out_row) in out.chunks_exact_mut(h * cn).enumerate() {
        for (c, px) in out_row.chunks_exact_mut(cn).enumerate() {
            let s = (c * w + (w - 1 - r)) * cn;
            px.copy_from_slice(&src[s..s + cn]);
        }
    }
    out
}

/// Pivots below this magnitude mean the system is singular (OpenCV's LU uses
/// `DBL_EPSILON * 100` for doubles).
const SINGULAR_PIVOT: f64 = f64::EPSILON * 100.0;

/// `cv2.getPerspectiveTransform`: the row-major 3×3 homography `m` (with `m[8] = 1`) taking each
/// `src[i]` to `dst[i]`, from the 8×8 linear system solved by Gaussian elimination with partial
/// pivoting, step for step as OpenCV's `LU` does it (the last bits decide where a crop pixel's
/// source position rounds to). `None` when the points are degenerate (three collinear).
fn perspective_transform(src: &[[f32; 2]; 4], dst: &[[f32; 2]; 4]) -> Option<[f64; 9]> {
    // Augmented rows: u = (m0 x + m1 y + m2) / (m6 x + m7 y + 1), likewise v. OpenCV forms the
    // products of the float points in float.
    let mut a = [[0.0f64; 9]; 8];
    for (i, (&[x, y], &[u, v])) in src.iter().zip(dst).enumerate() {
        let (xd, yd) = (f64::from(x), f64::from(y));
        let prod = |p: f32, q: f32| f64::from(-p * q);
        a[i] = [
            xd,
            yd,
            1.0,
            0.0,
            0.0,
            0.0,
            prod(x, u),
            prod(y, u),
            f64::from(u),
        ];
        a[i + 4] = [
            0.0,
            0.0,
            0.0,
            xd,
            yd,
            1.0,
            prod(x, v),
            prod(y, v),
            f64::from(v),
        ];
    }
    for col in 0..8 {
        // First row with the largest magnitude.
        let mut pivot = col;
        for row in col + 1..8 {
            if a[row][col].abs() > a[pivot][col].abs() {
                pivot = row;
            }
        }
        if a[pivot][col].abs() < SINGULAR_PIVOT {
            return None;
        }
        a.swap(col, pivot);
        let head = a[col];
        let d = -1.0 / head[col];
        for row in &mut a[col + 1..] {
            let alpha = row[col] * d;
            for (r, &h) in row[col + 1..].iter_mut().zip(&head[col + 1..]) {
                *r += alpha * h;
            }
        }
    }
    let mut m = [0.0f64; 9];
    for row in (0..8).rev() {
        let mut s = a[row][8];
        for k in row + 1..8 {
            s -= a[row][k] * m[k];
        }
        m[row] = s / a[row][row];
    }
    m[8] = 1.0;
    Some(m)
}

/// Inverse of a row-major 3×3 matrix by cofactors (what `cv::invert` does for 3×3); `None` when
/// singular.
fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
        + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let d = 1.0 / det;
    Some([
        (m[4] * m[8] - m[5] * m[7]) * d,
        (m[2] * m[7] - m[1] * m[8]) * d,
        (m[1] * m[5] - m[2] * m[4]) * d,
        (m[5] * m[6] - m[3] * m[8]) * d,
        (m[0] * m[8] - m[2] * m[6]) * d,
        (m[2] * m[3] - m[0] * m[5]) * d,
        (m[3] * m[7] - m[4] * m[6]) * d,
        (m[1] * m[6] - m[0] * m[7]) * d,
        (m[0] * m[4] - m[1] * m[3]) * d,
    ])
}

/// OpenCV's sub-pixel resolution for remapping (`INTER_BITS`): source positions are rounded to
/// 1/32 pixel and the weights come from a 32 × 32 table.
const INTER_BITS: u32 = 5;
/// `1 << INTER_BITS` (`INTER_TAB_SIZE`).
const INTER_TAB_SIZE: i32 = 1 << INTER_BITS;
/// Fractional bits of OpenCV's fixed-point interpolation weights for 8-bit images
/// (`INTER_REMAP_COEF_BITS`).
const COEF_BITS: u32 = 15;
/// Side of the pixel blocks `warpPerspective` maps at a time (`BLOCK_SZ` in imgwarp.cpp).
const BLOCK_SZ: usize = 32;
/// OpenCV's bicubic kernel parameter (`A` in `interpolateCubic`, Keys' a = -0.75).
const CUBIC_A: f32 = -0.75;

/// OpenCV's `interpolateCubic`: the four tap weights at fraction `x`, in f32 as OpenCV does.
fn cubic_coeffs(x: f32) -> [f32; 4] {
    let a = CUBIC_A;
    let c0 = ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a;
    let c1 = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let c2 = ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// OpenCV's fixed-point bicubic table (`initInterTab2D`): for each of the 32 × 32 sub-pixel
/// positions (row = y fraction, column = x fraction), 16 weights (4 rows of 4 taps) rounded to
/// 15 bits, with the rounding error pushed into one of the central four so they sum to exactly
/// `1 << 15` and flat areas stay flat.
fn bicubic_table() -> &'static [[i32; 16]] {
    static TABLE: OnceLock<Vec<[i32; 16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let one = 1i32 << COEF_BITS;
        let taps: Vec<[f32; 4]> = (0..INTER_TAB_SIZE)
            .map(|i| cubic_coeffs(i as f32 * (1.0 / INTER_TAB_SIZE as f32)))
            .collect();
        let mut table = Vec::with_capacity(taps.len() * taps.len());
        for ty in &taps {
            for tx in &taps {
                let mut w = [0i32; 16];
                for (k, wk) in w.iter_mut().enumerate() {
                    let v = ty[k / 4] * tx[k % 4];
                    // saturate_cast<short>(float): round half to even.
                    *wk = (v * one as f32)
                        .round_ties_even()
                        .clamp(f32::from(i16::MIN), f32::from(i16::MAX))
                        as i32;
                }
                let diff = w.iter().sum::<i32>() - one;
                if diff != 0 {
                    // Smallest and largest of the central 2 × 2 (first found wins).
                    let (mut lo, mut hi) = (10, 10);
                    for k in [10, 11, 14, 15] {
                        if w[k] < w[lo] {
                            lo = k;
                        } else if w[k] > w[hi] {
                            hi = k;
                        }
                    }
                    if diff < 0 {
                        w[hi] -= diff;
                    } else {
                        w[lo] -= diff;
                    }
                }
                table.push(w);
            }
        }
        table
    })
}

/// `cv2.warpPerspective(img, M, (w, h), flags=INTER_CUBIC, borderMode=BORDER_REPLICATE)` given
/// `inverse` = M⁻¹ (destination → source), for 8-bit images: each destination pixel's source
/// position is rounded to 1/32 pixel, then 4 × 4 source pixels (clamped to the image) are
/// weighted from [`bicubic_table`] and the sum rounded back from 15 fractional bits.
fn warp_perspective_cubic(img: &Image, inverse: &[f64; 9], w: usize, h: usize) -> Vec<u8> {
    let cn = img.channels;
    let table = bicubic_table();
    let (max_x, max_y) = (img.width as i64 - 1, img.height as i64 - 1);
    let mut out = vec![0u8; w * h * cn];
    let mut acc = vec![0i32; cn];
    let tab_scale = f64::from(INTER_TAB_SIZE);
    // OpenCV maps the destination in blocks of about 32 × 32 pixels and computes each row's
    // start at the block's first column; the sums round differently from a per-pixel formula,
    // so the block width is kept.
    let block_h = (BLOCK_SZ / 2).min(h).max(1);
    let block_w = (BLOCK_SZ * BLOCK_SZ / block_h).min(w).max(1);
    for (y, out_row) in out.chunks_exact_mut(w * cn).enumerate() {
        let yf = y as f64;
        for (x, px) in out_row.chunks_exact_mut(cn).enumerate() {
            let xb = (x - x % block_w) as f64;
            let x0 = inverse[0] * xb + inverse[1] * yf + inverse[2];
            let y0 = inverse[3] * xb + inverse[4] * yf + inverse[5];
            let w0 = inverse[6] * xb + inverse[7] * yf + inverse[8];
            let xf = (x % block_w) as f64;
            let wd = w0 + inverse[6] * xf;
            let wd = if wd != 0.0 { tab_scale / wd } else { 0.0 };
            let limit = |v: f64| v.clamp(f64::from(i32::MIN), f64::from(i32::MAX));
            // saturate_cast<int>(double): round half to even.
            let fx = limit((x0 + inverse[0] * xf) * wd).round_ties_even() as i32;
            let fy = limit((y0 + inverse[3] * xf) * wd).round_ties_even() as i32;
            // saturate_cast<short> of the integer part, then one tap to the left / up.
            let sx = i64::from((fx >> INTER_BITS).clamp(i16::MIN.into(), i16::MAX.into())) - 1;
            let sy = i64::from((fy >> INTER_BITS).clamp(i16::MIN.into(), i16::MAX.into())) - 1;
            let frac = ((fy & (INTER_TAB_SIZE - 1)) * INTER_TAB_SIZE + (fx & (INTER_TAB_SIZE - 1)))
                as usize;
            let weights = &table[frac];
            acc.fill(0);
            for i in 0..4 {
                let row = (sy + i).clamp(0, max_y) as usize * img.stride;
                for j in 0..4 {
                    let col = (sx + j).clamp(0, max_x) as usize * cn;
                    let wgt = weights[(i * 4 + j) as usize];
                    for (a, &s) in acc.iter_mut().zip(&img.data[row + col..row + col + cn]) {
                        *a += i32::from(s) * wgt;
                    }
                }
            }
            for (p, &a) in px.iter_mut().zip(&acc) {
                *p = ((a + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w × h` map at `background` with the given inclusive rectangles set to `value`.
    fn map_with_rects(
        w: usize,
        h: usize,
        background: f32,
        rects: &[([usize; 4], f32)],
    ) -> Vec<f32> {
        let mut prob = vec![background; w * h];
        for &([x0, y0, x1, y1], value) in rects {
            for y in y0..=y1 {
                prob[y * w + x0..=y * w + x1].fill(value);
            }
        }
        prob
    }

    fn assert_points_near(got: &[[f32; 2]; 4], want: &[[f64; 2]; 4], tol: f64) {
        for (g, w) in got.iter().zip(want) {
            let d = (f64::from(g[0]) - w[0]).hypot(f64::from(g[1]) - w[1]);
            assert!(
                d <= tol,
                "corner {g:?} is {d:.2} px from {w:?} (all: {got:?} vs {want:?})"
            );
        }
    }

    /// Expected output box of an axis-aligned run of foreground pixels `x0..=x1, y0..=y1`
    /// straight from the formulas: the hull runs through pixel centres, so the rectangle is
    /// `(x1 - x0) × (y1 - y0)`; grow by `d = area * ratio / perimeter`; scale.
    fn expected_axis_box(rect: [usize; 4], ratio: f64, sx: f64, sy: f64) -> [[f64; 2]; 4] {
        let [x0, y0, x1, y1] = rect.map(|v| v as f64);
        let (w, h) = (x1 - x0, y1 - y0);
        let d = w * h * ratio / (2.0 * (w + h));
        let (l, r, t, b) = ((x0 - d) * sx, (x1 + d) * sx, (y0 - d) * sy, (y1 + d) * sy);
        [[l, t], [r, t], [r, b], [l, b]]
    }

    #[test]
    fn two_axis_aligned_rectangles_give_two_scaled_grown_boxes() {
        let (w, h) = (100, 60);
        let a = [10, 10, 39, 19];
        let b = [50, 35, 79, 46];
        // pyclipper rounds the grown corners to whole map pixels (d = 5.15 and 5.98 here,
        // grown by 5 and 6); sizes with d near a whole number keep that rounding, scaled by
        // up to 2.5, within the 1 px tolerance of the formula.
        let prob = map_with_rects(w, h, 0.05, &[(a, 0.9), (b, 0.8)]);
        let mut boxes = boxes_from_prob_map(&prob, w, h, 200, 150, &DbParams::default());
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        // OpenCV lists the lower region first.
        assert!(boxes[0].points[0][1] > boxes[1].points[0][1], "{boxes:?}");
        sort_reading_order(&mut boxes);
        let (sx, sy) = (2.0, 2.5);
        assert_points_near(&boxes[0].points, &expected_axis_box(a, 1.5, sx, sy), 1.0);
        assert_points_near(&boxes[1].points, &expected_axis_box(b, 1.5, sx, sy), 1.0);
        // The rectangle covers exactly the region, so the score is its probability.
        assert!((boxes[0].score - 0.9).abs() < 1e-6, "{}", boxes[0].score);
        assert!((boxes[1].score - 0.8).abs() < 1e-6, "{}", boxes[1].score);
    }

    #[test]
    fn boxes_are_clipped_to_the_image() {
        let (w, h) = (40, 30);
        let prob = map_with_rects(w, h, 0.0, &[([0, 0, 20, 9], 0.9)]);
        let boxes = boxes_from_prob_map(&prob, w, h, w, h, &DbParams::default());
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let p = boxes[0].points;
        assert_eq!(p[0], [0.0, 0.0], "{p:?}");
        assert!(
            p.iter()
                .all(|q| (0.0..=39.0).contains(&q[0]) && (0.0..=29.0).contains(&q[1]))
        );
    }

    #[test]
    fn rotated_rectangles_give_rotated_boxes_clockwise_from_top_left() {
        let (w, h) = (120, 100);
        let (cx, cy) = (60.0f64, 50.0f64);
        let (half_len, half_thick) = (30.0f64, 8.0f64);
        // 60° and -50° put the long side past 45°, where the corner order PaddleOCR's own
        // rectangle code produces is not clockwise from the top-left any more.
        for degrees in [20.0f64, 60.0, -50.0] {
            let angle = degrees.to_radians();
            let u = [angle.cos(), angle.sin()];
            let n = [-u[1], u[0]];
            let mut prob = vec![0.0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                    let s = dx * u[0] + dy * u[1];
                    let t = dx * n[0] + dy * n[1];
                    if s.abs() <= half_len && t.abs() <= half_thick {
                        prob[y * w + x] = 0.9;
                    }
                }
            }
            let boxes = boxes_from_prob_map(&prob, w, h, w, h, &DbParams::default());
            assert_eq!(boxes.len(), 1, "{degrees}°: {boxes:?}");
            let p = boxes[0].points;

            // The ideal rectangle grown by d, corners clockwise on screen (u then n turns
            // right with y down), starting from the smallest x + y; the pixel hull is up to a
            // pixel inside it.
            let d = (2.0 * half_len) * (2.0 * half_thick) * 1.5 / (4.0 * (half_len + half_thick));
            let (a, b) = (half_len + d, half_thick + d);
            let corner = |sa: f64, sb: f64| {
                [
                    cx + sa * a * u[0] + sb * b * n[0],
                    cy + sa * a * u[1] + sb * b * n[1],
                ]
            };
            let mut want = [
                corner(-1.0, -1.0),
                corner(1.0, -1.0),
                corner(1.0, 1.0),
                corner(-1.0, 1.0),
            ];
            let first = (0..4)
                .min_by(|&i, &j| (want[i][0] + want[i][1]).total_cmp(&(want[j][0] + want[j][1])))
                .unwrap_or(0);
            want.rotate_left(first);
            assert_points_near(&p, &want, 2.5);

            // Clockwise on screen (y down): every turn has a positive cross product.
            for i in 0..4 {
                let (a, b, c) = (p[i], p[(i + 1) % 4], p[(i + 2) % 4]);
                let turn = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
                assert!(turn > 0.0, "{degrees}°: turn {i} is {turn}: {p:?}");
            }
        }
    }

    #[test]
    fn order_points_clockwise_starts_at_the_smallest_sum() {
        // A tilted rectangle listed in scrambled order.
        let got = order_points_clockwise([[10.0, 0.0], [0.0, 5.0], [3.0, 12.0], [13.0, 7.0]]);
        assert_eq!(got, [[0.0, 5.0], [10.0, 0.0], [13.0, 7.0], [3.0, 12.0]]);
    }

    #[test]
    fn regions_below_min_size_are_dropped() {
        let (w, h) = (80, 40);
        // Two rows: the rectangle through the pixel centres is 1 px tall. Six rows: 5 px.
        let prob = map_with_rects(w, h, 0.0, &[([5, 5, 44, 6], 0.9), ([5, 20, 44, 25], 0.9)]);
        let boxes = boxes_from_prob_map(&prob, w, h, w, h, &DbParams::default());
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        assert!(boxes[0].points[0][1] > 10.0, "{boxes:?}");
    }

    #[test]
    fn low_score_regions_are_dropped_by_box_thresh() {
        let (w, h) = (60, 40);
        let prob = map_with_rects(w, h, 0.0, &[([10, 10, 49, 24], 0.35)]);
        let strict = boxes_from_prob_map(&prob, w, h, w, h, &DbParams::default());
        assert!(strict.is_empty(), "{strict:?}");
        let lenient = DbParams {
            box_thresh: 0.3,
            ..DbParams::default()
        };
        let kept = boxes_from_prob_map(&prob, w, h, w, h, &lenient);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!((kept[0].score - 0.35).abs() < 1e-6, "{}", kept[0].score);
    }

    #[test]
    fn dilation_merges_regions_one_pixel_apart() {
        let (w, h) = (80, 40);
        let prob = map_with_rects(
            w,
            h,
            0.0,
            &[([10, 10, 29, 19], 0.9), ([31, 10, 50, 19], 0.9)],
        );
        let plain = boxes_from_prob_map(&prob, w, h, w, h, &DbParams::default());
        assert_eq!(plain.len(), 2, "{plain:?}");
        let dilated = DbParams {
            dilate: true,
            ..DbParams::default()
        };
        let merged = boxes_from_prob_map(&prob, w, h, w, h, &dilated);
        assert_eq!(merged.len(), 1, "{merged:?}");
        // The merged box spans both regions (dilation also grows them one pixel right/down).
        assert!(
            merged[0].points[0][0] < 10.0 && merged[0].points[1][0] > 51.0,
            "{merged:?}"
        );
    }

    #[test]
    fn dilate_2x2_grows_right_and_down_like_opencv() {
        let (w, h) = (4, 3);
        let mut mask = vec![0u8; w * h];
        mask[w + 1] = 1;
        dilate_2x2(&mut mask, w, h);
        #[rustfmt::skip]
        let want = [
            0, 0, 0, 0,
            0, 1, 1, 0,
            0, 1, 1, 0,
        ];
        assert_eq!(mask, want);
    }

    #[test]
    fn contours_include_holes_in_opencv_order() {
        let (w, h) = (40, 40);
        let mut mask = vec![0u8; w * h];
        let mut set = |x0: usize, y0: usize, x1: usize, y1: usize, v: u8| {
            for y in y0..=y1 {
                mask[y * w + x0..=y * w + x1].fill(v);
            }
        };
        set(2, 2, 7, 4, 1);
        set(20, 20, 29, 27, 1);
        set(23, 22, 25, 24, 0);
        set(1, 30, 3, 34, 1);
        let hulls: Vec<Vec<[i64; 2]>> = contour_hulls(&mask, w, h, 100)
            .iter()
            .map(<[_]>::to_vec)
            .collect();
        // Reverse of the raster scan: (1,30), the hole (met at (22,22)), (20,20), (2,2).
        assert_eq!(hulls.len(), 4, "{hulls:?}");
        let bbox = |hull: &[[i64; 2]]| {
            let xs = hull.iter().map(|p| p[0]);
            let ys = hull.iter().map(|p| p[1]);
            [xs.clone().min(), ys.clone().min(), xs.max(), ys.max()].map(|v| v.unwrap_or(-1))
        };
        assert_eq!(bbox(&hulls[0]), [1, 30, 3, 34]);
        assert_eq!(bbox(&hulls[1]), [22, 21, 26, 25]);
        assert_eq!(bbox(&hulls[2]), [20, 20, 29, 27]);
        assert_eq!(bbox(&hulls[3]), [2, 2, 7, 4]);
        // Vertex for vertex what cv2.convexHull (OpenCV 4.10) makes of each contour, start
        // included; the hole's border skips the diagonal corners: an octagon.
        let want: [&[[i64; 2]]; 4] = [
            &[[3, 30], [3, 34], [1, 34], [1, 30]],
            &[
                [22, 22],
                [23, 21],
                [25, 21],
                [26, 22],
                [26, 24],
                [25, 25],
                [23, 25],
                [22, 24],
            ],
            &[[29, 20], [29, 27], [20, 27], [20, 20]],
            &[[7, 2], [7, 4], [2, 4], [2, 2]],
        ];
        for (got, want) in hulls.iter().zip(want) {
            assert_eq!(got, want);
        }
        // max_candidates keeps the first ones in that order.
        assert_eq!(contour_hulls(&mask, w, h, 1).iter().count(), 1);
    }

    #[test]
    fn min_area_rect_reproduces_opencv_bit_for_bit() {
        // A rounded blob's contour hull, in the order cv2.convexHull gives it; OpenCV 4.10's
        // minAreaRect and boxPoints answer with these float32 values, a few ulps off the whole
        // numbers, and the reference truncates them.
        let hull = [
            [263, 150],
            [264, 151],
            [265, 153],
            [265, 263],
            [263, 265],
            [253, 265],
            [251, 263],
            [251, 152],
            [253, 150],
        ];
        let rect = min_area_rect(&hull).expect("not degenerate");
        assert_eq!(rect.center, [257.99997, 207.49997]);
        assert_eq!(rect.size, [114.999985, 13.999998]);
        assert_eq!(rect.angle, 90.0);
        assert_eq!(
            rect.points(),
            [
                [250.99997, 149.99997],
                [264.99997, 149.99997],
                [264.99997, 264.99997],
                [250.99997, 264.99997],
            ]
        );
        assert_eq!(mini_box_order(rect.points())[0], [250.99997, 149.99997]);
    }

    #[test]
    fn min_area_rect_of_a_diamond_is_the_tilted_square() {
        let mut hull = Vec::new();
        let mut pts = vec![[5, 0], [0, 5], [10, 5], [5, 10]];
        pts.sort_unstable_by_key(|p| (p[1], p[0]));
        convex_hull(&pts, &mut hull);
        let rect = min_area_rect(&hull).expect("a diamond is not degenerate");
        let side = 50f32.sqrt();
        assert!((rect.size[0] - side).abs() < 1e-4 && (rect.size[1] - side).abs() < 1e-4);
        // Its corners are the diamond's own vertices.
        for c in rect.points() {
            let near = |p: &[i64; 2]| (p[0] as f32 - c[0]).hypot(p[1] as f32 - c[1]) < 1e-4;
            assert!(pts.iter().any(near), "{c:?}");
        }
        // Two points are a segment, not a rectangle.
        assert!(min_area_rect(&[[0, 0], [5, 5]]).is_none());
    }

    /// Convex hull of `unclip`'s outline, sorted, for comparing with pyclipper's output.
    fn unclip_hull(quad: &[[f32; 2]; 4], ratio: f64) -> Vec<[i64; 2]> {
        let mut pts = Vec::new();
        unclip(quad, ratio, &mut pts);
        pts.sort_unstable_by_key(|p| (p[1], p[0]));
        let mut hull = Vec::new();
        convex_hull(&pts, &mut hull);
        hull.sort_unstable();
        hull
    }

    #[test]
    fn unclip_matches_pyclipper() {
        // Reference outlines from pyclipper 1.3 (PyclipperOffset, JT_ROUND, ET_CLOSEDPOLYGON);
        // its output is already convex without collinear vertices.
        let sorted = |mut v: Vec<[i64; 2]>| {
            v.sort_unstable();
            v
        };
        // Integer rectangle, area 50, perimeter 30: ratio 1.44 gives d = 2.4, and every edge
        // moves out by round(2.4) = 2.
        let quad = [[10.0, 10.0], [20.0, 10.0], [20.0, 15.0], [10.0, 15.0]];
        let want = vec![
            [22, 9],
            [22, 15],
            [21, 17],
            [10, 17],
            [8, 16],
            [8, 10],
            [9, 8],
            [20, 8],
        ];
        assert_eq!(unclip_hull(&quad, 1.44), sorted(want));
        // A tilted quadrilateral with fractional corners (pyclipper truncates them), offset
        // by 6.3 = area * ratio / perimeter.
        let quad: [[f32; 2]; 4] = [[10.7, 10.2], [30.9, 14.6], [29.3, 21.8], [9.1, 17.5]];
        let mut area2 = 0.0;
        let mut perimeter = 0.0;
        for i in 0..4 {
            let (a, b) = (quad[i].map(f64::from), quad[(i + 1) % 4].map(f64::from));
            area2 += a[0] * b[1] - b[0] * a[1];
            perimeter += (b[0] - a[0]).hypot(b[1] - a[1]);
        }
        let ratio = 6.3 * perimeter / (area2.abs() / 2.0);
        let want = vec![
            [31, 8],
            [34, 9],
            [36, 12],
            [36, 15],
            [35, 22],
            [34, 25],
            [31, 27],
            [28, 27],
            [8, 23],
            [5, 22],
            [3, 19],
            [3, 16],
            [4, 9],
            [5, 6],
            [8, 4],
            [11, 4],
        ];
        assert_eq!(unclip_hull(&quad, ratio), sorted(want));
    }

    #[test]
    fn fill_poly_covers_the_rectangle_exactly() {
        let (w, h) = (8, 6);
        let mut mask = vec![0u8; w * h];
        fill_poly(&mut mask, w, h, &[[1, 1], [5, 1], [5, 3], [1, 3]]);
        for y in 0..h {
            for x in 0..w {
                let inside = (1..=5).contains(&x) && (1..=3).contains(&y);
                assert_eq!(mask[y * w + x], u8::from(inside), "pixel ({x}, {y})");
            }
        }
    }

    /// `fill_poly` into a `w × h` mask, drawn as rows of `#` and `.`.
    fn fill_rows(w: usize, h: usize, verts: [[i64; 2]; 4]) -> Vec<String> {
        let mut mask = vec![0u8; w * h];
        fill_poly(&mut mask, w, h, &verts);
        mask.chunks(w)
            .map(|row| {
                row.iter()
                    .map(|&m| if m != 0 { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fill_poly_matches_opencv_on_slanted_and_clipped_quads() {
        // cv2.fillPoly(mask, [verts], 1) with OpenCV 4.10: edges rounded to the nearest pixel
        // centre inside the image, slopes from the clipped line where a vertex is outside.
        let inside = [
            "............",
            "..###.......",
            "..#######...",
            ".##########.",
            ".##########.",
            ".#########..",
            "##########..",
            "##########..",
            "...######...",
            ".......##...",
        ];
        assert_eq!(fill_rows(12, 10, [[2, 1], [10, 3], [8, 9], [0, 7]]), inside);
        let clipped = [
            "#####....",
            "########.",
            "########.",
            "#########",
            "#########",
            "#########",
            ".########",
        ];
        assert_eq!(
            fill_rows(9, 7, [[-2, -1], [7, 1], [10, 8], [1, 6]]),
            clipped
        );
    }

    #[test]
    fn reading_order_sorts_two_lines_left_to_right() {
        let at = |x: f32, y: f32| TextBox {
            points: [[x, y], [x + 20.0, y], [x + 20.0, y + 8.0], [x, y + 8.0]],
            score: 1.0,
        };
        let mut boxes = vec![
            at(50.0, 42.0),
            at(200.0, 10.0),
            at(5.0, 40.0),
            at(10.0, 14.0),
            at(100.0, 8.0),
        ];
        sort_reading_order(&mut boxes);
        let got: Vec<[f32; 2]> = boxes.iter().map(|b| b.points[0]).collect();
        assert_eq!(
            got,
            [
                [10.0, 14.0],
                [100.0, 8.0],
                [200.0, 10.0],
                [5.0, 40.0],
                [50.0, 42.0]
            ]
        );
    }

    /// A `w × h` image with 3 channels, rows padded to `stride`, every byte distinct enough to
    /// catch any misplaced pixel.
    fn pattern_image(w: usize, h: usize, stride: usize) -> Vec<u8> {
        let mut data = vec![0xEE; stride * h];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data[y * stride + x * 3 + c] = ((x * 7 + y * 13 + c * 50) % 256) as u8;
                }
            }
        }
        data
    }

    #[test]
    fn crop_of_an_axis_aligned_box_is_the_sub_image() {
        let (w, h, stride) = (40, 30, 40 * 3 + 5);
        let data = pattern_image(w, h, stride);
        let img = Image {
            width: w,
            height: h,
            stride,
            channels: 3,
            data: &data,
        };
        let (x0, y0, x1, y1) = (5usize, 7usize, 30usize, 19usize);
        let pts = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(|[x, y]| [x as f32, y as f32]);
        let (cw, ch, crop) = crop_text_line(&img, &pts);
        assert_eq!((cw, ch), (x1 - x0, y1 - y0));
        for y in 0..ch {
            for x in 0..cw {
                let s = (y0 + y) * stride + (x0 + x) * 3;
                let d = (y * cw + x) * 3;
                assert_eq!(crop[d..d + 3], data[s..s + 3], "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn tall_crops_are_turned_counter_clockwise() {
        let (w, h, stride) = (40, 50, 40 * 3);
        let data = pattern_image(w, h, stride);
        let img = Image {
            width: w,
            height: h,
            stride,
            channels: 3,
            data: &data,
        };
        // 10 wide, 30 tall: ratio 3 ≥ 1.5.
        let (x0, y0) = (12usize, 9usize);
        let pts = [[12.0, 9.0], [22.0, 9.0], [22.0, 39.0], [12.0, 39.0]];
        let (cw, ch, crop) = crop_text_line(&img, &pts);
        assert_eq!((cw, ch), (30, 10));
        // np.rot90: output (row r, column c) is upright (row c, column 9 - r).
        for r in 0..ch {
            for c in 0..cw {
                let s = (y0 + c) * stride + (x0 + 9 - r) * 3;
                let d = (r * cw + c) * 3;
                assert_eq!(crop[d..d + 3], data[s..s + 3], "pixel ({c}, {r})");
            }
        }
        // 20 × 25 (ratio 1.25) stays upright.
        let pts = [[12.0, 9.0], [32.0, 9.0], [32.0, 34.0], [12.0, 34.0]];
        let (cw, ch, _) = crop_text_line(&img, &pts);
        assert_eq!((cw, ch), (20, 25));
    }

    #[test]
    fn crop_of_a_rotated_box_samples_along_it() {
        // A vertical gradient image: value = 4 * y. A box tilted so its top edge climbs
        // keeps each crop row on roughly one source row near its left end.
        let (w, h) = (60, 60);
        let data: Vec<u8> = (0..h)
            .flat_map(|y| std::iter::repeat_n((4 * y) as u8, w))
            .collect();
        let img = Image {
            width: w,
            height: h,
            stride: w,
            channels: 1,
            data: &data,
        };
        let pts = [[10.0, 20.0], [50.0, 10.0], [52.0, 18.0], [12.0, 28.0]];
        let (cw, ch, crop) = crop_text_line(&img, &pts);
        assert_eq!((cw, ch), (41, 8));
        // Left end of the top row sits at y = 20, right end at y = 10.
        assert!((i32::from(crop[0]) - 80).abs() <= 2, "{}", crop[0]);
        assert!(
            (i32::from(crop[cw - 1]) - 40).abs() <= 6,
            "{}",
            crop[cw - 1]
        );
    }

    #[test]
    fn crop_of_a_skewed_quad_matches_opencv_bytes() {
        // get_rotate_crop_image on a 10 × 8 pattern with OpenCV 4.10: getPerspectiveTransform,
        // then warpPerspective(INTER_CUBIC, BORDER_REPLICATE).
        let data: Vec<u8> = (0..8)
            .flat_map(|y| (0..10).map(move |x| ((x * 37 + y * 59) % 251) as u8))
            .collect();
        let img = Image {
            width: 10,
            height: 8,
            stride: 10,
            channels: 1,
            data: &data,
        };
        let pts = [[1.3, 1.7], [8.6, 0.4], [9.1, 6.2], [0.5, 6.9]];
        let (cw, ch, crop) = crop_text_line(&img, &pts);
        assert_eq!((cw, ch), (8, 5));
        #[rustfmt::skip]
        let want: [u8; 40] = [
            155, 201, 215, 170, 246, 113, 38, 51,
            202, 103, 177, 47, 20, 72, 86, 120,
            96, 12, 11, 69, 102, 128, 152, 225,
            45, 67, 107, 143, 174, 190, 255, 110,
            103, 136, 197, 158, 172, 79, 18, 80,
        ];
        assert_eq!(crop, want);
    }

    #[test]
    fn perspective_solver_maps_the_four_points() {
        let src: [[f32; 2]; 4] = [[12.5, 7.0], [90.2, 15.3], [85.0, 60.7], [5.1, 50.0]];
        let dst: [[f32; 2]; 4] = [[0.0, 0.0], [78.0, 0.0], [78.0, 44.0], [0.0, 44.0]];
        let m = perspective_transform(&src, &dst).expect("the points are in general position");
        let (src, dst) = (src.map(|p| p.map(f64::from)), dst.map(|p| p.map(f64::from)));
        let apply = |m: &[f64; 9], p: [f64; 2]| {
            let wd = m[6] * p[0] + m[7] * p[1] + m[8];
            [
                (m[0] * p[0] + m[1] * p[1] + m[2]) / wd,
                (m[3] * p[0] + m[4] * p[1] + m[5]) / wd,
            ]
        };
        let inv = invert3(&m).expect("a homography is invertible");
        for (s, d) in src.iter().zip(&dst) {
            let q = apply(&m, *s);
            assert!(
                (q[0] - d[0]).abs() < 1e-3 && (q[1] - d[1]).abs() < 1e-3,
                "{s:?} → {q:?}"
            );
            let back = apply(&inv, *d);
            assert!((back[0] - s[0]).abs() < 1e-3 && (back[1] - s[1]).abs() < 1e-3);
        }
        // Three collinear points have no transform.
        let flat = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]];
        let rect = [[0.0, 0.0], [78.0, 0.0], [78.0, 44.0], [0.0, 44.0]];
        assert!(perspective_transform(&flat, &rect).is_none());
    }

    #[test]
    fn bicubic_weights_sum_to_one_and_keep_whole_pixels() {
        let table = bicubic_table();
        assert_eq!(table.len(), 32 * 32);
        for w in table {
            assert_eq!(w.iter().sum::<i32>(), 1 << COEF_BITS);
        }
        // At a whole pixel the centre weight 1.0 saturates to i16::MAX and OpenCV's sum fix-up
        // hands the missing unit to tap (2, 2); a sample still comes out exact, as the crop
        // tests check.
        let mut whole = [0; 16];
        whole[5] = i32::from(i16::MAX);
        whole[10] = 1;
        assert_eq!(table[0], whole);
    }
}
