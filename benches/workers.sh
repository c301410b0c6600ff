#!/usr/bin/env bash
# Model workers on CPU: sequential with one worker on every thread against streaming-microbatch
# with two workers of one thread each (strategies/streaming-workers.toml), back to back on the
# same corpus, with the CPU time each run used (/usr/bin/time). Prints pages/s, the speed-up,
# cores busy, peak RSS and whether the output digests are equal.
#
#   benches/workers.sh [CORPUS] [EXTRA RUN ARGS ...]
#   benches/workers.sh corpora/sample
#   benches/workers.sh corpora/sample --max-pages 24
#
# Needs a release build (cargo build --release) and python3 for the table. Reports go to $OUT
# (default: a temporary folder). Runs `pipebench run` as separate processes, so each run's
# memory and CPU time are its own.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-corpora/sample}
shift $(( $# > 0 ? 1 : 0 ))
bin=${PIPEBENCH_BIN:-target/release/pipebench}
out=${OUT:-$(mktemp -d)}
runs=(
    "sequential-1x2|strategies/sequential.toml|"
    "streaming-2x1|strategies/streaming-workers.toml|"
)
# THREADS1=1 adds a third run with `--threads 1`: candle's process-wide element-wise pool then
# has no helper thread, so each worker's element-wise ops run on the worker's own thread.
[ "${THREADS1:-0}" = 1 ] && runs+=("streaming-2x1-threads1|strategies/streaming-workers.toml|--threads 1")
for r in "${runs[@]}"; do
    IFS='|' read -r name strategy extra <<<"$r"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S" -o "$out/$name.time" \
        "$bin" run -q "$corpus" --strategy "$strategy" $extra "$@" --spans none --force \
        --out "$out/$name.json"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
import os
names = [n for n in ["sequential-1x2", "streaming-2x1", "streaming-2x1-threads1"]
         if os.path.exists(f"{out}/{n}.json")]
base = None
print(f"{'run':<24} {'workers×threads':>15} {'wall s':>8} {'pages/s':>8} {'vs seq':>7} {'cores busy':>10} {'peak MiB':>9}  digest")
for n in names:
    r = json.load(open(f"{out}/{n}.json"))
    wall, user, sys_ = (float(x) for x in open(f"{out}/{n}.time").read().split()[-3:])
    e, s = r["environment"], r["summary"]
    rate = s["pages_per_s"]
    base = base or rate
    same = "" if n == names[0] else (" = seq" if r["output"]["digest"] == ref else " DIFFERS")
    if n == names[0]:
        ref = r["output"]["digest"]
    print(f"{n:<24} {e.get('workers', 1):>7}×{e['threads']:<7} {s['wall_ms']/1000:>8.1f} {rate:>8.3f}"
          f" {rate/base:>6.2f}× {(user+sys_)/wall:>10.2f} {r['memory']['peak_rss_bytes']/2**20:>9.0f}  {r['output']['digest'][:8]}{same}")
print(f"reports: {out}")
PY
