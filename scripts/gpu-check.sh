#!/usr/bin/env bash
# The GPU check: runs the four shipped strategies with the embedded models and with the seed
# profile (random weights) on a CUDA GPU, from a bundle made by scripts/gpu-bundle.sh, on a
# machine with an NVIDIA driver but no network and no Rust. Then a CPU run of the same pages
# checks the CUDA outputs, and `pipebench compare` writes the summary.
#
#   scripts/gpu-check.sh [BUNDLE] [--dry-run] [--pages N] [--out DIR] [--bin PATH]
#
#   BUNDLE          the bundle folder [default: the folder holding this script if it is a
#                   bundle, else target/gpu-bundle]
#   --dry-run       the same sequence here on CPU: `--device cpu`, the CPU release build
#                   (target/release/pipebench, or --bin), 2 pages a run, no time budget
#   --pages N       pages per run, spread over every document [default: 24; dry run 2]
#   --out DIR       results folder [default: $OUT if set, else target/gpu-check]
#   --bin PATH      the pipebench binary to run [default: bin/pipebench from the bundle's
#                   payload.tar.xz, unpacked into a temporary folder with the cache]
#   --budget S      the whole check's time budget in seconds [default: 450; dry run 3600]
#   --step-timeout S  the longest one step may take [default: 100; dry run 600]
#
# Every step runs under `timeout`; a failing or timed-out step is recorded and the next one
# still runs. After every step the results so far are written (summary.md, gpu-check.log and
# gpu-check-results.tar.gz with every report and log), so a check cut short keeps what it had.
# Exit status: 0 when every step passed, 2 otherwise.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
# Backtraces in the logs: an error deep in candle (an op with no CUDA kernel) says where.
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
say() { printf 'gpu-check: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}

# --- Arguments -------------------------------------------------------------------------------
bundle="" dry_run=0 pages="" dest="" bin="" budget="" step_timeout=""
while (($#)); do
    case $1 in
        --dry-run) dry_run=1 ;;
        --pages) pages=${2:?--pages needs N}; shift ;;
        --out) dest=${2:?--out needs DIR}; shift ;;
        --bin) bin=${2:?--bin needs PATH}; shift ;;
        --budget) budget=${2:?--budget needs seconds}; shift ;;
        --step-timeout) step_timeout=${2:?--step-timeout needs seconds}; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z $bundle ]] || die "one bundle folder only"; bundle=$1 ;;
    esac
    shift
done

t0=$(date +%s)
failures=0
repo=""
[[ -f $SCRIPT_DIR/../Cargo.toml ]] && repo=$(cd "$SCRIPT_DIR/.." && pwd)
if [[ -z $bundle ]]; then
    if [[ -f $SCRIPT_DIR/MANIFEST.txt ]]; then bundle=$SCRIPT_DIR; else bundle=${repo:-.}/target/gpu-bundle; fi
fi
[[ -d $bundle ]] || die "no bundle at $bundle: make one with scripts/gpu-bundle.sh"
bundle=$(cd "$bundle" && pwd)
for f in MANIFEST.txt payload.tar.xz corpus strategies; do
    [[ -e $bundle/$f ]] || die "$bundle is not a complete bundle (no $f): run scripts/gpu-bundle.sh"
done

if ((dry_run)); then
    device=cpu
    : "${pages:=2}" "${budget:=3600}" "${step_timeout:=600}"
    if [[ -z $bin ]]; then
        bin=${CARGO_TARGET_DIR:-${repo:-.}/target}/release/pipebench
        [[ -x $bin ]] || die "the dry run needs the CPU release build at $bin (cargo build --release), or --bin PATH"
    fi
else
    device=cuda
    : "${pages:=24}" "${budget:=450}" "${step_timeout:=100}"
fi

if [[ -z $dest ]]; then
    if [[ -n ${OUT:-} ]]; then dest=$OUT; else dest=${repo:-.}/target/gpu-check; fi
fi
mkdir -p "$dest" || die "cannot create $dest"
dest=$(cd "$dest" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipebench-gpu-check.XXXXXX") || die "no temporary folder"
trap 'rm -rf "$tmp"' EXIT
# The device tool brings back at most 8 files from $OUT, two folders deep: there, the reports
# and logs live outside it and travel as one archive.
if [[ -n ${OUT:-} && $dest == "$(cd "$OUT" 2>/dev/null && pwd)" ]]; then
    data=$tmp/results
else
    data=$dest/results
fi
rm -rf "$data"
mkdir -p "$data/reports" "$data/logs" "$data/outputs"
log=$dest/gpu-check.log
summary=$dest/summary.md
archive=$dest/gpu-check-results.tar.gz
: >"$log"
printf 'step\tstatus\tseconds\n' >"$data/steps.tsv"

# The bundle's binary and cache (libpdfium, weights) travel compressed: unpack them.
work=$tmp/bundle
mkdir -p "$work"
say "unpacking $bundle/payload.tar.xz"
if command -v xz >/dev/null; then
    xz -dc "$bundle/payload.tar.xz" | tar -C "$work" -xf - || die "could not unpack the payload"
else
    python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' \
        "$bundle/payload.tar.xz" "$work" || die "could not unpack the payload (no xz; python3's lzma failed)"
fi
: "${bin:=$work/bin/pipebench}"
[[ -x $bin ]] || die "no executable pipebench at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export PIPEBENCH_CACHE_DIR=$work/cache
corpus=$bundle/corpus

# --- CUDA libraries ---------------------------------------------------------------------------
# candle 0.11 links cuBLAS, cuRAND, the CUDA runtime and the driver (cudarc's `dynamic-linking`):
# the binary starts only where the dynamic loader finds them. The bundle cannot carry them
# (cuBLAS alone is over 500 MB); a machine with nvcc and PyTorch has CUDA 13's, in the toolkit
# or in PyTorch's wheels. Each library `ldd` cannot find is looked for there, and its folder
# added to LD_LIBRARY_PATH, until nothing is missing or nothing more is found.
cuda_libs() {
    local dirs=() d sp lib found missing
    [[ -d $bundle/lib ]] && dirs+=("$bundle/lib")
    for d in ${CUDA_HOME:-} ${CUDA_PATH:-} /usr/local/cuda /usr/local/cuda-13*; do
        [[ -n $d ]] && dirs+=("$d/lib64" "$d/lib" "$d/targets/x86_64-linux/lib")
    done
    dirs+=(/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
    if command -v python3 >/dev/null; then
        while IFS= read -r sp; do
            dirs+=("$sp"/nvidia/cu13/lib "$sp"/nvidia/*/lib "$sp"/torch/lib)
        done < <(python3 -c 'import site
print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
    fi
    # One folder at a time, then `ldd` again: a folder often holds several of them.
    while true; do
        missing=$(ldd "$bin" | awk '/=> not found/ {print $1}')
        [[ -n $missing ]] || break
        found=""
        for lib in $missing; do
            for d in "${dirs[@]}"; do
                # A folder already on the path that still leaves it missing holds a copy the
                # loader rejects (another architecture): look further.
                [[ ":${LD_LIBRARY_PATH:-}:" == *":$d:"* ]] && continue
                if [[ -e $d/$lib ]]; then found=$d; break 2; fi
            done
        done
        [[ -n $found ]] || break
        echo "$lib: $found"
        export LD_LIBRARY_PATH=$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    done
    for lib in $missing; do
        echo "$lib: NOT FOUND (looked in ${dirs[*]})"
    done
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo "--- ldd $bin"
    ldd "$bin"
    [[ -z $missing ]]
}

# --- Steps -----------------------------------------------------------------------------------
snapshot() {
    write_summary
    tar -czf "$archive.partial" -C "$(dirname "$data")" "$(basename "$data")" 2>/dev/null &&
        mv -f "$archive.partial" "$archive"
}

# step NAME TIMEOUT CMD...: runs CMD under `timeout` (a shell function of this script runs
# as it is), its output in logs/NAME.log, and records ok / failed / timed out, unless
# NORECORD=1 (then the caller records from step_rc and step_status). The timeout is cut to what
# is left of the budget less RESERVE_S, the time kept for the steps that follow.
step() {
    local name=$1 limit=$2 reserve=${RESERVE_S:-0}
    shift 2
    # The 15 s are the grace `timeout` gives a run to write its report after SIGINT.
    local left=$((budget - reserve - 15 - ($(date +%s) - t0)))
    ((limit > left)) && limit=$left
    step_secs=0
    if ((limit < 5)); then
        step_rc=124 step_status="skipped (time budget)"
        [[ ${NORECORD:-0} == 1 ]] || record "$name" "$step_status" 0
        return 0
    fi
    say "$name (at most ${limit}s)"
    printf '\n=== %s: %s\n' "$name" "$*" >>"$log"
    local start
    start=$(date +%s)
    if declare -F "$1" >/dev/null; then
        "$@" >"$data/logs/$name.log" 2>&1
    else
        # SIGINT first: an interrupted run writes the report of the pages it finished.
        timeout -s INT -k 15 "$limit" "$@" >"$data/logs/$name.log" 2>&1
    fi
    step_rc=$?
    step_secs=$(($(date +%s) - start))
    case $step_rc in
        0) step_status=ok ;;
        124 | 137) step_status="timed out after ${limit}s" ;;
        *) step_status="failed (exit $step_rc)" ;;
    esac
    # A run stopped by the timeout still wrote the report of the pages it finished.
    local prev="" arg
    for arg in "$@"; do
        if [[ $prev == --out && $step_rc == 124 && -f $arg ]]; then
            step_status+=" (report of the pages done kept)"
        fi
        prev=$arg
    done
    tail -n 40 "$data/logs/$name.log" >>"$log"
    [[ ${NORECORD:-0} == 1 ]] || record "$name" "$step_status" "$step_secs"
    return 0
}

record() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$data/steps.tsv"
    printf -- '--- %s: %s (%ss)\n' "$1" "$2" "$3" >>"$log"
    say "$1: $2 ($3 s)"
    [[ $2 == ok || $2 == informational* ]] || failures=$((failures + 1))
    snapshot
}

write_summary() {
    {
        echo "# pipebench GPU check"
        echo
        echo "- mode: $( ((dry_run)) && echo "dry run on CPU" || echo "CUDA GPU") (\`--device $device\`), $pages page(s) a run spread over every document of the bundle's corpus"
        echo "- binary: \`$("$bin" --version 2>/dev/null || echo "does not start")\`"
        echo "- host: $(uname -srm), $(nproc) CPUs; started $(date -u -d "@$t0" +%Y-%m-%dT%H:%M:%SZ), $(($(date +%s) - t0)) s so far"
        [[ -s $data/gpu.txt ]] && echo "- GPU: $(cat "$data/gpu.txt")"
        echo "- bundle: $(sed -n 's/^pipebench: //p' "$bundle/MANIFEST.txt")"
        echo
        echo "| step | status | seconds |"
        echo "|---|---|---|"
        tail -n +2 "$data/steps.tsv" | awk -F'\t' '{printf "| %s | %s | %s |\n", $1, $2, $3}'
        for part in embedded seed agreement; do
            [[ -s $data/logs/compare-$part.log ]] || continue
            case $part in
                embedded) echo; echo "## Embedded models (PicoDet, PP-OCRv5, SLANet-plus), baseline sequential" ;;
                seed) echo; echo "## Seed profile (DETR layout, Table Transformer; random weights), baseline sequential" ;;
                agreement) echo; echo "## $device vs CPU, sequential, embedded models" ;;
            esac
            echo
            cat "$data/logs/compare-$part.log"
        done
        if [[ -s $data/logs/agreement-cpu.log ]]; then
            echo
            echo "CPU run checked against the $device run's outputs:"
            echo
            echo '```'
            grep -E -A12 "Output check|[Oo]utputs agree" "$data/logs/agreement-cpu.log" | head -n 14
            echo '```'
        fi
    } >"$summary.partial" && mv -f "$summary.partial" "$summary"
}

strategies=(sequential concurrent-render staged-batch streaming-microbatch)
run_args=(--device "$device" --max-pages "$pages" --spread --offline --force)

say "bundle $bundle, binary $bin, results in $dest"
{
    echo "pipebench GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), mode $device, $pages pages a run"
    echo "bundle: $bundle"
    cat "$bundle/MANIFEST.txt"
} >>"$log"

# 1. The machine.
if command -v nvidia-smi >/dev/null; then
    step nvidia-smi 30 nvidia-smi
    cp "$data/logs/nvidia-smi.log" "$data/nvidia-smi.txt" 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
        >"$data/gpu.txt" 2>/dev/null
elif ((dry_run)); then
    record nvidia-smi "informational: not on this machine (dry run)" 0
else
    record nvidia-smi "failed: nvidia-smi not found" 0
fi
if ((!dry_run)); then
    # Sets LD_LIBRARY_PATH for every run that follows.
    step cuda-libraries 30 cuda_libs
fi
step version 30 "$bin" --version
step models 30 "$bin" models

# 2. A one-page warm-up: the first CUDA run compiles candle's PTX kernels (the driver caches
# them), and an early failure here names the problem before the timed runs.
RESERVE_S=30 step warm-up "$step_timeout" "$bin" run "$corpus" --quiet --spans none \
    --strategy "$bundle/strategies/sequential.toml" --device "$device" --max-pages 1 --offline \
    --force --out "$data/reports/warm-up.json"

# 3. The four strategies, embedded models, then the seed profile.
for s in "${strategies[@]}"; do
    extra=()
    [[ $s == sequential ]] && extra=(--save-outputs "$data/outputs/$device-sequential")
    RESERVE_S=30 step "embedded-$s" "$step_timeout" "$bin" run "$corpus" \
        --strategy "$bundle/strategies/$s.toml" "${run_args[@]}" \
        --out "$data/reports/embedded-$s.json" "${extra[@]}"
done
for s in "${strategies[@]}"; do
    RESERVE_S=30 step "seed-$s" "$step_timeout" "$bin" run "$corpus" \
        --strategy "$bundle/strategies/$s.toml" "${run_args[@]}" --models seed --weights random \
        --out "$data/reports/seed-$s.json"
done

# 4. Output agreement: the same pages on CPU, checked against the sequential run's outputs.
# Differences between devices are expected at float precision; they are listed, not failed.
if [[ -d $data/outputs/$device-sequential ]]; then
    NORECORD=1 RESERVE_S=20 step agreement-cpu "$step_timeout" "$bin" run "$corpus" \
        --strategy "$bundle/strategies/sequential.toml" --device cpu --max-pages "$pages" \
        --spread --offline --force --out "$data/reports/cpu-sequential.json" \
        --check-outputs "$data/outputs/$device-sequential"
    # Exit 2 with no errors and no interruption in the report: only the outputs differ.
    if ((step_rc == 2)) && python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if not r["errors"] and not r["interrupted"] else 1)' \
        "$data/reports/cpu-sequential.json" 2>/dev/null; then
        step_status="informational: outputs differ from CPU (see below)"
    fi
    record agreement-cpu "$step_status" "$step_secs"
fi

# 5. Summaries (pipebench compare), from whatever reports exist.
# Reports are named relative to reports/ so that the summary's headings stay short.
compare_set() {
    local name=$1
    shift
    local have=() r
    for r in "$@"; do [[ -f $data/reports/$r ]] && have+=("$r"); done
    if ((${#have[@]} >= 2)); then
        step "compare-$name" 30 env -C "$data/reports" "$bin" compare --markdown "${have[@]}"
    else
        record "compare-$name" "skipped (fewer than two reports)" 0
    fi
}
emb=() seed=()
for s in "${strategies[@]}"; do
    emb+=("embedded-$s.json")
    seed+=("seed-$s.json")
done
compare_set embedded "${emb[@]}"
compare_set seed "${seed[@]}"
compare_set agreement embedded-sequential.json cpu-sequential.json

total=$(($(date +%s) - t0))
say "done in ${total}s: $failures step(s) not ok; $summary"
snapshot
cat "$summary" >&2
((failures == 0)) || exit 2
