#!/usr/bin/env bash
# GOT-OCR 2.0 and DePlot under the four strategies: the seed profile (DETR layout, GOT-OCR
# 2.0, Table Transformer, DePlot) with full-size seeded random weights and oracle output lengths, every shipped
# strategy back to back on the same pages. Prints pages/s, the speed-up over sequential,
# whether the output digests are equal, and where GOT's time goes (vision, prefill, decode),
# with tokens/s and sequences per decode step; and DePlot's (figures, encoder, decode) where
# the pages have figures.
#
#   benches/got_strategies.sh [CORPUS] [EXTRA RUN ARGS ...]
#   benches/got_strategies.sh corpora/sample/acm-sample-sigconf.pdf --max-pages 2
#   SCOPE=page OCR_BATCH=4 benches/got_strategies.sh corpora/sample --max-pages 8
#
# SCOPE=region (default: one sequence per text or table region, the prototype's way) or page
# (one sequence per page). With SCOPE=page, staged-batch and streaming-microbatch take
# OCR_BATCH pages per OCR call (default 4): a page is one sequence, so a call of one page has
# nothing to batch; DECODE_BATCH and MAX_NEW_TOKENS set those GOT options too. STRATEGIES
# overrides the list (names of strategies/*.toml; the table shows every report in $OUT, so
# runs can be added to a folder one at a time). Needs a release build and python3; reports go
# to $OUT (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-corpora/sample}
shift $(( $# > 0 ? 1 : 0 ))
bin=${PIPEBENCH_BIN:-target/release/pipebench}
out=${OUT:-$(mktemp -d)}
scope=${SCOPE:-region}
batch=${OCR_BATCH:-4}
strategies=${STRATEGIES:-sequential concurrent-render staged-batch streaming-microbatch}
for s in $strategies; do
    file=strategies/$s.toml
    if [ "$scope" != region ]; then
        # A copy with the OCR stage's scope and, for the batching strategies, its batch size.
        file=$out/$s.toml
        python3 - "strategies/$s.toml" "$file" "$scope" "$batch" <<'PY'
import os, sys
src, dst, scope, batch = sys.argv[1:]
lines = open(src).read().splitlines()
text = "\n".join(lines)
batching = 'kind = "staged-batch"' in text or 'kind = "streaming-microbatch"' in text
out, section = [], None
for line in lines:
    if line.startswith("["):
        section = line.strip()
        out.append(line)
        if section == "[stages.ocr]":
            out.append(f'scope = "{scope}"')
            for key in ("decode_batch", "max_new_tokens"):
                if os.environ.get(key.upper()):
                    out.append(f"{key} = {int(os.environ[key.upper()])}")
        continue
    if section == "[stages.ocr]":
        # GOT's own options are refused on the PP-OCR model the shipped files name.
        if line.startswith("model"):
            line = 'model = "got-ocr2"'
        if line.startswith("rec_batch_size"):
            continue
        if batching and line.startswith("batch_size"):
            line = f"batch_size = {batch}"
    out.append(line)
open(dst, "w").write("\n".join(out) + "\n")
PY
    fi
    /usr/bin/time -f "%e %U %S" -o "$out/$s.time" \
        "$bin" run -q "$corpus" --strategy "$file" --models seed --weights random "$@" \
        --spans none --force --out "$out/$s.json"
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
# Every strategy with a report in $OUT (so runs can be added to a folder), sequential first.
order = ["sequential", "concurrent-render", "staged-batch", "streaming-microbatch"]
names = [n for n in order if os.path.exists(f"{out}/{n}.json")]
names += sorted(f[:-5] for f in os.listdir(out) if f.endswith(".json") and f[:-5] not in order)
base = ref = None
print(f"{'strategy':<22} {'wall s':>8} {'pages/s':>8} {'vs seq':>7} {'digest':>10}  "
      f"{'GOT vision s':>12} {'prefill s':>9} {'decode s':>8} {'tokens':>7} {'steps':>6} {'seq/step':>8} {'tok/s':>6}  batching")
for n in names:
    r = json.load(open(f"{out}/{n}.json"))
    s = r["summary"]
    rate = s["pages_per_s"]
    base = base or rate
    ref = ref or r["output"]["digest"]
    same = "= seq" if r["output"]["digest"] == ref else "DIFFERS"
    ocr = next(x for x in r["stages"] if x["stage"] == "ocr")
    g = ocr.get("generation") or {}
    mode = r["strategy"]["parameters"]["stages"]["ocr"].get("batching", "?")
    print(f"{n:<22} {s['wall_ms']/1000:>8.1f} {rate:>8.4f} {rate/base:>6.2f}× {same:>10}  "
          f"{g.get('vision_ms', 0)/1000:>12.1f} {g.get('prefill_ms', 0)/1000:>9.1f} {g.get('decode_ms', 0)/1000:>8.1f} "
          f"{g.get('tokens_generated', 0):>7} {g.get('decode_steps', 0):>6} {g.get('sequences_per_step', 0):>8.2f} "
          f"{g.get('tokens_per_s', 0):>6.1f}  {mode}")
# The figure stage, when it generates (DePlot in the seed profile).
rows = []
for n in names:
    r = json.load(open(f"{out}/{n}.json"))
    fig = next((x for x in r["stages"] if x["stage"] == "figure"), None)
    g = (fig or {}).get("generation")
    if g:
        mode = r["strategy"]["parameters"]["stages"]["figure"].get("batching", "?")
        rows.append(f"{n:<22} {g.get('images', 0):>7} {g.get('vision_ms', 0)/1000:>9.1f} "
                    f"{g.get('decode_ms', 0)/1000:>8.1f} {g.get('tokens_generated', 0):>7} "
                    f"{g.get('decode_steps', 0):>6} {g.get('sequences_per_step', 0):>8.2f} "
                    f"{fig['busy_ms']/1000:>7.1f}  {mode}")
if rows:
    print(f"\n{'figure stage':<22} {'figures':>7} {'encoder s':>9} {'decode s':>8} {'tokens':>7} "
          f"{'steps':>6} {'seq/step':>8} {'busy s':>7}  batching")
    print("\n".join(rows))
r = json.load(open(f"{out}/{names[0]}.json"))
busy = {x["stage"]: x["busy_ms"] / 1000 for x in r["stages"]}
print("stage busy in " + names[0] + ": " + ", ".join(f"{k} {v:.1f} s" for k, v in busy.items()))
print(f"reports: {out}")
PY
