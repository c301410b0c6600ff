//! Native candle PP-OCRv5 det/rec forward time at typical input sizes.
//! Run with `cargo bench --bench ocr_models` (after `pipebench setup`).
//! The onnxruntime side of the comparison is benches/ocr_reference.py.

use std::time::Instant;

use candle_core::{Device, Tensor};
use pipebench::models::db_det::DbDetector;
use pipebench::models::svtr_rec::SvtrRecognizer;
use pipebench::models::weights::card;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[runs / 2]
}

fn main() -> anyhow::Result<()> {
    let root = pipebench::assets::cache_root(None);
    let dev = Device::Cpu;
    let det_files = card("ppocrv5-det")?.ensure(&root, true, false, &mut |_| {})?;
    let rec_files = card("ppocrv5-rec")?.ensure(&root, true, false, &mut |_| {})?;
    let det = DbDetector::from_onnx_file("ppocrv5-det", &det_files.onnx, &dev)?;
    let rec = SvtrRecognizer::from_onnx_file("ppocrv5-rec", &rec_files.onnx, &dev)?;
    println!("threads: {}", candle_core::utils::get_num_threads());
    for (h, w) in [(960, 672), (1760, 1248)] {
        let x = Tensor::randn(0f32, 1.0, (1, 3, h, w), &dev)?;
        let ms = median_ms(5, || {
            let _ = det.forward(&x);
        });
        let [b, n, hd] = det.profile(&x)?;
        println!("det 1x3x{h}x{w}: {ms:.1} ms (backbone {b:.1}, neck {n:.1}, head {hd:.1})");
    }
    for (cin, cout, h, w) in [(96, 24, 240, 168), (96, 24, 120, 84), (96, 24, 440, 312)] {
        let x = Tensor::randn(0f32, 1.0, (1, cin, h, w), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (cout, cin, 3, 3), &dev)?;
        let ms = median_ms(5, || {
            let _ = x.conv2d(&k, 1, 1, 1, 1);
        });
        println!("candle conv2d 3x3 {cin}->{cout} @ {h}x{w}: {ms:.1} ms");
    }
    for (n, w) in [(1, 320), (6, 320), (6, 960)] {
        let x = Tensor::randn(0f32, 1.0, (n, 3, 48, w), &dev)?;
        let ms = median_ms(7, || {
            let _ = rec.forward(&x);
        });
        let [b, nk, hd, sm] = rec.profile(&x)?;
        println!(
            "rec {n}x3x48x{w}: {ms:.1} ms ({:.1} ms per line; backbone {b:.1}, neck {nk:.1}, head {hd:.1}, softmax {sm:.1})",
            ms / n as f64
        );
    }
    Ok(())
}
