//! `pipebench bench-render`: rendering alone, in-process vs a pool of worker processes, so the
//! parallel speed-up of the render pool is measured, not assumed.
//!
//! Every configuration renders every page of the corpus; pages are handed out from one queue
//! (workers pull the next page when free). Warm-up runs are untimed; each timed run reports
//! wall time, pages/s and ms/page; the summary gives mean ± standard deviation.

use std::path::Path;
use std::time::Instant;

use crate::ExitStatus;
use crate::cli::BenchRenderArgs;
use crate::corpus::render::{RenderSpec, Renderer};
use crate::corpus::render_pool::RenderWorker;
use crate::corpus::{Corpus, PageRef};

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
}

/// Renders `pages` once with `processes` workers (0 = in-process); returns (seconds, failed).
pub fn render_once(
    corpus: &Corpus,
    pages: &[PageRef],
    spec: &RenderSpec,
    processes: usize,
    library: &Path,
    workers: &mut Vec<RenderWorker>,
) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    if processes == 0 {
        let mut r = Renderer::new();
        let mut failed = 0;
        for p in pages {
            let doc = &corpus.documents[p.doc as usize];
            if r.render(&doc.path, p.page, spec).is_err() {
                failed += 1;
            }
        }
        return Ok((t.elapsed().as_secs_f64(), failed));
    }
    while workers.len() < processes {
        workers.push(RenderWorker::spawn(workers.len(), library)?);
    }
    let t = Instant::now();
    let (tx, rx) = crossbeam_channel::unbounded::<PageRef>();
    for p in pages {
        tx.send(*p).expect("receiver alive");
    }
    drop(tx);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in workers.iter_mut().take(processes) {
            let rx = rx.clone();
            let failed = &failed;
            s.spawn(move || {
                for p in rx {
                    let doc = &corpus.documents[p.doc as usize];
                    if w.render(&doc.path, p.page, spec).is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok((t.elapsed().as_secs_f64(), failed.into_inner()))
}

pub fn render(args: BenchRenderArgs) -> anyhow::Result<ExitStatus> {
    if crate::report::environment::build_profile() == "debug" {
        eprintln!(
            "pipebench: warning: this is a DEBUG build; timings are not representative (use --release)"
        );
    }
    let info = crate::assets::pdfium::bind(&args.pdfium, &mut |m| eprintln!("pipebench: {m}"))?;
    let library = std::path::PathBuf::from(&info.library);
    let mut corpus = Corpus::discover(&args.corpus)?;
    corpus.probe();
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
        let mut workers = Vec::new();
        for _ in 0..args.warmup {
            render_once(&corpus, &pages, &spec, procs, &library, &mut workers)?;
        }
        let mut runs = Vec::new();
        let mut failed = 0;
        for _ in 0..args.runs.max(1) {
            let (s, f) = render_once(&corpus, &pages, &spec, procs, &library, &mut workers)?;
            runs.push(s);
            failed = f;
        }
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        let var =
            runs.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (runs.len().max(2) - 1) as f64;
        let r = BenchResult {
            processes: procs,
            pages: pages.len(),
            failed,
            runs_s: runs,
            mean_s: mean,
            stddev_s: var.sqrt(),
            pages_per_s: pages.len() as f64 / mean,
            ms_per_page: mean * 1e3 / pages.len().max(1) as f64,
        };
        let label = if procs == 0 {
            "in-process".to_string()
        } else {
            format!("{procs} process{}", if procs == 1 { "" } else { "es" })
        };
        println!(
            "  {label:<14} {:>8.3} s ± {:.3} s   {:>7.1} pages/s   {:>6.2} ms/page{}",
            r.mean_s,
            r.stddev_s,
            r.pages_per_s,
            r.ms_per_page,
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
