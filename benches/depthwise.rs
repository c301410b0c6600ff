//! Depthwise convolution: pipebench's CPU kernel vs candle's grouped `conv2d`, on layer shapes
//! from PP-OCR det/rec. Run with `cargo bench --bench depthwise`.
//!
//! Each case is warmed up, then timed over enough iterations for ~0.5 s; the figure is the
//! median of 5 such rounds, in milliseconds per call.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use pipebench::models::ops::depthwise::DepthwiseConv2d;

fn time_ms(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let one = t.elapsed().as_secs_f64().max(1e-6);
    let iters = ((0.1 / one) as usize).clamp(1, 10_000);
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / iters as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

/// (name, (N, C, H, W), kernel, stride)
type Case = (
    &'static str,
    (usize, usize, usize, usize),
    usize,
    (usize, usize),
);

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    println!("threads: {}", candle_core::utils::get_num_threads());
    println!(
        "{:<40} {:>12} {:>12} {:>8}",
        "case (N,C,H,W) k stride", "pipebench ms", "candle ms", "speedup"
    );
    let cases: &[Case] = &[
        ("det stage1 dw", (1, 48, 240, 168), 3, (1, 1)),
        ("det stem dw", (1, 16, 480, 336), 3, (1, 1)),
        ("det downsample dw", (1, 64, 240, 168), 3, (2, 2)),
        ("det stage4 dw k5", (1, 384, 30, 21), 5, (1, 1)),
        ("rec dw stride (2,1)", (6, 96, 12, 160), 3, (2, 1)),
        ("rec dw k5 3x80", (6, 480, 3, 80), 5, (1, 1)),
    ];
    for (name, (n, c, h, w), k, stride) in cases {
        let x = Tensor::randn(0f32, 1.0, (*n, *c, *h, *w), &dev)?;
        let wt = Tensor::randn(0f32, 1.0, (*c, 1, *k, *k), &dev)?;
        let b = Tensor::zeros(*c, DType::F32, &dev)?;
        let p = k / 2;
        let layer = DepthwiseConv2d::new(wt, Some(b), *stride, (p, p, p, p))?;
        let ours = time_ms(|| {
            let _ = layer.forward(&x);
        });
        let theirs = time_ms(|| {
            let _ = layer.forward_generic(&x);
        });
        let label = format!("{name} {:?} k{k} s{:?}", (n, c, h, w), stride);
        println!(
            "{label:<40} {ours:>12.3} {theirs:>12.3} {:>7.1}x",
            theirs / ours
        );
    }
    Ok(())
}
