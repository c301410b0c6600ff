//! The bench commands: `bench-render` (rendering alone, in-process vs a pool of worker
//! processes, so the render pool's parallel speed-up is measured, not assumed), `bench-ocr`
//! and `bench-seed` (models alone, against a Python reference on the same inputs).
//!
//! Every timed call goes through the pipeline's executor ([`Timed`]), so a bench figure is the
//! span a run records for the same call (device synchronized before and after, the run's
//! monotonic clock); the benches read no clock of their own.
//!
//! bench-render: every configuration renders every page of the corpus; pages are handed out
//! from one queue (workers pull the next page when free). Warm-up runs are untimed; each timed
//! run reports wall time (first call's start to last call's end), pages/s and ms/page, and for
//! worker processes their own render time vs the round trip; the summary gives mean ±
//! standard deviation.

use std::path::Path;

use candle_core::Device;

use crate::ExitStatus;
use crate::cli::BenchRenderArgs;
use crate::corpus::render::{RenderSpec, Renderer};
use crate::corpus::render_pool::RenderWorker;
use crate::corpus::{Corpus, PageRef};
use crate::metrics::Clock;
use crate::metrics::span::{Collected, Collector, WorkerId, WorkerKind};
use crate::models::Stage;
use crate::page::PageWork;
use crate::pipeline::executor::Executor;
use crate::pipeline::render_stage::{InProcessRender, PageRenderer, PoolRender, RenderStage};
use crate::pipeline::{DEVICE, RENDER_THREAD, new_work};
use crate::report::ms;
use crate::stats;
use crate::vocab::StageKind;

/// Stage calls timed by the pipeline's executor, into a collector of their own that keeps
/// every span.
struct Timed {
    collector: Collector,
    exec: Executor,
}

impl Timed {
    fn new(device: &Device) -> Self {
        let collector = Collector::start(true);
        let exec = Executor::new(Clock::start(), device.clone(), collector.sink());
        Self { collector, exec }
    }

    /// Runs `stage` on `batch`; a failed call is an error (the executor has printed it).
    fn call(
        &self,
        stage: &mut dyn Stage,
        worker: WorkerId,
        batch: &mut [PageWork],
    ) -> anyhow::Result<()> {
        if self.exec.run_stage(stage, worker, batch) {
            return Ok(());
        }
        let why = self.exec.errors().pop().map(|e| e.message);
        anyhow::bail!(
            "the {} stage failed: {}",
            stage.kind(),
            why.unwrap_or_default()
        )
    }

    /// The spans (in call order) and their per-stage aggregates.
    fn finish(self) -> Collected {
        drop(self.exec);
        self.collector.finish()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// 0 = in-process, else worker processes.
    pub processes: usize,
    pub pages: usize,
    pub failed: usize,
    pub runs_s: Vec<f64>,
    pub mean_s: f64,
    pub stddev_s: f64,
    pub pages_per_s: f64,
    pub ms_per_page: f64,
    /// Worker processes: their own open + render time per page, and the rest of each call
    /// (request, reply, pixel transfer), over the timed runs.
    pub worker_ms_per_page: Option<f64>,
    pub transfer_ms_per_page: Option<f64>,
}

/// One run's figures: wall, failed pages, the workers' own render time.
struct RenderRun {
    wall_s: f64,
    failed: usize,
    worker_ns: Option<u64>,
    busy_ns: u64,
}

/// Renders `pages` once with `stages`, one thread each pulling the next page from one queue,
/// every call through the executor.
fn render_once<R: PageRenderer>(
    corpus: &Corpus,
    pages: &[PageRef],
    stages: &mut [RenderStage<R>],
    kind: WorkerKind,
) -> RenderRun {
    let timed = Timed::new(&Device::Cpu);
    let (tx, rx) = crossbeam_channel::unbounded::<PageRef>();
    for p in pages {
        tx.send(*p).expect("receiver alive");
    }
    drop(tx);
    std::thread::scope(|s| {
        for (i, stage) in stages.iter_mut().enumerate() {
            let (rx, exec) = (rx.clone(), &timed.exec);
            let worker = WorkerId {
                kind,
                index: i as u16,
            };
            s.spawn(move || {
                for p in rx {
                    // A failed page is counted (and printed by the executor), not fatal.
                    exec.run_stage(stage, worker, &mut [new_work(corpus, p)]);
                }
            });
        }
    });
    let collected = timed.finish();
    let acc = collected
        .stages
        .get(&StageKind::Render)
        .cloned()
        .unwrap_or_default();
    RenderRun {
        wall_s: acc.last_end_ns.saturating_sub(acc.first_start_ns) as f64 / 1e9,
        failed: acc.items_failed as usize,
        worker_ns: acc.worker_ns,
        busy_ns: acc.busy_ns,
    }
}

pub fn render(args: BenchRenderArgs) -> anyhow::Result<ExitStatus> {
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    let info =
        crate::corpus::pdfium::bind(&(&args.pdfium).into(), &mut |m| eprintln!("pipebench: {m}"))?;
    let library = std::path::PathBuf::from(&info.library);
    let corpus = open_corpus(&args.corpus)?;
    let pages = corpus.pages(None);
    let spec = RenderSpec {
        dpi: args.dpi,
        max_long_side_px: None,
    };
    println!(
        "bench-render: {} ({} pages) at {} dpi, {} runs + {} warm-up, libpdfium {} ({})",
        corpus.name,
        pages.len(),
        args.dpi,
        args.runs,
        args.warmup,
        info.library,
        info.source
    );
    let mut results = Vec::new();
    for &procs in &args.processes {
        let mut local = [InProcessRender::new(Renderer::new(), spec)];
        let mut pool = (0..procs)
            .map(|i| RenderWorker::spawn(i, &library).map(|w| PoolRender::new(w, spec)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut once = || {
            if procs == 0 {
                render_once(&corpus, &pages, &mut local, WorkerKind::RenderThread)
            } else {
                render_once(&corpus, &pages, &mut pool, WorkerKind::RenderProcess)
            }
        };
        for _ in 0..args.warmup {
            once();
        }
        let runs: Vec<RenderRun> = (0..args.runs.max(1)).map(|_| once()).collect();
        let failed = runs.last().map_or(0, |r| r.failed);
        let worker_ns: Option<u64> = runs.iter().map(|r| r.worker_ns).sum();
        let busy_ns: u64 = runs.iter().map(|r| r.busy_ns).sum();
        let rendered = (pages.len() * runs.len()).max(1) as f64;
        let runs: Vec<f64> = runs.iter().map(|r| r.wall_s).collect();
        let mean = stats::mean(&runs).expect("at least one timed run");
        // One run has no spread to measure; 0 keeps the table and the JSON printable.
        let stddev = stats::sample_stddev(&runs).unwrap_or(0.0);
        let r = BenchResult {
            processes: procs,
            pages: pages.len(),
            failed,
            runs_s: runs,
            mean_s: mean,
            stddev_s: stddev,
            pages_per_s: pages.len() as f64 / mean,
            ms_per_page: mean * 1e3 / pages.len().max(1) as f64,
            worker_ms_per_page: worker_ns.map(|w| ms(w) / rendered),
            transfer_ms_per_page: worker_ns.map(|w| ms(busy_ns.saturating_sub(w)) / rendered),
        };
        let label = if procs == 0 {
            "in-process".to_string()
        } else {
            format!("{procs} process{}", if procs == 1 { "" } else { "es" })
        };
        println!(
            "  {label:<14} {:>8.3} s ± {:.3} s   {:>7.1} pages/s   {:>6.2} ms/page{}{}",
            r.mean_s,
            r.stddev_s,
            r.pages_per_s,
            r.ms_per_page,
            match (r.worker_ms_per_page, r.transfer_ms_per_page) {
                (Some(w), Some(t)) =>
                    format!("   (a page: {w:.2} ms rendering in a worker + {t:.2} ms round trip)"),
                _ => String::new(),
            },
            if failed > 0 {
                format!("   ({failed} pages failed)")
            } else {
                String::new()
            }
        );
        results.push(r);
    }
    if let Some(one) = results.iter().find(|r| r.processes == 1) {
        for r in results.iter().filter(|r| r.processes > 1) {
            println!(
                "  speed-up {} processes vs 1: {:.2}×",
                r.processes,
                r.pages_per_s / one.pages_per_s
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    Ok(ExitStatus::Ok)
}

/// The corpus, its documents probed (those that cannot be opened are left out of its pages).
fn open_corpus(inputs: &[std::path::PathBuf]) -> anyhow::Result<Corpus> {
    let mut corpus = Corpus::discover(inputs)?;
    corpus.probe();
    Ok(corpus)
}

/// `pipebench bench-ocr`: candle OCR on real pages, then onnxruntime on the same workload.
pub fn ocr(args: crate::cli::BenchOcrArgs) -> anyhow::Result<ExitStatus> {
    use crate::models::ocr::stage::{OcrRelease, OcrStage};
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    crate::corpus::pdfium::bind(&(&args.pdfium).into(), &mut |m| eprintln!("pipebench: {m}"))?;
    let release = OcrRelease::from_model_id(&args.model)
        .ok_or_else(|| anyhow::anyhow!("unknown OCR model `{}`: ppocrv5 or ppocrv4", args.model))?;
    let root = crate::assets::cache_root(args.pdfium.cache_dir.as_deref());
    let device = Device::Cpu;
    let mut stage = OcrStage::load(
        release,
        &args.model,
        args.rec_batch_size,
        crate::models::ocr::stage::OcrScope::Page,
        &root,
        args.pdfium.offline,
        &device,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Model time apart from pre/post-processing, and the input shapes for the reference: the
    // stage's opt-in profile (a run leaves it off).
    stage.set_profiling(true);
    let corpus = open_corpus(&args.corpus)?;
    let picked = corpus.pages_spread(args.pages);
    let spec = RenderSpec {
        dpi: args.dpi,
        ..RenderSpec::default()
    };
    let threads = candle_core::utils::get_num_threads();
    println!(
        "bench-ocr: {} pages of {} at {} dpi, {} (rec batch {}), candle on cpu with {threads} threads",
        picked.len(),
        corpus.name,
        args.dpi,
        args.model,
        args.rec_batch_size
    );
    // One page at a time, rendered then OCR'd, as the sequential strategy runs them.
    let mut render = InProcessRender::new(Renderer::new(), spec);
    let timed = Timed::new(&device);
    for p in &picked {
        let mut work = [new_work(&corpus, *p)];
        timed.call(&mut render, RENDER_THREAD, &mut work)?;
        timed.call(&mut stage, DEVICE, &mut work)?;
    }
    let prof = stage.take_profile().expect("profiling was turned on above");
    let collected = timed.finish();
    let busy_s = |kind| {
        collected
            .stages
            .get(&kind)
            .map_or(0.0, |a| a.busy_ns as f64 / 1e9)
    };
    let (ocr_s, render_s) = (busy_s(StageKind::Ocr), busy_s(StageKind::Render));
    let s = |ns: u64| ns as f64 / 1e9;
    println!(
        "  candle det: {} pages   model {:>8.2} s   with pre/post {:>8.2} s",
        prof.det_shapes.len(),
        s(prof.det_model_ns),
        s(prof.det_total_ns)
    );
    println!(
        "  candle rec: {} lines in {} batches   model {:>8.2} s   with pre/post {:>8.2} s",
        prof.lines,
        prof.rec_shapes.len(),
        s(prof.rec_model_ns),
        s(prof.rec_total_ns)
    );
    println!(
        "  OCR stage calls (det + rec + line routing, as a run times them): {ocr_s:.2} s, {:.2} s/page; rendering apart: {render_s:.2} s",
        ocr_s / picked.len().max(1) as f64
    );
    let files = |id: &str| {
        crate::models::weights::card(id).and_then(|c| c.ensure(&root, true, false, &mut |_| {}))
    };
    let (det_id, rec_id) = match release {
        OcrRelease::V5 => ("ppocrv5-det", "ppocrv5-rec"),
        OcrRelease::V4 => ("ppocrv4-det", "ppocrv4-rec"),
    };
    let workload = serde_json::json!({
        "threads": threads,
        "det_onnx": files(det_id)?.onnx,
        "rec_onnx": files(rec_id)?.onnx,
        "det_shapes": prof.det_shapes,
        "rec_shapes": prof.rec_shapes,
        "candle": { "det_model_s": s(prof.det_model_ns), "rec_model_s": s(prof.rec_model_ns), "det_total_s": s(prof.det_total_ns), "rec_total_s": s(prof.rec_total_ns), "stage_s": ocr_s },
    });
    let path = args.workload.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "pipebench-ocr-workload-{}.json",
            std::process::id()
        ))
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&workload)?)?;
    println!("  workload: {}", path.display());
    if args.no_reference {
        return Ok(ExitStatus::Ok);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ocr_reference.py");
    let py = std::env::var("PIPEBENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg("--workload")
        .arg(&path)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let r: serde_json::Value = serde_json::from_slice(&o.stdout)
                .map_err(|e| anyhow::anyhow!("reading {} output: {e}", script.display()))?;
            let (od, orr) = (
                r["det_model_s"].as_f64().unwrap_or(f64::NAN),
                r["rec_model_s"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "  onnxruntime {} ({} threads), same shapes: det {od:.2} s   rec {orr:.2} s",
                r["version"].as_str().unwrap_or("?"),
                r["threads"]
            );
            let (cd, cr) = (s(prof.det_model_ns), s(prof.rec_model_ns));
            println!(
                "  candle / onnxruntime (model time): det {:.2}x   rec {:.2}x   det+rec {:.2}x",
                cd / od,
                cr / orr,
                (cd + cr) / (od + orr)
            );
        }
        Ok(o) => eprintln!(
            "pipebench: onnxruntime reference skipped: {} failed: {}\n  fix: python3 -m pip install onnxruntime==1.32.0 numpy (or set PIPEBENCH_PYTHON)",
            script.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => eprintln!("pipebench: onnxruntime reference skipped: cannot run {py}: {e}"),
    }
    Ok(ExitStatus::Ok)
}

/// An owned BGR image (a rendered page or a crop of one).
struct OwnedBgr {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl OwnedBgr {
    fn view(&self) -> crate::models::ocr::preprocess::Bgr<'_> {
        crate::models::ocr::preprocess::Bgr {
            width: self.width,
            height: self.height,
            stride: self.width * 3,
            data: &self.data,
        }
    }

    /// Writes the image as an RGB PNG.
    fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let mut rgb = self.data.clone();
        for px in rgb.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        image::save_buffer(
            path,
            &rgb,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )?;
        Ok(())
    }
}

/// The batches of `n` images at batch size `b`: the image list repeated until it holds at least
/// `b`, cut into consecutive batches (the last may be shorter). benches/seed_torch.py makes the
/// same ones, so both sides time the same input shapes.
fn seed_batches(n: usize, b: usize) -> Vec<Vec<usize>> {
    let mut pool: Vec<usize> = (0..n).collect();
    while pool.len() < b && n > 0 {
        pool.extend(0..n);
    }
    pool.chunks(b.max(1)).map(<[usize]>::to_vec).collect()
}

/// One forward pass of a seed model on a prepared batch, as a stage so the executor times it
/// (pre- and post-processing stay outside, as in benches/seed_torch.py). The pages it is
/// handed are placeholders that tag its spans.
struct Forward<'a> {
    kind: StageKind,
    model: &'a crate::models::detr::stage::SeedModel,
    input: &'a crate::models::detr::preprocess::DetrBatch,
}

/// The span tag of bench-seed's warm-up calls (batches are tagged with their index).
const WARMUP: u32 = u32::MAX;

impl Stage for Forward<'_> {
    fn kind(&self) -> StageKind {
        self.kind
    }

    fn model(&self) -> crate::models::ModelInfo {
        crate::models::ModelInfo {
            stage: self.kind,
            id: self.model.card.id.clone(),
            is_test_stage: false,
            untrained: self.model.untrained,
            fallback: None,
            weights_sha256: self.model.weights_sha256.clone(),
        }
    }

    fn process(&mut self, _tags: &mut [PageWork]) -> Result<(), crate::models::StageError> {
        self.model
            .detr
            .forward(&self.input.pixels, &self.input.sizes)
            .map(drop)
            .map_err(crate::models::model_error)
    }
}

/// `pipebench bench-seed`: the seed models' forward passes in candle at several batch sizes on
/// real pages and table crops, then transformers on the same images (benches/seed_torch.py).
pub fn seed(args: crate::cli::BenchSeedArgs) -> anyhow::Result<ExitStatus> {
    use crate::models::detr::preprocess;
    use crate::models::detr::stage::{SeedModel, resolve_weights, seed_card};
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    crate::corpus::pdfium::bind(&(&args.pdfium).into(), &mut |m| eprintln!("pipebench: {m}"))?;
    let device = Device::Cpu;
    let root = crate::assets::cache_root(args.pdfium.cache_dir.as_deref());
    let corpus = open_corpus(&args.corpus)?;
    let picked = corpus.pages_spread(args.pages);
    let spec = RenderSpec {
        dpi: args.dpi,
        ..RenderSpec::default()
    };
    let mut renderer = Renderer::new();
    let mut pages = Vec::new();
    for p in &picked {
        let doc = &corpus.documents[p.doc as usize];
        let img = renderer.render(&doc.path, p.page, &spec)?;
        let (w, h, stride) = (img.width as usize, img.height as usize, img.stride as usize);
        let data = (0..h)
            .flat_map(|y| img.data[y * stride..y * stride + w * 3].iter().copied())
            .collect();
        pages.push(OwnedBgr {
            width: w,
            height: h,
            data,
        });
    }
    // Table crops: the tables the embedded layout model finds, as the pipeline's table stage
    // receives them.
    use crate::models::registry;
    let on_tables =
        |id: &str| registry::entry(id).is_some_and(|e| e.serves(crate::vocab::StageKind::Table));
    let needs_tables = args.models.iter().any(|m| on_tables(m));
    let mut tables = Vec::new();
    if needs_tables {
        let layout = crate::models::layout::stage::LayoutStage::load(
            crate::models::detr::stage::LAYOUT_FALLBACK,
            &root,
            args.pdfium.offline,
            &device,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        for page in &pages {
            let regions = layout.detect(&[page.view()])?;
            for r in regions.iter().flatten().filter(|r| r.class == "table") {
                let Some([x0, y0, x1, y1]) =
                    crate::models::routing::pixel_rect(r.bbox, 0.0, page.width, page.height)
                else {
                    continue;
                };
                let data = (y0..y1)
                    .flat_map(|y| {
                        page.data[(y * page.width + x0) * 3..(y * page.width + x1) * 3]
                            .iter()
                            .copied()
                    })
                    .collect();
                tables.push(OwnedBgr {
                    width: x1 - x0,
                    height: y1 - y0,
                    data,
                });
            }
        }
        tables.truncate(args.pages.max(1));
    }
    let dir = match &args.images_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("pipebench-bench-seed-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "bench-seed: {} pages of {} at {} dpi ({} table crops), weights {}, candle on cpu with {threads} threads; forward pass only",
        pages.len(),
        corpus.name,
        args.dpi,
        tables.len(),
        args.weights
    );
    println!(
        "  {:<20} {:>5} {:>7} {:>12} {:>12}   input shapes",
        "model", "batch", "images", "ms/image", "ms/batch"
    );
    let mut candle_rows: Vec<serde_json::Value> = Vec::new();
    for id in &args.models {
        let card = seed_card(id).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown seed model `{id}`: {}",
                registry::checkpoint_models().join(", ")
            )
        })?;
        let images: &[OwnedBgr] = if on_tables(id) { &tables } else { &pages };
        if images.is_empty() {
            eprintln!("pipebench: {id}: no input images (no tables found?); skipped");
            continue;
        }
        let files: Vec<std::path::PathBuf> = images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let p = dir.join(format!("{id}-{i}.png"));
                img.save_png(&p).map(|_| p)
            })
            .collect::<anyhow::Result<_>>()?;
        let masks = args.masks && card.checkpoint_class == "DetrForSegmentation";
        let model = SeedModel::load(
            &card,
            &resolve_weights(id, Some(&args.weights), None),
            masks,
            &device,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let norm = preprocess::Normalize {
            mean: card.mean,
            std: card.std,
        };
        let kind = if on_tables(id) {
            StageKind::Table
        } else {
            StageKind::Layout
        };
        for &bs in &args.batch_sizes {
            let (mut batch_ms, mut image_ms, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
            let batches = seed_batches(images.len(), bs);
            let timed = Timed::new(&device);
            for (bi, batch) in batches.iter().enumerate() {
                let prepared: Vec<_> = batch
                    .iter()
                    .map(|&i| preprocess::prepare(&images[i].view(), card.resize, norm))
                    .collect();
                let input = preprocess::batch(&prepared, &device)?;
                shapes.push(input.pixels.dims().to_vec());
                let mut forward = Forward {
                    kind,
                    model: &model,
                    input: &input,
                };
                // Each call's span is tagged with its batch; warm-up calls with WARMUP.
                let calls = std::iter::repeat_n(WARMUP, args.warmup)
                    .chain(std::iter::repeat_n(bi as u32, args.repeats.max(1)));
                for tag in calls {
                    timed.call(&mut forward, DEVICE, &mut [PageWork::placeholder(tag, id)])?;
                }
            }
            let spans = timed.finish().spans;
            for (bi, batch) in batches.iter().enumerate() {
                let times: Vec<f64> = spans
                    .iter()
                    .filter(|s| s.items == [bi as u32])
                    .map(|s| ms(s.end_ns - s.start_ns))
                    .collect();
                let m = stats::median(&times).unwrap_or(f64::NAN);
                batch_ms.push(m);
                image_ms.push(m / batch.len() as f64);
            }
            let row = serde_json::json!({
                "model": if masks { format!("{id}+masks") } else { id.clone() },
                "batch_size": bs,
                "images": seed_batches(images.len(), bs).iter().map(Vec::len).sum::<usize>(),
                "threads": threads,
                "ms_per_image_median": stats::median(&image_ms).unwrap_or(f64::NAN),
                "ms_per_batch_median": stats::median(&batch_ms).unwrap_or(f64::NAN),
                "input_shapes": shapes,
            });
            println!(
                "  {:<20} {:>5} {:>7} {:>12.1} {:>12.1}   {}",
                row["model"].as_str().unwrap_or(id),
                bs,
                row["images"],
                row["ms_per_image_median"].as_f64().unwrap_or(f64::NAN),
                row["ms_per_batch_median"].as_f64().unwrap_or(f64::NAN),
                serde_json::to_string(&row["input_shapes"])?
            );
            candle_rows.push(row);
        }
        let Some(py) = args.torch_python.as_ref().filter(|_| !masks) else {
            continue;
        };
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/seed_torch.py");
        let batch_list = args
            .batch_sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let reference_id = id.trim_end_matches("-v1.1");
        let mut cmd = std::process::Command::new(py);
        cmd.arg(&script)
            .args(["--model", reference_id, "--batch-sizes", &batch_list])
            .args(["--threads", &threads.to_string()])
            .args(["--repeats", &args.repeats.max(1).to_string()])
            .args(["--warmup", &args.warmup.to_string()]);
        match card.resize {
            preprocess::Resize::ShortestLongest { shortest, longest } => {
                cmd.args(["--size", &format!("{shortest},{longest}")]);
            }
            preprocess::Resize::Longest { longest } => {
                cmd.args(["--size", &format!("0,{longest}")]);
            }
        }
        cmd.arg("--images").args(&files);
        match cmd.output() {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let bs = r["batch_size"].as_u64().unwrap_or(0) as usize;
                    let torch_ms = r["ms_per_image_median"].as_f64().unwrap_or(f64::NAN);
                    let ours = candle_rows
                        .iter()
                        .find(|c| c["model"] == id.as_str() && c["batch_size"] == bs)
                        .and_then(|c| c["ms_per_image_median"].as_f64())
                        .unwrap_or(f64::NAN);
                    println!(
                        "  {:<20} {:>5} {:>7} {:>12.1} {:>12.1}   torch {} (same images, shapes {}); candle / torch {:.2}x",
                        format!("{reference_id} (torch)"),
                        bs,
                        r["images"],
                        torch_ms,
                        r["ms_per_batch_median"].as_f64().unwrap_or(f64::NAN),
                        r["torch"].as_str().unwrap_or("?"),
                        serde_json::to_string(&r["input_shapes"])?,
                        ours / torch_ms
                    );
                }
            }
            Ok(o) => eprintln!(
                "pipebench: transformers reference skipped: {} failed: {}",
                script.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => eprintln!(
                "pipebench: transformers reference skipped: cannot run {}: {e}",
                py.display()
            ),
        }
    }
    println!("  images: {}", dir.display());
    Ok(ExitStatus::Ok)
}

/// `pipebench bench-got`: GOT-OCR 2.0's vision, prefill and decode steps in candle, then
/// transformers on the same shapes (benches/got_torch.py).
pub fn got(args: crate::cli::BenchGotArgs) -> anyhow::Result<ExitStatus> {
    use crate::models::detr::stage::{WeightsChoice, resolve_weights};
    use crate::models::got_ocr2::stage::{GotOptions, GotStage};
    use std::time::Instant;
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    let device = Device::Cpu;
    let threads = crate::models::device::kernel_threads();
    let choice = resolve_weights("got-ocr2", Some(&args.weights), None);
    let t = Instant::now();
    let stage = GotStage::load(GotOptions::default(), &choice, &device)?;
    let load_s = t.elapsed().as_secs_f64();
    let m = stage.model();
    let cfg = &m.config;
    let untrained = matches!(choice, WeightsChoice::Random { .. });
    println!(
        "GOT-OCR 2.0 in candle ({}), {} threads, weights {} (loaded in {load_s:.1} s); decode reads {:.2} GB of weights per step",
        crate::report::environment::build_profile(),
        threads,
        if untrained {
            "random (seeded)"
        } else {
            "checkpoint"
        },
        cfg.text_config.decode_weight_bytes() as f64 / 1e9
    );
    let size = cfg.vision_config.image_size;
    // A page-like tile: a deterministic pattern (the cost does not depend on the pixels).
    let tile = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let v = ((x * 7 + y * 13) % 251) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    let px = crate::models::got_ocr2::processor::tiles(&tile, size, 1, &device)?;
    let (vision, image) = timed(args.vision_runs, || {
        Ok(m.image_features(&px)?.squeeze(0)?)
    })?;
    let vision_ms = median(&vision);
    println!(
        "  vision + projector, one {size}² tile: {vision_ms:.0} ms (median of {})",
        vision.len()
    );
    let card = crate::models::got_ocr2::stage::card().map_err(anyhow::Error::msg)?;
    let prompt = crate::models::got_ocr2::stage::estimated_prompt(&card, 1);
    let embeds = m.prompt_embeddings(&prompt, &image)?;
    let context = prompt.len() + args.steps + 4;
    let mut cache = m.decoder.new_cache(1, context)?;
    let (prefill, _) = timed(args.prefill_runs, || {
        cache.clear(0);
        Ok(m.decoder.prefill(&embeds, &mut cache, 0)?)
    })?;
    let prefill_ms = median(&prefill);
    println!(
        "  prefill, {} tokens: {prefill_ms:.0} ms (median of {})",
        prompt.len(),
        prefill.len()
    );
    println!(
        "  {:>9} {:>10} {:>10} {:>14}",
        "sequences", "ms/step", "tokens/s", "vs 1 sequence"
    );
    let mut decode = DecodeTable::default();
    for &b in &args.batch_sizes {
        let b = b.max(1);
        let mut c = m.decoder.new_cache(b, context)?;
        // Every sequence starts from the same prefilled prompt.
        c.clear(0);
        m.decoder.prefill(&embeds, &mut c, 0)?;
        for s in 1..b {
            c.copy_slot(0, s)?;
        }
        let last = vec![card.estimate.filler_token; b];
        let (times, _) = timed(args.steps, || Ok(m.decoder.step(&last, &mut c)?))?;
        decode.record(b, &times);
    }
    let mut out = serde_json::json!({
        "threads": threads,
        "weights": args.weights,
        "vision_ms": vision_ms,
        "prefill_ms": prefill_ms,
        "prompt_tokens": prompt.len(),
        "decode": decode.rows,
        "decode_weight_bytes": cfg.text_config.decode_weight_bytes(),
    });
    if let Some(py) = &args.torch_python {
        let flags = [
            ("--threads", threads.to_string()),
            ("--steps", args.steps.max(1).to_string()),
            ("--vision-runs", args.vision_runs.max(1).to_string()),
            ("--prefill-runs", args.prefill_runs.max(1).to_string()),
        ];
        if let Some(r) = torch_reference(py, "benches/got_torch.py", &flags) {
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            println!(
                "transformers {} / torch {} ({} threads), same shapes, its own random weights:",
                r["transformers_version"].as_str().unwrap_or("?"),
                r["torch_version"].as_str().unwrap_or("?"),
                r["threads"]
            );
            let tv = f(&r["vision_ms"]);
            let tp = f(&r["prefill_ms"]);
            println!(
                "  vision + projector: {tv:.0} ms (candle / torch {:.2}×)",
                vision_ms / tv
            );
            println!(
                "  prefill: {tp:.0} ms (candle / torch {:.2}×)",
                prefill_ms / tp
            );
            print_decode_vs_torch(&args.batch_sizes, &out, &r);
            out["torch"] = r;
        }
    }
    write_json(args.json.as_deref(), &out)?;
    Ok(ExitStatus::Ok)
}

pub fn deplot(args: crate::cli::BenchDeplotArgs) -> anyhow::Result<ExitStatus> {
    use crate::models::detr::stage::{WeightsChoice, resolve_weights};
    use crate::models::pix2struct::stage::{DeplotOptions, DeplotStage};
    use crate::models::pix2struct::{Encoder, processor};
    use std::time::Instant;
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    let device = Device::Cpu;
    let threads = crate::models::device::kernel_threads();
    let choice = resolve_weights("deplot", Some(&args.weights), None);
    let t = Instant::now();
    let opts = DeplotOptions {
        max_patches: Some(args.max_patches.max(1)),
        ..Default::default()
    };
    let stage = DeplotStage::load(opts, &choice, &device)?;
    let load_s = t.elapsed().as_secs_f64();
    let m = stage.model();
    let patches = stage.max_patches();
    let untrained = matches!(choice, WeightsChoice::Random { .. });
    let weight_bytes = m.decoder.step_weight_bytes();
    println!(
        "DePlot (Pix2Struct) in candle ({}), {} threads, weights {} (loaded in {load_s:.1} s); a decode step reads {:.2} GB of weights and {:.0} MB of cross-attention keys and values per sequence",
        crate::report::environment::build_profile(),
        threads,
        if untrained {
            "random (seeded)"
        } else {
            "checkpoint"
        },
        weight_bytes as f64 / 1e9,
        m.decoder.cross_bytes_per_sequence(patches) as f64 / 1e6
    );
    // A chart-like figure whose grid fills the patch budget exactly (the cost does not depend
    // on the pixels): a 1:2 image.
    let side = m.config.vision_config.patch_side();
    let (rows, cols) = processor::grid(1, 2, patches, side);
    let (rows, cols) = if rows * cols == 0 {
        (1, patches)
    } else {
        (rows, cols)
    };
    let img = image::RgbImage::from_fn((cols * side) as u32, (rows * side) as u32, |x, y| {
        let v = ((x * 7 + y * 13) % 251) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    let px = processor::preprocess(&img, None, patches, side).tensor(&device)?;
    let used = px
        .narrow(2, 0, 1)?
        .ne(0f32)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize;
    let mask = Encoder::key_mask(&px)?;
    let (enc, states) = timed(args.encoder_runs, || {
        Ok(m.encoder.forward_masked(&px, &mask)?)
    })?;
    let encoder_ms = median(&enc);
    println!(
        "  encoder, one figure of {used} patches ({patches} rows): {encoder_ms:.0} ms (median of {})",
        enc.len()
    );
    let context = args.context.max(1) + args.steps.max(1) + 2;
    let mut cache = m.decoder.new_cache(1, context, patches)?;
    let (start, _) = timed(3, || {
        cache.clear(0);
        Ok(m.decoder.start(&states, &mask, &mut cache, 0)?)
    })?;
    let start_ms = median(&start);
    println!(
        "  start (cross-attention keys and values, first token): {start_ms:.0} ms (median of {})",
        start.len()
    );
    println!(
        "  {:>9} {:>10} {:>10} {:>14}   (each sequence holds {} tokens)",
        "sequences",
        "ms/step",
        "tokens/s",
        "vs 1 sequence",
        args.context.max(1)
    );
    let mut decode = DecodeTable::default();
    for &b in &args.batch_sizes {
        let b = b.max(1);
        let mut c = m.decoder.new_cache(b, context, patches)?;
        for s in 0..b {
            m.decoder.start(&states, &mask, &mut c, s)?;
        }
        let last = vec![3u32; b];
        // Fill each sequence to `context` tokens, then time.
        for _ in 1..args.context.max(1) {
            m.decoder.step(&last, &mut c)?;
        }
        let (times, _) = timed(args.steps, || Ok(m.decoder.step(&last, &mut c)?))?;
        decode.record(b, &times);
    }
    let mut out = serde_json::json!({
        "threads": threads,
        "weights": args.weights,
        "max_patches": patches,
        "encoder_ms": encoder_ms,
        "start_ms": start_ms,
        "context": args.context.max(1),
        "decode": decode.rows,
        "decode_weight_bytes": weight_bytes,
    });
    if let Some(py) = &args.torch_python {
        let sizes = args
            .batch_sizes
            .iter()
            .map(|b| b.max(&1).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let flags = [
            ("--threads", threads.to_string()),
            ("--steps", args.steps.max(1).to_string()),
            ("--encoder-runs", args.encoder_runs.max(1).to_string()),
            ("--max-patches", patches.to_string()),
            ("--context", args.context.max(1).to_string()),
            ("--batch-sizes", sizes),
        ];
        if let Some(r) = torch_reference(py, "benches/deplot_torch.py", &flags) {
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            println!(
                "transformers {} / torch {} ({} threads, {} attention), same shapes, its own random weights:",
                r["transformers_version"].as_str().unwrap_or("?"),
                r["torch_version"].as_str().unwrap_or("?"),
                r["threads"],
                r["attn_implementation"].as_str().unwrap_or("?")
            );
            let te = f(&r["encoder_ms"]);
            let ts = f(&r["start_ms"]);
            println!(
                "  encoder: {te:.0} ms (candle / torch {:.2}×)",
                encoder_ms / te
            );
            println!("  start: {ts:.0} ms (candle / torch {:.2}×)", start_ms / ts);
            print_decode_vs_torch(&args.batch_sizes, &out, &r);
            out["torch"] = r;
        }
    }
    write_json(args.json.as_deref(), &out)?;
    Ok(ExitStatus::Ok)
}

/// The median of run times (NaN for none).
fn median(v: &[f64]) -> f64 {
    crate::stats::median(v).unwrap_or(f64::NAN)
}

/// `f` once untimed (warm-up), then `runs` (at least one) timed: the times in ms and the last
/// result.
fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<f64>, T)> {
    let mut last = f()?;
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        last = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((times, last))
}

/// Decode steps per number of sequences: a printed row each (tokens/s against one sequence)
/// and the JSON figures.
#[derive(Default)]
struct DecodeTable {
    rows: serde_json::Map<String, serde_json::Value>,
    tps1: Option<f64>,
}

impl DecodeTable {
    /// Records `b` sequences' step times (ms).
    fn record(&mut self, b: usize, times: &[f64]) {
        let ms = median(times);
        let tps = b as f64 / (ms / 1e3);
        if b == 1 {
            self.tps1 = Some(tps);
        }
        let tps1 = self.tps1.unwrap_or(f64::NAN);
        println!("  {b:>9} {ms:>10.1} {tps:>10.1} {:>13.2}×", tps / tps1);
        self.rows.insert(
            b.to_string(),
            serde_json::json!({"ms_per_step": ms, "tokens_per_s": tps}),
        );
    }
}

/// The decode steps of `ours` (`decode.<b>.ms_per_step`) against the reference's
/// (`decode_ms_per_step.<b>`), a line per number of sequences.
fn print_decode_vs_torch(sizes: &[usize], ours: &serde_json::Value, theirs: &serde_json::Value) {
    for b in sizes.iter().map(|b| (*b).max(1)) {
        let t = theirs["decode_ms_per_step"][b.to_string()]
            .as_f64()
            .unwrap_or(f64::NAN);
        let o = ours["decode"][b.to_string()]["ms_per_step"]
            .as_f64()
            .unwrap_or(f64::NAN);
        println!(
            "  decode, {b} sequences: {t:.1} ms/step (candle / torch {:.2}×)",
            o / t
        );
    }
}

/// Writes a bench command's figures to `path`, if given.
fn write_json(path: Option<&std::path::Path>, out: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(out)? + "\n")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs the transformers reference `script` (in this repository) with `py` and `flags` plus
/// `--json FILE`, and gives its figures; None (said on stderr) when it fails.
fn torch_reference(
    py: &std::path::Path,
    script: &str,
    flags: &[(&str, String)],
) -> Option<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let tmp = tempfile_path("torch.json");
    let mut cmd = std::process::Command::new(py);
    cmd.arg(&script);
    for (k, v) in flags {
        cmd.args([k, v.as_str()]);
    }
    let status = cmd
        .arg("--json")
        .arg(&tmp)
        .stdout(std::process::Stdio::null())
        .status();
    let r = status
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::read_to_string(&tmp).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    let _ = std::fs::remove_file(&tmp);
    if r.is_none() {
        eprintln!(
            "pipebench: transformers reference skipped: {} {} failed (python3 -m pip install -r scripts/requirements-fixtures.txt)",
            py.display(),
            script.display()
        );
    }
    r
}

/// A path in the temporary folder, unique to this process.
fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pipebench-{}-{name}", std::process::id()))
}
