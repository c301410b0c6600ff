//! Parity of the native candle PP-OCRv5 models with onnxruntime on committed fixtures
//! (tests/fixtures/ocr, made by make_ppocrv5_fixtures.py). No Python at test time.

mod common;
use common::max_abs_diff;

use candle_core::{DType, Device, Tensor};
use pipebench::models::db_det::DbDetector;
use pipebench::models::weights::card;

fn fixtures() -> std::collections::HashMap<String, Tensor> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ocr/ppocrv5.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture file")
}

/// The cached (fetched on first use) weights of a model card.
fn weights(id: &str) -> pipebench::models::weights::ModelFiles {
    card(id)
        .expect("card")
        .ensure(
            &pipebench::assets::cache_root(None),
            false,
            false,
            &mut |m| eprintln!("{m}"),
        )
        .expect("weights")
}

#[test]
fn ppocrv5_det_probability_map_matches_onnxruntime() {
    let files = weights("ppocrv5-det");
    let det =
        DbDetector::from_onnx_file("ppocrv5-det", &files.onnx, &Device::Cpu).expect("model loads");
    let fx = fixtures();
    let input = fx["det.input"].to_dtype(DType::F32).expect("f32");
    let expected = &fx["det.prob"];
    let got = det.forward(&input).expect("forward");
    let diff = max_abs_diff(&got, expected);
    eprintln!("ppocrv5-det: max |candle - onnxruntime| = {diff:e}");
    assert!(
        diff <= 1e-3,
        "max |candle - onnxruntime| = {diff} (tolerance 1e-3)"
    );
    // The map is not trivially flat: text pixels are confidently on, background off.
    let on = got
        .ge(0.3)
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.mean_all())
        .and_then(|m| m.to_scalar::<f32>())
        .expect("mean");
    assert!((0.02..0.6).contains(&on), "fraction of text pixels {on}");
}

#[test]
fn ppocrv4_det_loads_through_the_same_architecture() {
    let files = weights("ppocrv4-det");
    let det = DbDetector::from_onnx_file("ppocrv4-det", &files.onnx, &Device::Cpu)
        .expect("every parameter group is consumed in order");
    let input = fixtures()["det.input"].clone();
    let got = det.forward(&input).expect("forward");
    assert_eq!(got.dims(), &[1, 1, 192, 256]);
    let on = got
        .ge(0.3)
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.mean_all())
        .and_then(|m| m.to_scalar::<f32>())
        .expect("mean");
    assert!(
        (0.02..0.6).contains(&on),
        "v4 finds text on the same crop: fraction {on}"
    );
}

#[test]
fn ppocrv5_rec_probabilities_match_onnxruntime() {
    use pipebench::models::svtr_rec::SvtrRecognizer;
    let files = weights("ppocrv5-rec");
    let rec = SvtrRecognizer::from_onnx_file("ppocrv5-rec", &files.onnx, &Device::Cpu)
        .expect("model loads");
    let fx = fixtures();
    let probs = rec.forward(&fx["rec.input"]).expect("forward");
    assert_eq!(probs.dim(2).expect("classes"), 18385);
    let idx = fx["rec.class_idx"].to_dtype(DType::U32).expect("u32");
    let got = probs.index_select(&idx, 2).expect("slice");
    let diff = max_abs_diff(&got, &fx["rec.probs"]);
    eprintln!(
        "ppocrv5-rec: max |candle - onnxruntime| = {diff:e} over {:?}",
        got.dims()
    );
    assert!(
        diff <= 1e-3,
        "max |candle - onnxruntime| = {diff} (tolerance 1e-3)"
    );
    let argmax = probs
        .argmax(2)
        .and_then(|a| a.to_dtype(DType::I64))
        .and_then(|a| a.to_vec2::<i64>())
        .expect("argmax");
    let expected = fx["rec.argmax"].to_vec2::<i64>().expect("argmax");
    assert_eq!(argmax, expected, "greedy CTC paths differ");
}

#[test]
fn ppocrv5_rec_decodes_the_reference_texts() {
    use pipebench::models::ocr::ctc::{Dictionary, greedy_decode};
    use pipebench::models::svtr_rec::SvtrRecognizer;
    let files = weights("ppocrv5-rec");
    let dict = Dictionary::from_aligned_lines(
        &std::fs::read_to_string(&files.files["dictionary"]).expect("dictionary"),
    );
    assert_eq!(dict.len(), 18385);
    let rec = SvtrRecognizer::from_onnx_file("ppocrv5-rec", &files.onnx, &Device::Cpu)
        .expect("model loads");
    let probs = rec.forward(&fixtures()["rec.input"]).expect("forward");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/ocr/ppocrv5.json"),
        )
        .expect("json"),
    )
    .expect("valid");
    for row in json["rec"]["decoded"].as_array().expect("decoded rows") {
        let r = row["row"].as_u64().expect("row") as usize;
        let p = probs
            .get(r)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("row probs");
        let d = greedy_decode(&p, 18385, &dict);
        assert_eq!(d.text, row["text"].as_str().expect("text"), "row {r}");
        let steps: Vec<usize> = row["kept_timesteps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|v| v.as_u64().expect("step") as usize)
            .collect();
        assert_eq!(d.steps, steps, "row {r}");
        assert!(
            (d.confidence as f64 - row["confidence"].as_f64().expect("conf")).abs() < 1e-4,
            "row {r}"
        );
    }
}

#[test]
fn ppocrv4_rec_loads_and_reads_the_same_line() {
    use pipebench::models::ocr::ctc::{Dictionary, greedy_decode};
    use pipebench::models::svtr_rec::SvtrRecognizer;
    let files = weights("ppocrv4-rec");
    let dict = Dictionary::from_character_list(&files.metadata["character"]);
    let rec = SvtrRecognizer::from_onnx_file("ppocrv4-rec", &files.onnx, &Device::Cpu)
        .expect("every parameter group is consumed in order");
    // v4 normalizes the same way as the fixture's rec input ((x/255 - 0.5) / 0.5).
    let probs = rec.forward(&fixtures()["rec.input"]).expect("forward");
    assert_eq!(probs.dim(2).expect("classes"), dict.len());
    let p = probs
        .get(2)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .expect("row");
    let d = greedy_decode(&p, dict.len(), &dict);
    assert!(d.text.contains("Elsevier"), "v4 read {:?}", d.text);
}

#[test]
fn preprocessing_reproduces_the_reference_inputs_bit_for_bit() {
    use pipebench::models::ocr::preprocess::{Bgr, normalize_into, rec_batch_width, rec_row};
    let fx = fixtures();
    // Detection: normalize the raw crop (no resize: 192×256 is already a multiple of 32).
    let img = fx["det.image_bgr"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<u8>())
        .expect("u8");
    let (h, w) = (192, 256);
    let mut det = vec![0f32; 3 * h * w];
    normalize_into(
        &Bgr {
            width: w,
            height: h,
            stride: w * 3,
            data: &img,
        },
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
        false,
        &mut det,
        w,
        h,
    );
    let expected = fx["det.input"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32");
    assert!(det == expected, "det input differs");
    // Recognition: resize each crop to height 48 and batch by width.
    let order = fx["rec.order"].to_vec1::<i64>().expect("order");
    let crops: Vec<(usize, usize, Vec<u8>)> = (0..3)
        .map(|i| {
            let t = &fx[&format!("rec.crop{i}")];
            let (h, w, _) = t.dims3().expect("hwc");
            (
                h,
                w,
                t.flatten_all().and_then(|t| t.to_vec1::<u8>()).expect("u8"),
            )
        })
        .collect();
    let max_ratio = crops
        .iter()
        .map(|(h, w, _)| *w as f64 / *h as f64)
        .fold(0.0, f64::max);
    let bw = rec_batch_width(48, 320, max_ratio);
    assert_eq!(bw, 432);
    let mut batch = vec![0f32; 3 * 3 * 48 * bw];
    for (row, &ci) in order.iter().enumerate() {
        let (h, w, data) = &crops[ci as usize];
        let crop = Bgr {
            width: *w,
            height: *h,
            stride: w * 3,
            data,
        };
        rec_row(
            &crop,
            48,
            bw,
            [0.5; 3],
            [0.5; 3],
            &mut batch[row * 3 * 48 * bw..(row + 1) * 3 * 48 * bw],
        );
    }
    let expected = fx["rec.input"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32");
    let differing = batch.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} rec input values differ",
        batch.len()
    );
}
