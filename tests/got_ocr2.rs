//! GOT-OCR 2.0 parity with transformers: a tiny random `GotOcr2ForConditionalGeneration`
//! (every parameter randomized, positions and relative positions included) and its reference
//! outputs, made once by `scripts/got_ocr2_fixtures.py` (transformers 5.25, torch 2.15).
//! Vision features and logits within 1e-4; greedy tokens exact, alone, in a static batch and
//! in continuous batches where sequences of different lengths come and go.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{ids, max_abs_diff};
use pipebench::models::checkpoint;
use pipebench::models::generate::{self, Batching, Request};
use pipebench::models::got_ocr2::{GotConfig, GotOcr2, Sequences, processor};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/got-ocr2")
}

fn load() -> (GotOcr2, HashMap<String, Tensor>) {
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("config.json")).expect("config.json"),
    )
    .expect("json");
    let cfg = GotConfig::from_hf(&cfg).expect("config");
    let vb = checkpoint::from_dir(&dir(), &Device::Cpu).expect("weights");
    let model = GotOcr2::load(&cfg, &vb).expect("model");
    let refs = candle_core::safetensors::load(dir().join("reference.safetensors"), &Device::Cpu)
        .expect("reference");
    (model, refs)
}

const TOL: f32 = 1e-4;

#[test]
fn vision_features_and_image_tokens_match_transformers() {
    let (m, r) = load();
    let px = &r["pixel_values"];
    let feats = m.vision_features(px).expect("vision");
    let d = max_abs_diff(&feats, &r["vision_features"]);
    assert!(d < TOL, "vision features differ by {d}");
    let tokens = m.project(&feats).expect("projector");
    let d = max_abs_diff(&tokens, &r["image_features"]);
    assert!(d < TOL, "image features differ by {d}");
}

/// Each prompt's image tokens and ids.
fn prompts(m: &GotOcr2, r: &HashMap<String, Tensor>) -> (Vec<Vec<u32>>, Vec<Tensor>) {
    let images = m.image_features(&r["pixel_values"]).expect("images");
    let images = (0..3).map(|i| images.i(i).expect("image")).collect();
    (ids(&r["input_ids"]), images)
}

#[test]
fn prefill_and_every_decode_step_match_transformers_logits() {
    let (m, r) = load();
    let (prompts, images) = prompts(&m, &r);
    let want_tokens = ids(&r["greedy_tokens"]);
    for (i, p) in prompts.iter().enumerate() {
        let mut cache = m.decoder.new_cache(1, 64).expect("cache");
        let e = m.prompt_embeddings(p, &images[i]).expect("embeddings");
        let mut logits = m.decoder.prefill(&e, &mut cache, 0).expect("prefill");
        let d = max_abs_diff(&logits, &r["prefill_logits"].i(i).expect("row"));
        assert!(d < TOL, "prompt {i}: prefill logits differ by {d}");
        for (step, &want_tok) in want_tokens[i].iter().enumerate() {
            let want = r["step_logits"].i((i, step)).expect("step");
            let d = max_abs_diff(&logits, &want);
            assert!(d < TOL, "prompt {i} step {step}: logits differ by {d}");
            let tok = logits
                .argmax(0)
                .expect("argmax")
                .to_scalar::<u32>()
                .expect("u32");
            assert_eq!(tok, want_tok, "prompt {i} step {step}");
            logits = m
                .decoder
                .step(&[tok], &mut cache)
                .expect("step")
                .squeeze(0)
                .expect("row");
        }
    }
}

fn run(
    m: &GotOcr2,
    prompts: &[Vec<u32>],
    images: &[Tensor],
    lens: &[usize],
    batching: Batching,
    slots: usize,
) -> generate::Generated {
    let mut seqs = Sequences {
        model: m,
        cache: m.decoder.new_cache(slots, 64).expect("cache"),
        prompts: prompts.to_vec(),
        images: images.to_vec(),
    };
    let reqs: Vec<Request> = lens
        .iter()
        .map(|&n| Request {
            max_new_tokens: 24,
            forced_len: Some(n),
        })
        .collect();
    generate::generate(&mut seqs, &reqs, batching, slots, &[]).expect("generate")
}

#[test]
fn greedy_tokens_are_identical_alone_in_static_and_in_continuous_batches() {
    let (m, r) = load();
    let (prompts, images) = prompts(&m, &r);
    let want = ids(&r["greedy_tokens"]);
    assert_eq!(want, ids(&r["batched_tokens"]), "the reference's own check");
    let full = [24, 24, 24];
    let alone = run(&m, &prompts, &images, &full, Batching::Single, 1);
    assert_eq!(alone.tokens, want);
    let stat = run(&m, &prompts, &images, &full, Batching::Static, 3);
    assert_eq!(stat.tokens, want);
    assert_eq!(
        stat.stats.decode_steps, 23,
        "three sequences share every step"
    );
    assert_eq!(stat.stats.step_sequences, 69);

    // Different lengths, two places: sequences leave and the third takes a freed place
    // mid-way (its cache row moves when an earlier one ends).
    let lens = [20, 5, 13];
    for (mode, slots) in [
        (Batching::Continuous, 2),
        (Batching::Static, 2),
        (Batching::Continuous, 3),
    ] {
        let g = run(&m, &prompts, &images, &lens, mode, slots);
        for (i, t) in g.tokens.iter().enumerate() {
            assert_eq!(
                t[..],
                want[i][..lens[i]],
                "{mode:?} × {slots}: sequence {i}"
            );
        }
    }
    // Continuous batching runs fewer steps than static with the same places.
    let c = run(&m, &prompts, &images, &lens, Batching::Continuous, 2);
    let s = run(&m, &prompts, &images, &lens, Batching::Static, 2);
    assert!(c.stats.decode_steps < s.stats.decode_steps);
    assert!(c.stats.occupancy() > s.stats.occupancy());
}

#[test]
fn the_processor_resizes_and_normalizes_as_the_reference_does() {
    let (_, r) = load();
    let img = image::open(dir().join("processor_input.png"))
        .expect("png")
        .to_rgb8();
    // The 8-bit resize is exact.
    let resized = processor::resize_bicubic(&img, 64, 64);
    let want_u8 = r["processor_resized_u8"]
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::U32))
        .and_then(|t| t.to_vec1::<u32>())
        .expect("u8");
    for (i, p) in resized.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(
                u32::from(p[c]),
                want_u8[c * 4096 + i],
                "pixel {i} channel {c}"
            );
        }
    }
    let ours = processor::normalize_tile(&img, 64);
    let ours = Tensor::from_vec(ours, (1, 3, 64, 64), &Device::Cpu).expect("tensor");
    let d = max_abs_diff(&ours, &r["processor_pixel_values"]);
    assert!(d < 1e-5, "pixels differ by {d}");

    // Crop mode (downscales): 16-pixel tiles, at most 4: a 2 × 2 grid row-major, then the
    // thumbnail.
    let tiles = processor::tiles(&img, 16, 4, &Device::Cpu).expect("tiles");
    let d = max_abs_diff(&tiles, &r["processor_crop_pixel_values"]);
    assert!(d < 1e-5, "crop-mode tiles differ by {d}");
}

#[test]
fn crop_mode_picks_the_references_tile_grids() {
    let refj: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("reference.json")).expect("reference.json"),
    )
    .expect("json");
    let cases = refj["processor"]["tile_choices_1024_min1_max12"]
        .as_array()
        .expect("cases");
    assert!(cases.len() >= 5);
    for c in cases {
        let n = |k: &str| c[k].as_u64().expect("number") as usize;
        assert_eq!(
            processor::tile_grid(n("width"), n("height"), 1, 12, 1024),
            (n("columns"), n("rows")),
            "{c}"
        );
    }
}
