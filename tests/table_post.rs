//! SLANet-plus post-processing against rapid-table 0.3.0 on committed fixtures
//! (tests/fixtures/table, made by make_slanet_fixtures.py): the decode of the stored
//! onnxruntime outputs, the OCR → cell matching and the final HTML. No model and no Python run
//! here.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use pipebench::models::ocr::preprocess::{Bgr, normalize_into, resize_linear};
use pipebench::models::table::decode::{
    SLANET_PLUS_INPUT_SIZE, TableStructure, TableVocab, decode, structure_html,
};
use pipebench::models::table::matcher::{OcrLine, match_cells, match_table, ocr_box};
use serde_json::Value;

/// Largest difference allowed between our cell coordinates and rapid_table's, in crop pixels.
/// Both decode the same stored f32 outputs with the same f32 operations, so they agree to the
/// bit today; the margin only admits a reordering of those multiplications. Half a pixel, the
/// obvious visual tolerance, would let real mistakes through: scaling by the truncated resize
/// (487 instead of 488 px for case 1) is off by 0.2 %, under half a pixel for every cell left of
/// x = 240.
const CELL_TOLERANCE_PX: f32 = 1e-3;

/// Relative tolerance on the sums of the preprocessed input: the values must be bit-identical;
/// only the order of the f64 summation differs from numpy's.
const STATS_REL_TOLERANCE: f64 = 1e-9;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/table")
}

fn tensors() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("slanet.safetensors"), &Device::Cpu)
        .expect("fixture file")
}

fn info() -> Value {
    let text = std::fs::read_to_string(dir().join("slanet.json")).expect("slanet.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 tensor")
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().expect("unsigned integer") as usize
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn index_lists(v: &Value) -> Vec<Vec<usize>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|l| l.as_array().expect("array").iter().map(usize_of).collect())
        .collect()
}

/// OCR lines as stored: corners in crop pixels, quarter-pixel values (exact in f32).
fn ocr_lines(v: &Value) -> Vec<OcrLine> {
    v.as_array()
        .expect("ocr array")
        .iter()
        .map(|l| {
            let p = l["points"].as_array().expect("points");
            assert_eq!(p.len(), 4);
            let points = std::array::from_fn(|i| {
                std::array::from_fn(|j| p[i][j].as_f64().expect("coordinate") as f32)
            });
            OcrLine {
                points,
                text: l["text"].as_str().expect("text").to_string(),
            }
        })
        .collect()
}

fn vocab(info: &Value) -> TableVocab {
    TableVocab::from_character_list(
        info["model"]["metadata_character"]
            .as_str()
            .expect("metadata_character"),
    )
}

/// Case `k` decoded from the stored onnxruntime outputs.
fn decoded(
    k: usize,
    info: &Value,
    fx: &std::collections::HashMap<String, Tensor>,
) -> TableStructure {
    let case = &info["cases"][k];
    let structure = &fx[&format!("case{k}.structure")];
    let loc = &fx[&format!("case{k}.loc")];
    let t = usize_of(&case["T"]);
    assert_eq!(structure.dims(), &[1, t, 50]);
    assert_eq!(loc.dims(), &[1, t, 8]);
    decode(
        &f32s(structure),
        &f32s(loc),
        &vocab(info),
        usize_of(&case["crop_width"]),
        usize_of(&case["crop_height"]),
        SLANET_PLUS_INPUT_SIZE,
    )
    .expect("decodes")
}

#[test]
fn vocab_from_metadata_matches_rapid_table() {
    let info = info();
    let v = vocab(&info);
    assert_eq!(v.tokens(), strings(&info["model"]["vocab"]).as_slice());
    assert_eq!(v.len(), 50);
    assert_eq!(v.sos(), usize_of(&info["model"]["sos"]));
    assert_eq!(v.eos(), usize_of(&info["model"]["eos"]));
}

#[test]
fn decode_matches_rapid_table() {
    let (info, fx) = (info(), tensors());
    for k in 0..2 {
        let case = &info["cases"][k];
        let s = decoded(k, &info, &fx);
        assert_eq!(
            s.tokens,
            strings(&case["tokens"]),
            "case {k}: structure tokens"
        );
        assert_eq!(s.steps, usize_of(&case["steps"]), "case {k}: steps");
        let want = case["cells"].as_array().expect("cells");
        assert_eq!(s.cells.len(), want.len(), "case {k}: cell count");
        let mut worst = 0f32;
        for (c, (got, want)) in s.cells.iter().zip(want).enumerate() {
            for (i, g) in got.iter().enumerate() {
                let w = want[i].as_f64().expect("coordinate") as f32;
                let d = (g - w).abs();
                worst = worst.max(d);
                assert!(
                    d <= CELL_TOLERANCE_PX,
                    "case {k} cell {c} coordinate {i}: {g} vs rapid_table {w}"
                );
            }
        }
        eprintln!("case {k}: max |cell - rapid_table| = {worst:e} px");
        let score = case["score"].as_f64().expect("score");
        assert!(
            (f64::from(s.score) - score).abs() < 1e-6,
            "case {k}: score {} vs {score}",
            s.score
        );
        // Something real was decoded: a table with rows, and spans in case 1.
        assert!(s.tokens.iter().filter(|t| *t == "<tr>").count() >= 5);
        let html = structure_html(&s.tokens);
        assert!(
            html.starts_with("<html><body><table><") && html.ends_with("</table></body></html>")
        );
        assert_eq!(
            k == 1,
            s.tokens.iter().any(|t| t.contains("span=")),
            "case {k}: spanning cells"
        );
    }
}

#[test]
fn match_table_reproduces_rapid_table_html() {
    let (info, fx) = (info(), tensors());
    for k in 0..2 {
        let case = &info["cases"][k];
        let s = decoded(k, &info, &fx);
        let lines = ocr_lines(&case["ocr"]);
        check_matching(&format!("case {k}"), &s, &lines, case);
    }
}

#[test]
fn match_table_reproduces_rapid_table_on_synthetic_lines() {
    let (info, fx) = (info(), tensors());
    let m = &info["matcher_cases"][0];
    let s = decoded(usize_of(&m["structure_case"]), &info, &fx);
    let lines = ocr_lines(&m["ocr"]);
    check_matching("synthetic", &s, &lines, m);
}

/// OCR boxes, the filter, the cell assignment and the HTML, each against the reference.
fn check_matching(name: &str, s: &TableStructure, lines: &[OcrLine], want: &Value) {
    let dt = want["dt_boxes"].as_array().expect("dt_boxes");
    assert_eq!(dt.len(), lines.len());
    for (i, (l, d)) in lines.iter().zip(dt).enumerate() {
        let d: Vec<f64> = d
            .as_array()
            .expect("box")
            .iter()
            .map(|v| v.as_f64().expect("f64"))
            .collect();
        assert_eq!(
            ocr_box(&l.points, s.crop_width, s.crop_height).as_slice(),
            d.as_slice(),
            "{name}: OCR box {i}"
        );
    }
    let cell_lines = match_cells(s, lines);
    let want_lines = index_lists(&want["cell_lines"]);
    assert_eq!(cell_lines, want_lines, "{name}: OCR lines per cell");
    let mut kept: Vec<usize> = cell_lines.iter().flatten().copied().collect();
    kept.sort_unstable();
    let want_kept: Vec<usize> = want["filtered_ocr"]
        .as_array()
        .expect("filtered_ocr")
        .iter()
        .map(usize_of)
        .collect();
    assert_eq!(kept, want_kept, "{name}: OCR lines kept by the filter");
    assert_eq!(
        match_table(s, lines),
        want["html"].as_str().expect("html"),
        "{name}: final HTML"
    );
}

/// The fixture's documented preprocessing, rebuilt from the crop PNG with the OCR stage's
/// bit-exact `INTER_LINEAR` resize: it must reproduce the stored statistics and input band, so
/// the recipe in slanet.json (resize by truncated `int(side * 488 / longer)`, normalise, pad
/// top-left with zeros) is the one the model's fixture outputs were made from.
#[test]
fn crop_png_and_recipe_reproduce_the_fixture_input() {
    let (info, fx) = (info(), tensors());
    let size = SLANET_PLUS_INPUT_SIZE;
    for k in 0..2 {
        let case = &info["cases"][k];
        let rgb = image::open(dir().join(case["crop_png"].as_str().expect("png name")))
            .expect("crop PNG")
            .to_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        assert_eq!(
            (w, h),
            (
                usize_of(&case["crop_width"]),
                usize_of(&case["crop_height"])
            )
        );
        // cv2.imwrite stored BGR as an RGB PNG; back to BGR.
        let bgr: Vec<u8> = rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
        let ratio = size as f64 / w.max(h) as f64;
        let (rw, rh) = ((w as f64 * ratio) as usize, (h as f64 * ratio) as usize);
        assert_eq!(
            (rw, rh),
            (
                usize_of(&case["resized_width"]),
                usize_of(&case["resized_height"])
            ),
            "case {k}: resized size"
        );
        let src = Bgr {
            width: w,
            height: h,
            stride: w * 3,
            data: &bgr,
        };
        let resized = resize_linear(&src, rw, rh);
        let img = Bgr {
            width: rw,
            height: rh,
            stride: rw * 3,
            data: &resized,
        };
        let mut input = vec![0f32; 3 * size * size];
        normalize_into(
            &img,
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
            false,
            &mut input,
            size,
            size,
        );
        let band = f32s(&fx[&format!("case{k}.input_band")]);
        let rows = case["input_band_rows"].as_array().expect("band rows");
        let (r0, r1) = (usize_of(&rows[0]), usize_of(&rows[1]));
        let got_band: Vec<f32> = (0..3)
            .flat_map(|c| {
                let plane = &input[c * size * size..(c + 1) * size * size];
                plane[r0 * size..r1 * size].to_vec()
            })
            .collect();
        assert!(
            got_band == band,
            "case {k}: input band rows {r0}..{r1} differ"
        );
        let stats = fx[&format!("case{k}.input_stats")]
            .to_vec1::<f64>()
            .expect("f64 stats");
        let sum: f64 = input.iter().map(|&v| f64::from(v)).sum();
        let sq: f64 = input.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        for (name, got, want) in [("sum", sum, stats[0]), ("sum of squares", sq, stats[1])] {
            assert!(
                (got - want).abs() <= STATS_REL_TOLERANCE * want.abs(),
                "case {k}: input {name} {got} vs {want}"
            );
        }
    }
}
