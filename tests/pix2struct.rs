//! Pix2Struct (DePlot's architecture) parity with transformers: a tiny random
//! `Pix2StructForConditionalGeneration` (every parameter randomized, the relative-position
//! bias included; masked patches in two of the three images; 24 generated tokens, enough to
//! reach the logarithmic position buckets) and its reference outputs, made once by
//! `scripts/pix2struct_fixtures.py` (transformers 5.25, torch 2.15). Encoder states and every
//! step's logits within 1e-4; greedy tokens exact alone, in a static batch and in continuous
//! batches; the processor (header, standardization, antialiased resize, patches) against
//! transformers' default image processor.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp, Tensor};
use common::{ids, max_abs_diff};
use pipebench::models::checkpoint;
use pipebench::models::generate::{self, Batching, Request};
use pipebench::models::pix2struct::{
    Encoder, Pix2Struct, Pix2StructConfig, Sequences, image_of, processor,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pix2struct")
}

fn load() -> (Pix2Struct, HashMap<String, Tensor>) {
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("config.json")).expect("config.json"),
    )
    .expect("json");
    let cfg = Pix2StructConfig::from_hf(&cfg).expect("config");
    let vb = checkpoint::from_dir(&dir(), &Device::Cpu).expect("weights");
    let model = Pix2Struct::load(&cfg, &vb).expect("model");
    let refs = candle_core::safetensors::load(dir().join("reference.safetensors"), &Device::Cpu)
        .expect("reference");
    (model, refs)
}

const TOL: f32 = 1e-4;

/// Encoder states of the batch and each image's (states, key mask).
fn encode(m: &Pix2Struct, r: &HashMap<String, Tensor>) -> (Tensor, Vec<(Tensor, Tensor)>) {
    let x = &r["flattened_patches"];
    let states = m.encoder.forward(x).expect("encoder");
    let mask = Encoder::key_mask(x).expect("mask");
    let images = (0..3)
        .map(|i| image_of(&states, &mask, i).expect("image"))
        .collect();
    (states, images)
}

#[test]
fn encoder_states_match_transformers_alone_and_in_a_batch() {
    let (m, r) = load();
    let (states, _) = encode(&m, &r);
    let d = max_abs_diff(&states, &r["encoder_hidden_states"]);
    assert!(d < TOL, "encoder states differ by {d}");
    // Each image alone: the same states (padding rows are keys masked out, not queries).
    for i in 0..3 {
        let one = m
            .encoder
            .forward(&r["flattened_patches"].i(i..i + 1).expect("image"))
            .expect("alone");
        let d = max_abs_diff(&one, &r["encoder_hidden_states"].i(i..i + 1).expect("ref"));
        assert!(d < TOL, "image {i} alone differs by {d}");
    }
    // The key mask is transformers' attention mask.
    let mask = Encoder::key_mask(&r["flattened_patches"]).expect("mask");
    let ours: Vec<Vec<f32>> = mask.to_vec2().expect("mask");
    let want: Vec<Vec<f32>> = r["attention_mask"].to_vec2().expect("mask");
    for (o, w) in ours.iter().zip(&want) {
        for (a, b) in o.iter().zip(w) {
            assert_eq!(*a == 0.0, *b == 1.0);
        }
    }
}

#[test]
fn every_decode_step_matches_transformers_logits() {
    let (m, r) = load();
    let (_, images) = encode(&m, &r);
    let want_tokens = ids(&r["greedy_tokens"]);
    let patches = r["flattened_patches"].dim(1).expect("patches");
    for (i, (states, mask)) in images.iter().enumerate() {
        let mut cache = m.decoder.new_cache(1, 32, patches).expect("cache");
        let mut logits = m.decoder.start(states, mask, &mut cache, 0).expect("start");
        for (s, want) in want_tokens[i].iter().enumerate() {
            let reference = r["step_logits"].i((i, s)).expect("ref");
            let d = max_abs_diff(&logits, &reference);
            assert!(d < TOL, "image {i} step {s}: logits differ by {d}");
            let tok = logits
                .argmax(0)
                .expect("argmax")
                .to_scalar::<u32>()
                .expect("t");
            assert_eq!(tok, *want, "image {i} step {s}");
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
    m: &Pix2Struct,
    images: &[(Tensor, Tensor)],
    lens: &[usize],
    batching: Batching,
    slots: usize,
) -> generate::Generated {
    let patches = images[0].0.dim(1).expect("patches");
    let cache = m.decoder.new_cache(slots, 32, patches).expect("cache");
    let mut seqs = Sequences {
        model: m,
        cache,
        images: images.to_vec(),
    };
    let requests: Vec<Request> = lens
        .iter()
        .map(|n| Request {
            max_new_tokens: 24,
            forced_len: Some(*n),
        })
        .collect();
    generate::generate(&mut seqs, &requests, batching, slots, &[]).expect("generate")
}

#[test]
fn greedy_tokens_are_identical_alone_in_static_and_in_continuous_batches() {
    let (m, r) = load();
    let (_, images) = encode(&m, &r);
    let want = ids(&r["greedy_tokens"]);
    assert_eq!(
        ids(&r["batched_tokens"]),
        want,
        "transformers: batched = alone"
    );
    // Single, static and continuous with all three at full length.
    for (batching, slots) in [
        (Batching::Single, 1),
        (Batching::Static, 3),
        (Batching::Continuous, 3),
    ] {
        let g = run(&m, &images, &[24, 24, 24], batching, slots);
        assert_eq!(g.tokens, want, "{batching:?}");
    }
    // Continuous with two places and sequences of different lengths: the short ones leave,
    // the third enters mid-way, every sequence's tokens are its reference's prefix.
    let lens = [9, 24, 17];
    let g = run(&m, &images, &lens, Batching::Continuous, 2);
    for (i, n) in lens.iter().enumerate() {
        assert_eq!(g.tokens[i], want[i][..*n].to_vec(), "sequence {i}");
    }
    assert!(
        g.stats.occupancy() > 1.5,
        "two places kept busy: {}",
        g.stats.occupancy()
    );
}

#[test]
fn the_processor_makes_the_references_patches() {
    let (_, r) = load();
    let img = image::open(dir().join("processor_input.png"))
        .expect("png")
        .to_rgb8();
    let p = processor::preprocess(&img, None, 64, processor::PATCH);
    let ours = p.tensor(&Device::Cpu).expect("tensor");
    let d = max_abs_diff(&ours, &r["processor_flattened_patches"]);
    assert!(
        d < TOL,
        "patches differ by {d} ({}×{} grid)",
        p.rows,
        p.cols
    );
    assert_eq!((p.rows, p.cols), (6, 9), "the reference's grid");
}

#[test]
fn the_header_is_drawn_above_the_chart_as_the_reference_draws_it() {
    let (_, r) = load();
    let chart = image::open(dir().join("chart_input.png"))
        .expect("png")
        .to_rgb8();
    let header = processor::header_image().expect("header");
    let stacked = processor::render_header(&chart, &header);
    let want = image::open(dir().join("chart_with_header.png"))
        .expect("png")
        .to_rgb8();
    assert_eq!(stacked.dimensions(), want.dimensions(), "geometry");
    let worst = stacked
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    assert_eq!(worst, 0, "pixels differ by up to {worst} levels");
    let p = processor::preprocess(&chart, Some(&header), 64, processor::PATCH);
    let ours = p.tensor(&Device::Cpu).expect("tensor");
    let d = max_abs_diff(&ours, &r["processor_flattened_patches_vqa"]);
    assert!(d < TOL, "patches with the header differ by {d}");
}
