//! Layout (PP-PicoDet) per page and table structure (SLANet-plus) per table: native candle
//! model time on real pages, and the exact model inputs written out so that
//! benches/layout_table_reference.py times onnxruntime on the same tensors.
//!
//! Run (after `pipebench setup`): `cargo bench --bench layout_table -- corpora/sample 24 /tmp/lt`
//! (corpus, pages spread evenly over it, output folder), then
//! `python3 benches/layout_table_reference.py /tmp/lt` (needs onnxruntime and numpy).
//! Per input the median of `RUNS` runs (this shared machine's speed drifts by ±20 % between
//! seconds; a median per input on both sides keeps the ratio honest), batch 1 on both sides,
//! CPU threads as candle's default (physical cores) and onnxruntime's `intra_op_num_threads`
//! set to the same number.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use pipebench::corpus::Corpus;
use pipebench::corpus::pdfium::PdfiumOptions;
use pipebench::corpus::render::{RenderSpec, Renderer};
use pipebench::models::layout::stage::LayoutStage;
use pipebench::models::ocr::preprocess::Bgr;
use pipebench::models::table::decode::SLANET_PLUS_INPUT_SIZE;
use pipebench::models::table::stage::TableStage;
use pipebench::models::weights::load_card;

/// Runs per input; the median is reported.
const RUNS: usize = 5;

fn median_ms(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut v = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[RUNS / 2])
}

fn main() -> anyhow::Result<()> {
    // As the pipebench binary does (see `keep_freed_memory`).
    pipebench::models::device::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let corpus_dir = args.first().map_or("corpora/sample", String::as_str);
    let pages: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(24);
    let out = std::path::PathBuf::from(args.get(2).map_or("/tmp/pipebench-lt", String::as_str));
    std::fs::create_dir_all(&out)?;
    let root = pipebench::assets::cache_root(None);
    pipebench::corpus::pdfium::bind(&PdfiumOptions::default(), &mut |m| eprintln!("{m}"))?;
    let dev = Device::Cpu;
    let err = |e: pipebench::models::StageError| anyhow::anyhow!("{e}");
    let layout = LayoutStage::load("picodet-layout-cdla", &root, true, &dev).map_err(err)?;
    let table = TableStage::load("slanet-plus", 500, 1, &root, true, &dev).map_err(err)?;
    let (_, lf) = load_card("picodet-layout-cdla", &root, true).map_err(err)?;
    let (_, tf) = load_card("slanet-plus", &root, true).map_err(err)?;
    let (picodet, slanet, vocab) = (layout.network(), table.network(), table.vocab());

    let mut corpus = Corpus::discover(&[std::path::PathBuf::from(corpus_dir)])?;
    corpus.probe();
    let picked = corpus.pages_spread(pages);
    let spec = RenderSpec {
        dpi: 150.0,
        max_long_side_px: None,
    };
    let mut renderer = Renderer::new();
    let (iw, ih) = layout.input_size();
    let s = SLANET_PLUS_INPUT_SIZE;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let (mut layout_ms, mut table_ms, mut table_steps) = (Vec::new(), Vec::new(), Vec::new());
    let mut encode_ms = Vec::new();
    // Warm-up: first calls allocate.
    let warm = Tensor::zeros((1, 3, ih, iw), candle_core::DType::F32, &dev)?;
    picodet.forward(&warm)?;
    for (pi, p) in picked.iter().enumerate() {
        let doc = &corpus.documents[p.doc as usize];
        let img = renderer.render(&doc.path, p.page, &spec)?;
        let bgr = Bgr {
            width: img.width as usize,
            height: img.height as usize,
            stride: img.stride as usize,
            data: &img.data,
        };
        let mut x = vec![0f32; 3 * iw * ih];
        layout.preprocess(&bgr, &mut x);
        let x = Tensor::from_vec(x, (1, 3, ih, iw), &dev)?;
        layout_ms.push(median_ms(|| Ok(picodet.forward(&x).map(|_| ())?))?);
        tensors.insert(format!("layout.{pi}"), x);
        let regions = layout.detect(&[bgr])?.remove(0);
        for r in regions.iter().filter(|r| r.class == "table") {
            let [x0, y0, x1, y1] = r.bbox.map(|v| v.max(0.0) as usize);
            let (x1, y1) = (x1.min(bgr.width), y1.min(bgr.height));
            if x1 < x0 + 4 || y1 < y0 + 4 {
                continue;
            }
            let crop = Bgr {
                width: x1 - x0,
                height: y1 - y0,
                stride: bgr.stride,
                data: &bgr.data[y0 * bgr.stride + x0 * 3..],
            };
            let mut tx = vec![0f32; 3 * s * s];
            table.preprocess(&crop, &mut tx);
            let tx = Tensor::from_vec(tx, (1, 3, s, s), &dev)?;
            let o = slanet.forward(&tx, 500, vocab.eos())?;
            table_ms.push(median_ms(|| {
                Ok(slanet.forward(&tx, 500, vocab.eos()).map(|_| ())?)
            })?);
            table_steps.push(o.steps[0]);
            let t = Instant::now();
            slanet.encode(&tx)?;
            encode_ms.push(t.elapsed().as_secs_f64() * 1e3);
            tensors.insert(format!("table.{}", table_ms.len() - 1), tx);
        }
    }
    candle_core::safetensors::save(&tensors, out.join("inputs.safetensors"))?;
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let summary = serde_json::json!({
        "threads": candle_core::utils::get_num_threads(),
        "layout_onnx": lf.onnx, "table_onnx": tf.onnx,
        "layout_ms": layout_ms, "table_ms": table_ms, "table_steps": table_steps,
    });
    std::fs::write(
        out.join("candle.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!(
        "candle ({} threads): layout {} pages, {:.1} ms/page; SLANet {} tables, {:.1} ms/table (steps {:?})",
        candle_core::utils::get_num_threads(),
        layout_ms.len(),
        sum(&layout_ms) / layout_ms.len().max(1) as f64,
        table_ms.len(),
        sum(&table_ms) / table_ms.len().max(1) as f64,
        table_steps
    );
    let x = &tensors["layout.0"];
    let mut prof = [0f64; 3];
    for _ in 0..5 {
        let p = picodet.profile(x)?;
        prof.iter_mut().zip(p).for_each(|(a, b)| *a += b / 5.0);
    }
    println!(
        "  PicoDet breakdown: backbone {:.1} ms, neck {:.1} ms, head {:.1} ms",
        prof[0], prof[1], prof[2]
    );
    let mut layers = picodet.profile_backbone(x)?;
    for _ in 0..4 {
        for (acc, (_, ms)) in layers.iter_mut().zip(picodet.profile_backbone(x)?) {
            acc.1 += ms;
        }
    }
    for (name, ms) in layers.iter().filter(|(_, ms)| ms / 5.0 >= 0.5) {
        println!("    {name}: {:.2} ms", ms / 5.0);
    }
    let mut neck = [0f64; 4];
    for _ in 0..5 {
        let p = picodet.profile_neck(x)?;
        neck.iter_mut().zip(p).for_each(|(a, b)| *a += b / 5.0);
    }
    println!(
        "  CSP-PAN: reduce {:.1} ms, top-down {:.1} ms, bottom-up {:.1} ms (upsample + concat {:.1} ms)",
        neck[0], neck[1], neck[2], neck[3]
    );
    println!(
        "  SLANet encoder alone (second run on the same input): {:.1} ms/table",
        sum(&encode_ms) / encode_ms.len().max(1) as f64
    );
    if let Some(tx) = tensors.get("table.0") {
        let (layers, neck) = slanet.profile_encoder(tx)?;
        let bb: f64 = layers.iter().map(|(_, ms)| ms).sum();
        println!(
            "  SLANet encoder: backbone {bb:.1} ms (stem {:.1}); CSP-PAN reduce {:.1}, top-down {:.1}, bottom-up {:.1} (glue {:.1}) ms",
            layers[0].1, neck[0], neck[1], neck[2], neck[3]
        );
    }
    println!("inputs and timings: {}", out.display());
    Ok(())
}
