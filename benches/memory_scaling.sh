#!/usr/bin/env bash
# Memory vs corpus size: runs each strategy on a corpus and on the same corpus repeated N times
# (copies in a temporary folder, so every page is real work and page ids stay distinct), and
# prints wall time, pages/s and peak RSS side by side. Streaming-microbatch holds O(queue
# capacity) pages, so its peak should stay flat; staged-batch holds every page image, so its
# peak should grow with the corpus.
#
#   benches/memory_scaling.sh [CORPUS] [N] [STRATEGY.toml ...]
#   benches/memory_scaling.sh corpora/sample 4 strategies/streaming-microbatch.toml strategies/staged-batch.toml
#
# Needs a release build (cargo build --release) and python3 for the table. Reports go to
# $OUT (default: a temporary folder), named <strategy>-<k>x.json.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-corpora/sample}
n=${2:-4}
shift $(( $# > 2 ? 2 : $# ))
strategies=("$@")
((${#strategies[@]})) || strategies=(strategies/streaming-microbatch.toml strategies/staged-batch.toml)
bin=${PIPEBENCH_BIN:-target/release/pipebench}
out=${OUT:-$(mktemp -d)}
big=$(mktemp -d)
trap 'rm -rf "$big"' EXIT
for i in $(seq 1 "$n"); do cp -r "$corpus" "$big/copy$i"; done
for s in "${strategies[@]}"; do
    name=$(basename "$s" .toml)
    "$bin" run -q "$corpus" --strategy "$s" --spans none --force --out "$out/$name-1x.json"
    "$bin" run -q "$big" --strategy "$s" --spans none --force --out "$out/$name-${n}x.json"
done
python3 - "$out" "$n" "${strategies[@]}" <<'PY'
import json, os, sys
out, n, strategies = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"{'strategy':<24} {'corpus':>7} {'pages':>6} {'wall s':>8} {'pages/s':>8} {'peak RSS MiB':>13} {'vs 1x':>6}")
for s in strategies:
    name = os.path.basename(s)[:-5]
    one = None
    for k in ("1", n):
        r = json.load(open(f"{out}/{name}-{k}x.json"))
        peak = r["memory"]["peak_rss_bytes"] / 2**20
        one = one or peak
        sm = r["summary"]
        print(f"{name:<24} {k+'x':>7} {sm['pages_ok']:>6} {sm['wall_ms']/1e3:>8.1f} {sm['pages_per_s']:>8.3f} {peak:>13.0f} {peak/one:>5.2f}x")
print(f"reports: {out}")
PY
