#!/usr/bin/env bash
# The CI sweep, in three steps that .github/workflows/sweep.yml runs as jobs (and
# tests/ci_sweep.rs runs on corpora/smoke with the null test models, so the commands stay true):
#
#   tests/ci/sweep.sh sweep   # one shard of the grid: $SHARD (i/n), into $OUT/shard-i
#   tests/ci/sweep.sh merge   # join $OUT/shard-* into $OUT/merged; recommend within limits
#   tests/ci/sweep.sh gate    # run $STRATEGY once and compare with $BASELINE: exit 1 on a
#                             # regression beyond $FAIL_PCT % outside noise
#
# Settings (environment): PIPEBENCH (the binary), CORPUS, STRATEGY, SETS (the --set axes,
# space-separated), SHARD, OUT, BASELINE, FAIL_PCT, MAX_P99_MS. The defaults sweep the embedded
# models on corpora/smoke; refresh the baseline on the CI machine when the hardware changes:
#   pipebench run corpora/smoke --out results/baselines/smoke-sequential.json --force
set -euo pipefail
cd "$(dirname "$0")/../.."
pb=${PIPEBENCH:-target/release/pipebench}
corpus=${CORPUS:-corpora/smoke}
strategy=${STRATEGY:-strategies/staged-batch.toml}
sets=${SETS:-"layout.batch_size=1,4 ocr.batch_size=1,4"}
out=${OUT:-target/ci-sweep}
baseline=${BASELINE:-results/baselines/smoke-sequential.json}
gate_strategy=${GATE_STRATEGY:-strategies/sequential.toml}
set_args=()
for s in $sets; do set_args+=(--set "$s"); done
case "${1:-}" in
sweep)
    shard=${SHARD:-0/1}
    "$pb" sweep "$corpus" --strategy "$strategy" "${set_args[@]}" --shard "$shard" \
        --out "$out/shard-${shard%%/*}"
    ;;
merge)
    "$pb" merge "$out"/shard-* --out "$out/merged"
    "$pb" recommend "$out/merged" ${MAX_P99_MS:+--max-p99-page-ms "$MAX_P99_MS"}
    ;;
gate)
    mkdir -p "$out"
    "$pb" run -q "$corpus" --strategy "$gate_strategy" --out "$out/gate.json" --force
    "$pb" compare "$baseline" "$out/gate.json" --fail-on-regression "${FAIL_PCT:-15}" \
        | tee "$out/compare.txt"
    ;;
*)
    echo "usage: tests/ci/sweep.sh sweep|merge|gate" >&2
    exit 2
    ;;
esac
