//! The render pool: worker processes render exactly what in-process rendering renders, in
//! parallel, and a bad document fails only its own request.

mod common;

use common::*;
use pipebench::corpus::Corpus;
use pipebench::corpus::render::{RenderError, RenderSpec, Renderer};
use pipebench::corpus::render_pool::RenderWorker;

const SPEC: RenderSpec = RenderSpec {
    dpi: 100.0,
    max_long_side_px: None,
};

#[test]
fn pool_pixels_equal_in_process_pixels() {
    bind_in_process();
    let mut corpus = Corpus::discover(&[smoke()]).expect("smoke corpus");
    corpus.probe();
    let pages = corpus.pages(None);
    assert_eq!(pages.len(), 9);
    let mut local = Renderer::new();
    let mut workers: Vec<RenderWorker> = (0..2)
        .map(|i| RenderWorker::spawn_exe(&exe(), i, pdfium_lib()).expect("worker starts"))
        .collect();
    for (i, p) in pages.iter().enumerate() {
        let path = &corpus.documents[p.doc as usize].path;
        let a = local
            .render(path, p.page, &SPEC)
            .expect("in-process render");
        let b = workers[i % 2]
            .render(path, p.page, &SPEC)
            .expect("pool render");
        assert_eq!(
            (a.width, a.height, a.stride),
            (b.image.width, b.image.height, b.image.stride)
        );
        assert!(
            a.data == b.image.data,
            "pixels differ on {}",
            corpus.page_id(p)
        );
        assert!(b.render_ns > 0);
        // Not a blank page: real content was drawn.
        assert!(
            a.data.iter().any(|&v| v < 128),
            "page {} is blank",
            corpus.page_id(p)
        );
    }
}

#[test]
fn large_pages_fall_back_to_the_pipe() {
    bind_in_process();
    let path = smoke().join("census-12s0324-table.pdf");
    // 1200 dpi: ~10200 × 13200 × 3 bytes ≈ 400 MB, beyond the 64 MiB shared buffer.
    let spec = RenderSpec {
        dpi: 1200.0,
        max_long_side_px: None,
    };
    let mut w = RenderWorker::spawn_exe(&exe(), 0, pdfium_lib()).expect("worker starts");
    let got = w.render(&path, 0, &spec).expect("render");
    assert!(got.image.data.len() > 64 << 20);
    assert_eq!(
        got.image.data.len(),
        (got.image.stride * got.image.height) as usize
    );
    // And the worker is still usable afterwards through shared memory.
    let small = w.render(&path, 0, &SPEC).expect("render");
    let local = Renderer::new()
        .render(&path, 0, &SPEC)
        .expect("in-process render");
    assert_eq!(
        (small.image.width, small.image.height),
        (local.width, local.height)
    );
    assert!(small.image.data == local.data);
}

#[test]
fn a_bad_document_fails_only_its_request() {
    bind_in_process();
    let mut w = RenderWorker::spawn_exe(&exe(), 0, pdfium_lib()).expect("worker starts");
    let err = w
        .render(&bad_dir().join("encrypted.pdf"), 0, &SPEC)
        .expect_err("encrypted");
    assert_eq!(err, RenderError::Encrypted);
    let err = w
        .render(&bad_dir().join("corrupt.pdf"), 0, &SPEC)
        .expect_err("corrupt");
    assert_eq!(err, RenderError::Corrupt);
    let err = w
        .render(&smoke().join("census-12s0324-table.pdf"), 5, &SPEC)
        .expect_err("no such page");
    assert_eq!(err, RenderError::NoSuchPage { page: 5, pages: 1 });
    w.render(&smoke().join("census-12s0324-table.pdf"), 0, &SPEC)
        .expect("still works");
    assert!(w.pid().is_some());
}

#[test]
fn a_dead_worker_is_restarted() {
    bind_in_process();
    let mut w = RenderWorker::spawn_exe(&exe(), 0, pdfium_lib()).expect("worker starts");
    let pid = w.pid().expect("alive");
    // SAFETY: sending SIGKILL to our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let path = smoke().join("census-12s0324-table.pdf");
    let err = w
        .render(&path, 0, &SPEC)
        .expect_err("the killed worker fails this request");
    assert!(matches!(err, RenderError::Worker(_)), "{err:?}");
    let ok = w
        .render(&path, 0, &SPEC)
        .expect("a fresh worker serves the next one");
    assert!(ok.image.width > 0);
    assert_ne!(w.pid(), Some(pid));
}

#[test]
fn pool_workers_render_in_parallel_through_the_executor() {
    use pipebench::metrics::Clock;
    use pipebench::metrics::span::{Collector, WorkerId, WorkerKind};
    use pipebench::page::PageWork;
    use pipebench::pipeline::executor::Executor;
    use pipebench::pipeline::render_stage::PoolRender;
    use pipebench::vocab::StageKind;
    use std::sync::Arc;

    bind_in_process();
    let mut corpus = Corpus::discover(&[smoke()]).expect("smoke corpus");
    corpus.probe();
    let pages = corpus.pages(None);
    let collector = Collector::start(true);
    let exec = Executor::new(Clock::start(), candle_core::Device::Cpu, collector.sink());
    let (tx, rx) = crossbeam_channel::unbounded();
    for p in &pages {
        tx.send(*p).expect("queue");
    }
    drop(tx);
    std::thread::scope(|s| {
        for i in 0..2u16 {
            let (rx, exec, corpus) = (rx.clone(), &exec, &corpus);
            s.spawn(move || {
                let worker = RenderWorker::spawn_exe(&exe(), i as usize, pdfium_lib())
                    .expect("worker starts");
                let mut stage = PoolRender::new(worker, SPEC);
                for p in rx {
                    let d = &corpus.documents[p.doc as usize];
                    let mut w = [PageWork::new(
                        p,
                        Arc::from(corpus.page_id(&p)),
                        Arc::from(d.id.as_str()),
                        Arc::from(d.path.as_path()),
                    )];
                    exec.admit(&mut w[0]);
                    assert!(exec.run_stage(
                        &mut stage,
                        WorkerId {
                            kind: WorkerKind::RenderProcess,
                            index: i
                        },
                        &mut w
                    ));
                    assert!(w[0].image.as_ref().is_some_and(|im| im.width > 0));
                }
            });
        }
    });
    drop(exec);
    let c = collector.finish();
    assert_eq!(c.spans.len(), pages.len());
    // Each call carries the worker's own render time, summed per stage for the report.
    assert!(c.spans.iter().all(|s| s.worker_ns.is_some_and(|w| w > 0)));
    let worker_ns: u64 = c.spans.iter().filter_map(|s| s.worker_ns).sum();
    assert_eq!(c.stages[&StageKind::Render].worker_ns, Some(worker_ns));
    let workers: std::collections::BTreeSet<u16> = c.spans.iter().map(|s| s.worker.index).collect();
    assert_eq!(workers.len(), 2, "both processes rendered");
    let overlapping = c.spans.iter().any(|a| {
        c.spans
            .iter()
            .any(|b| a.worker != b.worker && a.start_ns < b.end_ns && b.start_ns < a.end_ns)
    });
    assert!(
        overlapping,
        "render spans of the two processes overlap in time"
    );
}
