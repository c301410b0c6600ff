#!/usr/bin/env python3
"""onnxruntime side of benches/layout_table.rs: the same layout and table inputs, the median of
5 runs each (as on the candle side), batch 1, intra_op_num_threads = the thread count candle
used. Prints both sides and the ratio.

    python3 benches/layout_table_reference.py /tmp/lt
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

ort.set_default_logger_severity(3)
folder = sys.argv[1] if len(sys.argv) > 1 else "/tmp/pipebench-lt"
cand = json.load(open(f"{folder}/candle.json"))
inputs = load_file(f"{folder}/inputs.safetensors")
opts = ort.SessionOptions()
opts.intra_op_num_threads = cand["threads"]
opts.inter_op_num_threads = 1


def run(onnx, prefix, count):
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x0 = np.ascontiguousarray(inputs[f"{prefix}.0"]) if count else None
    if count:
        sess.run(None, {name: x0})  # warm-up, as on the candle side
    times = []
    for i in range(count):
        x = np.ascontiguousarray(inputs[f"{prefix}.{i}"])
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            sess.run(None, {name: x})
            runs.append((time.perf_counter() - t) * 1e3)
        times.append(sorted(runs)[2])
    return times


lay = run(cand["layout_onnx"], "layout", len(cand["layout_ms"]))
tab = run(cand["table_onnx"], "table", len(cand["table_ms"]))
mean = lambda v: sum(v) / max(len(v), 1)
print(f"onnxruntime {ort.__version__} ({cand['threads']} threads)")
print(f"layout: candle {mean(cand['layout_ms']):.1f} ms/page   onnxruntime {mean(lay):.1f} ms/page   ratio {mean(cand['layout_ms']) / mean(lay):.2f}x  ({len(lay)} pages)")
if tab:
    print(f"table:  candle {mean(cand['table_ms']):.1f} ms/table  onnxruntime {mean(tab):.1f} ms/table  ratio {sum(cand['table_ms']) / sum(tab):.2f}x  ({len(tab)} tables)")
    for c, o, s in zip(cand["table_ms"], tab, cand["table_steps"]):
        print(f"  table: {s:3d} steps  candle {c:8.1f} ms  onnxruntime {o:8.1f} ms")
