//! Parity of the native candle PP-OCRv5 models with onnxruntime on committed fixtures
//! (tests/fixtures/ocr, made by make_ppocrv5_fixtures.py). No Python at test time.

use candle_core::{DType, Device, Tensor};
use pipebench::models::db_det::DbDetector;
use pipebench::models::weights::card;

fn fixtures() -> std::collections::HashMap<String, Tensor> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ocr/ppocrv5.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture file")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn ppocrv5_det_probability_map_matches_onnxruntime() {
    let files = card("ppocrv5-det")
        .expect("card")
        .ensure(
            &pipebench::assets::cache_root(None),
            false,
            false,
            &mut |m| eprintln!("{m}"),
        )
        .expect("weights");
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
    let files = card("ppocrv4-det")
        .expect("card")
        .ensure(
            &pipebench::assets::cache_root(None),
            false,
            false,
            &mut |m| eprintln!("{m}"),
        )
        .expect("weights");
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
