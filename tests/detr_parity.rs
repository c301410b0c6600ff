//! Parity of the candle DETR / Table Transformer with transformers 5, on the tiny random-weight
//! checkpoints of tests/fixtures/detr (written by `save_pretrained` in
//! tests/fixtures/detr/generate.py, which also stored the inputs and the reference outputs).
//! Timm and HF-ResNet backbone names, post-norm DETR, pre-norm Table Transformer and a
//! `DetrForSegmentation` checkpoint (`detr.` prefix, mask head left out) are all covered. No
//! Python at test time.

mod common;
use common::{max_abs_diff, read_bgr_png};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use pipebench::models::checkpoint;
use pipebench::models::detr::postprocess::detections;
use pipebench::models::detr::preprocess::{Normalize, Resize, prepare};
use pipebench::models::detr::resnet::{Block, Naming, ResNetConfig};
use pipebench::models::detr::{Detr, DetrConfig};
use pipebench::models::ocr::preprocess::Bgr;

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 5] = [
    "detr_hfresnet",
    "detr_timm",
    "detr_seg_timm",
    "tatr_hfresnet",
    "tatr_timm",
];
/// Original (width, height) of image0.png and image1.png.
const ORIGINAL: [(f32, f32); 2] = [(61.0, 45.0), (50.0, 130.0)];

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/detr")
        .join(name)
}

fn tensors(path: PathBuf) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixtures' tiny timm backbones (registered under custom names by generate.py, so the
/// config cannot name a standard resnet).
fn tiny_timm(name: &str) -> Option<ResNetConfig> {
    match name {
        "pipebench_tiny_resnet_bottleneck" => Some(ResNetConfig {
            naming: Naming::Timm,
            block: Block::Bottleneck,
            depths: vec![1, 1, 1, 1],
            stem: 64,
            widths: vec![32, 48, 64, 80],
        }),
        "pipebench_tiny_resnet_basic" => Some(ResNetConfig {
            naming: Naming::Timm,
            block: Block::Basic,
            depths: vec![1, 1, 1, 1],
            stem: 64,
            widths: vec![64, 12, 16, 20],
        }),
        _ => None,
    }
}

fn load(name: &str) -> (Detr, bool) {
    load_with(name, false)
}

fn load_with(name: &str, masks: bool) -> (Detr, bool) {
    let d = dir(name);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).expect("config"))
            .expect("json");
    let custom = v["backbone_config"]["backbone"]
        .as_str()
        .and_then(tiny_timm);
    let cfg = DetrConfig::from_hf(&v, custom).unwrap_or_else(|e| panic!("{name}: {e}"));
    let vb = checkpoint::from_dir(&d, &Device::Cpu).expect("checkpoint");
    let seg = Detr::is_segmentation_checkpoint(&vb);
    (
        Detr::load(&cfg, &vb, seg, masks).unwrap_or_else(|e| panic!("{name}: {e}")),
        seg,
    )
}

fn check(name: &str, what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{name}: {what} shape");
    let d = max_abs_diff(got, want);
    if std::env::var_os("DETR_PARITY_PRINT").is_some() {
        eprintln!("{name} {what} {d:e}");
    }
    assert!(d < TOL, "{name}: {what} differs by {d}");
}

#[test]
fn every_fixture_matches_transformers_per_image() {
    for name in FIXTURES {
        let (model, seg) = load(name);
        assert_eq!(seg, name.contains("seg"), "{name}: detr. prefix detection");
        let inputs = tensors(dir(name).join("inputs.safetensors"));
        let want = tensors(dir(name).join("expected.safetensors"));
        for i in 0..2 {
            let x = &inputs[&format!("pixel_values_{i}")];
            let (_, _, h, w) = x.dims4().expect("4-D");
            let out = model.forward(x, &[(h, w)]).expect("forward");
            check(
                name,
                "features",
                &out.features,
                &want[&format!("features_{i}")],
            );
            check(
                name,
                "encoder output",
                &out.encoder_hidden,
                &want[&format!("encoder_last_hidden_state_{i}")],
            );
            check(
                name,
                "decoder output",
                &out.decoder_hidden,
                &want[&format!("last_hidden_state_{i}")],
            );
            check(name, "logits", &out.logits, &want[&format!("logits_{i}")]);
            check(name, "boxes", &out.boxes, &want[&format!("pred_boxes_{i}")]);

            // Post-processing at both thresholds the fixture stored.
            for (prefix, threshold) in [("post", 0.0f32), ("post02", 0.2)] {
                let Some(scores) = want.get(&format!("{prefix}_scores_{i}")) else {
                    continue;
                };
                let dets = detections(&out.logits, &out.boxes, &[ORIGINAL[i]], threshold)
                    .expect("post-process");
                let dets = &dets[0];
                let scores = scores.to_vec1::<f32>().expect("scores");
                let labels = want[&format!("{prefix}_labels_{i}")]
                    .to_vec1::<f32>()
                    .expect("l");
                let boxes = want[&format!("{prefix}_boxes_{i}")]
                    .to_vec2::<f32>()
                    .expect("b");
                assert_eq!(dets.len(), scores.len(), "{name} {prefix} image {i}: kept");
                for (k, d) in dets.iter().enumerate() {
                    assert_eq!(d.label as f32, labels[k], "{name} {prefix} {i}/{k} label");
                    assert!(
                        (d.score - scores[k]).abs() < TOL,
                        "{name} {prefix} {i}/{k} score"
                    );
                    for (a, b) in d.bbox.iter().zip(&boxes[k]) {
                        // Boxes are in original pixels (up to 130): relative tolerance.
                        assert!((a - b).abs() < TOL * 130.0, "{name} {prefix} {i}/{k} box");
                    }
                }
            }
        }
    }
}

#[test]
fn a_padded_batch_gives_each_image_its_unbatched_outputs() {
    for name in FIXTURES {
        let (model, _) = load(name);
        let inputs = tensors(dir(name).join("inputs.safetensors"));
        let want = tensors(dir(name).join("expected.safetensors"));
        let x = &inputs["pixel_values_batch"];
        let mask = inputs["pixel_mask_batch"].to_vec3::<f32>().expect("mask");
        // Each image's valid size from its pixel mask.
        let sizes: Vec<(usize, usize)> = mask
            .iter()
            .map(|m| {
                let h = m.iter().filter(|row| row[0] > 0.5).count();
                let w = m[0].iter().filter(|v| **v > 0.5).count();
                (h, w)
            })
            .collect();
        assert_eq!(sizes, vec![(48, 65), (80, 31)], "{name}");
        let out = model.forward(x, &sizes).expect("batched forward");
        for i in 0..2 {
            let logits = out.logits.narrow(0, i, 1).expect("row");
            let boxes = out.boxes.narrow(0, i, 1).expect("row");
            // Equal to the reference's unbatched outputs (and so to ours).
            check(
                name,
                "batched logits",
                &logits,
                &want[&format!("logits_{i}")],
            );
            check(
                name,
                "batched boxes",
                &boxes,
                &want[&format!("pred_boxes_{i}")],
            );
        }
    }
}

#[test]
fn the_segmentation_mask_head_matches_and_batches_exactly() {
    let name = "detr_seg_timm";
    let (model, seg) = load_with(name, true);
    assert!(seg);
    let inputs = tensors(dir(name).join("inputs.safetensors"));
    let want = tensors(dir(name).join("expected.safetensors"));
    for i in 0..2 {
        let x = &inputs[&format!("pixel_values_{i}")];
        let (_, _, h, w) = x.dims4().expect("4-D");
        let out = model.forward(x, &[(h, w)]).expect("forward");
        let masks = out.masks.expect("mask head loaded");
        check(
            name,
            "pred_masks",
            &masks,
            &want[&format!("pred_masks_{i}")],
        );
        // The detector's outputs do not change with the head on.
        check(name, "logits", &out.logits, &want[&format!("logits_{i}")]);
    }
    // Padded batch: each image's masks, on its valid quarter-size region, equal its own.
    let out = model
        .forward(&inputs["pixel_values_batch"], &[(48, 65), (80, 31)])
        .expect("batched forward");
    let masks = out.masks.expect("masks");
    for (i, (mh, mw)) in [(12usize, 17usize), (20, 8)].into_iter().enumerate() {
        let got = masks
            .narrow(0, i, 1)
            .and_then(|t| t.narrow(2, 0, mh))
            .and_then(|t| t.narrow(3, 0, mw))
            .expect("valid region");
        check(
            name,
            "batched pred_masks",
            &got,
            &want[&format!("pred_masks_{i}")],
        );
    }
    // A detector-only checkpoint has no mask head to load.
    let d = dir("detr_timm");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).expect("config"))
            .expect("json");
    let cfg = DetrConfig::from_hf(
        &v,
        v["backbone_config"]["backbone"]
            .as_str()
            .and_then(tiny_timm),
    )
    .expect("config");
    let vb = checkpoint::from_dir(&d, &Device::Cpu).expect("checkpoint");
    assert!(Detr::load(&cfg, &vb, false, true).is_err());
}

#[test]
fn preprocessing_matches_the_pil_image_processor() {
    let inputs = tensors(dir("detr_timm").join("inputs.safetensors"));
    let resize = Resize::ShortestLongest {
        shortest: 48,
        longest: 80,
    };
    for i in 0..2 {
        let (w, h, data) = read_bgr_png(dir("").join(format!("image{i}.png")));
        let img = Bgr {
            width: w,
            height: h,
            stride: w * 3,
            data: &data,
        };
        let (pixels, (oh, ow)) = prepare(&img, resize, Normalize::IMAGENET);
        let want = inputs[&format!("pixel_values_{i}")]
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("reference");
        assert_eq!((oh, ow), [(48, 65), (80, 31)][i], "image{i}: resize rule");
        assert_eq!(pixels.len(), want.len());
        // PIL's fixed-point resampling, reproduced: the upscaled image0 matches to float
        // rounding. Pillow 13 runs the two 8-bit passes in either order (its C code documents
        // horizontal first, which we follow); the order changes the intermediate rounding, so
        // the downscaled image1 may differ by one 8-bit level (1/255/std ≈ 0.0175) at a few
        // pixels.
        let one_level = 1.0 / 255.0 / 0.224 + 1e-4;
        let diffs: Vec<f32> = pixels
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let worst = diffs.iter().copied().fold(0.0f32, f32::max);
        let off = diffs.iter().filter(|d| **d > 1e-5).count();
        assert!(worst < one_level, "image{i}: differs by {worst}");
        assert!(
            off * 20 < diffs.len(),
            "image{i}: {off} of {} values differ",
            diffs.len()
        );
        if i == 0 {
            assert!(worst < 1e-5, "image0 (upscaled): {worst}");
        }
    }
}
