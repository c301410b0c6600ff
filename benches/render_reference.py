#!/usr/bin/env python3
"""Reference render timings for `pipebench bench-render`: pypdfium2 and PyMuPDF on the same
corpus at the same dpi, one process and N processes.

    python3 -m pip install pypdfium2==5.15.2 pymupdf
    python3 benches/render_reference.py corpora/sample --dpi 150 --runs 3 --processes 1,2

What is timed per page matches pipebench's render stage: open the document (once per document),
load the page, render it into a 24-bit bitmap, and get the pixels as an array (pypdfium2:
`to_numpy()`, a view of pdfium's BGR buffer; PyMuPDF: `get_pixmap()`, RGB samples).
"""
import argparse
import glob
import multiprocessing as mp
import os
import statistics
import time


def pdf_files(inputs):
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += sorted(glob.glob(os.path.join(p, "**", "*.pdf"), recursive=True))
        else:
            out.append(p)
    return out


def render_pypdfium2(jobs, dpi):
    import pypdfium2 as pdfium

    n = 0
    current = None
    doc = None
    for path, index in jobs:
        if path != current:
            doc = pdfium.PdfDocument(path)
            current = path
        page = doc[index]
        bitmap = page.render(scale=dpi / 72.0)
        arr = bitmap.to_numpy()
        n += int(arr.shape[0] > 0)
    return n


def render_pymupdf(jobs, dpi):
    import pymupdf

    n = 0
    current = None
    doc = None
    for path, index in jobs:
        if path != current:
            doc = pymupdf.open(path)
            current = path
        pix = doc[index].get_pixmap(matrix=pymupdf.Matrix(dpi / 72.0, dpi / 72.0))
        n += int(len(pix.samples_mv) > 0)
    return n


ENGINES = {"pypdfium2": render_pypdfium2, "pymupdf": render_pymupdf}


def all_pages(files):
    import pypdfium2 as pdfium

    jobs = []
    for f in files:
        try:
            doc = pdfium.PdfDocument(f)
        except Exception:
            continue
        jobs += [(f, i) for i in range(len(doc))]
        doc.close()
    return jobs


def _worker(args):
    engine, jobs, dpi = args
    return ENGINES[engine](jobs, dpi)


def run(engine, jobs, dpi, procs, pool):
    t = time.perf_counter()
    if procs == 1:
        ENGINES[engine](jobs, dpi)
    else:
        # Contiguous chunks keep each worker on few documents (as pipebench's queue does when
        # pages are requested in corpus order).
        k = max(1, len(jobs) // (procs * 8))
        chunks = [jobs[i : i + k] for i in range(0, len(jobs), k)]
        pool.map(_worker, [(engine, c, dpi) for c in chunks])
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="+")
    ap.add_argument("--dpi", type=float, default=150.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--engines", default="pypdfium2,pymupdf")
    a = ap.parse_args()
    jobs = all_pages(pdf_files(a.corpus))
    print(f"render_reference: {len(jobs)} pages at {a.dpi} dpi, {a.runs} runs + 1 warm-up")
    for engine in a.engines.split(","):
        try:
            ENGINES[engine]([jobs[0]], a.dpi)
        except ImportError as e:
            print(f"  {engine}: not installed ({e})")
            continue
        for procs in [int(x) for x in a.processes.split(",")]:
            pool = mp.get_context("fork").Pool(procs) if procs > 1 else None
            run(engine, jobs, a.dpi, procs, pool)
            times = [run(engine, jobs, a.dpi, procs, pool) for _ in range(a.runs)]
            if pool:
                pool.close()
                pool.join()
            mean = statistics.mean(times)
            sd = statistics.stdev(times) if len(times) > 1 else 0.0
            print(
                f"  {engine:<10} {procs} proc  {mean:8.3f} s ± {sd:.3f} s  "
                f"{len(jobs) / mean:7.1f} pages/s  {mean * 1e3 / len(jobs):6.2f} ms/page"
            )


if __name__ == "__main__":
    main()
