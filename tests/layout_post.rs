//! PicoDet GFL decoding against rapid_layout's own post-processing, on committed head outputs
//! (tests/fixtures/layout, made by make_picodet_fixtures.py). No model and no Python at test
//! time: the stored onnxruntime outputs go through `decode` and must give rapid_layout's list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use pipebench::models::layout::postprocess::{
    CDLA_LABELS, DecodeError, Detection, GflParams, LevelOutput, decode,
};
use serde_json::Value;

/// Boxes must match the golden list decoded from the same stored values to this many pixels.
/// The only differences left are arithmetic: the reference takes the softmax in f32 and sums
/// in f64 (here all f64), about 1e-7 relative on distances up to 7 bins × 64 px, and rounds
/// clipped boxes to f32 (an ulp is 6e-5 at 608 px). 0.01 px is a hundred times that and far
/// below what any real mistake costs: half an anchor step is at least 4 px, one bin 8 px.
const BOX_TOL_PX: f32 = 0.01;

/// Scores are the stored sigmoid values passed through untouched, so they must be equal; the
/// slack only covers the JSON round trip (f32 → f64 text → f32 is exact in practice).
const SCORE_TOL: f32 = 1e-6;

/// Against rapid_layout's own end-to-end run (its f32 session outputs, not the stored ones):
/// the fixture keeps the regression logits as f16, which moves boxes by up to 0.05 px on this
/// page (recorded in picodet.json); half a pixel leaves room and still catches real errors.
const END_TO_END_BOX_TOL_PX: f32 = 0.5;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layout")
}

fn tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("picodet.safetensors"), &Device::Cpu)
        .expect("fixture file")
}

fn info() -> Value {
    let text = std::fs::read_to_string(dir().join("picodet.json")).expect("fixture json");
    serde_json::from_str(&text).expect("valid json")
}

/// A stored tensor as f32 values (f16 tensors are widened), rows `row` of the batch axis only.
fn rows_f32(t: &Tensor, row: usize) -> Vec<f32> {
    t.get(row)
        .and_then(|r| r.to_dtype(DType::F32))
        .and_then(|r| r.flatten_all())
        .and_then(|r| r.to_vec1::<f32>())
        .expect("f32 values")
}

fn usize_at(v: &Value, ptr: &str) -> usize {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| panic!("{ptr} is not a count"))
}

fn golden(v: &Value) -> Vec<Detection> {
    v.as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let bbox: Vec<f32> = d["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|x| x.as_f64().expect("coordinate") as f32)
                .collect();
            let class_id = usize::try_from(d["class_id"].as_u64().expect("class_id")).expect("id");
            assert_eq!(d["label"], CDLA_LABELS[class_id]);
            Detection {
                class_id,
                score: d["score"].as_f64().expect("score") as f32,
                bbox: bbox.try_into().expect("four coordinates"),
            }
        })
        .collect()
}

/// Decodes one image (`row`) of the stored `{prefix}.cls.k` / `{prefix}.reg.k` tensors.
fn decode_stored(
    fx: &HashMap<String, Tensor>,
    prefix: &str,
    row: usize,
    input: (usize, usize),
    orig: (usize, usize),
) -> Result<Vec<Detection>, DecodeError> {
    let p = GflParams::default();
    let (input_w, input_h) = input;
    let data: Vec<(usize, usize, Vec<f32>, Vec<f32>)> = p
        .strides
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let cls = rows_f32(&fx[&format!("{prefix}.cls.{k}")], row);
            let reg = rows_f32(&fx[&format!("{prefix}.reg.{k}")], row);
            (input_h.div_ceil(s), input_w.div_ceil(s), cls, reg)
        })
        .collect();
    let levels: Vec<LevelOutput<'_>> = data
        .iter()
        .map(|(grid_h, grid_w, scores, regs)| LevelOutput {
            grid_h: *grid_h,
            grid_w: *grid_w,
            scores,
            regs,
        })
        .collect();
    decode(
        &levels,
        CDLA_LABELS.len(),
        input_w,
        input_h,
        orig.0,
        orig.1,
        &p,
    )
}

/// Same count, same classes in the same order, scores and boxes within the tolerances.
fn assert_matches(what: &str, got: &[Detection], want: &[Detection], box_tol: f32) {
    for d in got {
        eprintln!(
            "{what}: {:<14} {:.4} [{:.2}, {:.2}, {:.2}, {:.2}]",
            CDLA_LABELS[d.class_id], d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
        );
    }
    let classes = |ds: &[Detection]| ds.iter().map(|d| d.class_id).collect::<Vec<_>>();
    assert_eq!(classes(got), classes(want), "{what}: classes in order");
    let mut worst_box = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.score - w.score).abs() <= SCORE_TOL,
            "{what} #{i}: score {} vs {}",
            g.score,
            w.score
        );
        for (a, b) in g.bbox.iter().zip(&w.bbox) {
            worst_box = worst_box.max((a - b).abs());
        }
        assert!(
            g.bbox
                .iter()
                .zip(&w.bbox)
                .all(|(a, b)| (a - b).abs() <= box_tol),
            "{what} #{i} ({}): box {:?} vs {:?} (tolerance {box_tol} px)",
            CDLA_LABELS[g.class_id],
            g.bbox,
            w.bbox
        );
    }
    eprintln!(
        "{what}: {} detections, max box difference {worst_box:e} px",
        got.len()
    );
}

#[test]
fn page_detections_match_rapid_layout() {
    let (fx, info) = (tensors(), info());
    let input = (
        usize_at(&info, "/preprocess/input_width"),
        usize_at(&info, "/preprocess/input_height"),
    );
    assert_eq!(input, (608, 800), "the exported graph's fixed input");
    let orig = (
        usize_at(&info, "/page/width"),
        usize_at(&info, "/page/height"),
    );
    let got = decode_stored(&fx, "page", 0, input, orig).expect("decode");
    let want = golden(&info["page"]["detections"]);
    // The page is chosen to exercise most of the decoder: many regions, several classes, one
    // anchor reported under two classes (per-class NMS), and a table.
    assert!(want.len() >= 10, "golden list has {} regions", want.len());
    assert_matches("page", &got, &want, BOX_TOL_PX);
    let e2e = golden(&info["page"]["end_to_end"]);
    assert_matches("page vs end to end", &got, &e2e, END_TO_END_BOX_TOL_PX);
}

#[test]
fn small_inputs_decode_like_rapid_layout() {
    // 320×256 input: other grids (40×32 … 5×4, no ceil) and a page aspect that differs from
    // the input's, so x and y scale differently.
    let (fx, info) = (tensors(), info());
    let input = (
        usize_at(&info, "/small/width"),
        usize_at(&info, "/small/height"),
    );
    let images = info["small"]["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    for (row, img) in images.iter().enumerate() {
        let orig = (
            usize_at(img, "/rendered_width"),
            usize_at(img, "/rendered_height"),
        );
        let got = decode_stored(&fx, "small", row, input, orig).expect("decode");
        let want = golden(&img["detections"]);
        assert!(!want.is_empty());
        assert_matches(&format!("small[{row}]"), &got, &want, BOX_TOL_PX);
    }
}

#[test]
fn default_params_and_labels_are_the_references() {
    let info = info();
    let pp = &info["postprocess"];
    let p = GflParams::default();
    let counts = |key: &str| usize_at(pp, &format!("/{key}"));
    assert_eq!(
        p.strides,
        pp["strides"]
            .as_array()
            .expect("strides")
            .iter()
            .map(|s| usize::try_from(s.as_u64().expect("stride")).expect("usize"))
            .collect::<Vec<_>>()
    );
    assert_eq!(p.bins, counts("dfl_bins"));
    assert_eq!(p.pre_nms_top_k, counts("pre_nms_top_k_per_level"));
    assert_eq!(p.nms_candidates, counts("nms_candidates_per_class"));
    assert_eq!(p.keep_top_k, counts("keep_top_k_per_class"));
    assert_eq!(
        f64::from(p.score_threshold),
        pp["score_threshold"].as_f64().expect("threshold")
    );
    assert_eq!(f64::from(p.nms_iou), pp["nms_iou"].as_f64().expect("iou"));
    let labels: Vec<&str> = info["model"]["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label"))
        .collect();
    assert_eq!(labels, CDLA_LABELS);
}

#[test]
fn levels_out_of_stride_order_are_an_error() {
    let fx = tensors();
    let p = GflParams::default();
    let data: Vec<(Vec<f32>, Vec<f32>)> = (0..4)
        .map(|k| {
            (
                rows_f32(&fx[&format!("page.cls.{k}")], 0),
                rows_f32(&fx[&format!("page.reg.{k}")], 0),
            )
        })
        .collect();
    // Coarsest level first, with its own (correct) grid: the grid check catches it.
    let grids = [(100, 76), (50, 38), (25, 19), (13, 10)];
    let levels: Vec<LevelOutput<'_>> = (0..4)
        .rev()
        .map(|k| LevelOutput {
            grid_h: grids[k].0,
            grid_w: grids[k].1,
            scores: &data[k].0,
            regs: &data[k].1,
        })
        .collect();
    let err = decode(&levels, 10, 608, 800, 612, 792, &p).expect_err("wrong order");
    assert!(matches!(err, DecodeError::Grid { level: 0, .. }), "{err}");
}
