#!/usr/bin/env bash
# Assembles everything the GPU check needs on a machine with no network: the CUDA build of
# pipebench (from scripts/cuda-build.sh, debug info stripped), libpdfium and the embedded
# models' weights (a pipebench cache folder), the sample corpus, the four strategy files and
# scripts/gpu-check.sh. At most 60 MiB in all: the script fails if the bundle is larger.
#
# The binary and the cache travel as one xz archive, payload.tar.xz, that gpu-check.sh unpacks:
# stripped, the CUDA binary is still 57 MiB (32 MiB of it candle's compiled CUDA kernels), and
# with 43 MiB of weights and libpdfium the plain folder would be 105 MiB; xz takes the binary
# to about 8 MiB and the whole bundle to about 45 MiB.
#
#   scripts/gpu-bundle.sh [DIR]     [default: target/gpu-bundle]
#
# Then, on the GPU machine, from the repository root: scripts/gpu-check.sh target/gpu-bundle
# (or DIR/gpu-check.sh from anywhere); here: scripts/gpu-check.sh target/gpu-bundle --dry-run.
#
# Environment (optional): CUDA_BIN, the CUDA binary [default: <target>/cuda/release/pipebench];
# CPU_BIN, a binary that runs here, used for `pipebench setup` [default: the CPU release build,
# else the CUDA binary with the toolkit's libraries]; CORPUS [default: corpora/sample].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
say() { printf 'gpu-bundle: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}

# The limit the bundle must fit in (what the GPU machine's tool carries beside the tree).
MAX_BYTES=$((60 * 1024 * 1024))
# The weights the four shipped strategies name (layout, OCR det + rec, tables); the seed
# profile runs with random weights and needs no file.
MODELS=picodet-layout-cdla,ppocrv5-det,ppocrv5-rec,slanet-plus
STRATEGIES=(sequential concurrent-render staged-batch streaming-microbatch)

bundle=${1:-$ROOT/target/gpu-bundle}
target=${CARGO_TARGET_DIR:-$ROOT/target}
cuda_bin=${CUDA_BIN:-${CUDA_TARGET_DIR:-$target/cuda}/release/pipebench}
corpus=${CORPUS:-$ROOT/corpora/sample}
[[ -x $cuda_bin ]] || die "no CUDA build at $cuda_bin: run scripts/cuda-build.sh first (or set CUDA_BIN)"
[[ -d $corpus ]] || die "no corpus at $corpus"

# A binary that runs here, for `pipebench setup` (the assets are the same for every build).
setup_bin=${CPU_BIN:-$target/release/pipebench}
if [[ ! -x $setup_bin ]]; then
    toolkit=${CUDA_TOOLKIT_DIR:-$ROOT/target/cuda-toolkit}/site/nvidia/cu13/lib
    [[ -d $toolkit ]] || die "no CPU build at $setup_bin and no CUDA toolkit at $toolkit to run the CUDA build here"
    export LD_LIBRARY_PATH=$toolkit:$toolkit/stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    setup_bin=$cuda_bin
fi

say "assembling $bundle"
rm -rf "$bundle"
mkdir -p "$bundle/strategies" "$bundle/corpus"
payload=$(mktemp -d "${TMPDIR:-/tmp}/pipebench-bundle.XXXXXX")
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/bin"

# The binary, without its debug info (line tables for backtraces); symbols stay.
objcopy --strip-debug "$cuda_bin" "$payload/bin/pipebench"

say "pipebench setup --models $MODELS (libpdfium and weights, fetched with pip)"
"$setup_bin" setup --cache-dir "$payload/cache" --models "$MODELS" >&2
# pip's leftovers, if any, are not part of the cache.
find "$payload/cache" -name '.download-*' -prune -exec rm -rf {} +

say "compressing the binary and the cache (xz)"
(cd "$payload" && find bin cache -type f -printf '%s\t%P\n' | sort -k2) >"$payload/files.txt"
tar -C "$payload" -cf - bin cache | xz -9 -T0 >"$bundle/payload.tar.xz"

cp -R "$corpus"/. "$bundle/corpus/"
for s in "${STRATEGIES[@]}"; do
    cp "strategies/$s.toml" "$bundle/strategies/"
done
cp scripts/gpu-check.sh "$bundle/"

{
    build_log=$(dirname "$cuda_bin")/../cuda-build.log
    echo "pipebench: CUDA build of $(sed -n 's/^# git: //p' "$build_log" 2>/dev/null | head -1), bundled $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "binary: bin/pipebench in payload.tar.xz, sha256 $(sha256sum "$payload/bin/pipebench" | cut -d' ' -f1)"
    sed -n 's/^# \(nvcc\|wheels\|CUDA_COMPUTE_CAP\)/\1/p' "$build_log" 2>/dev/null
    echo "models: $MODELS"
    echo "corpus: $(find "$bundle/corpus" -name '*.pdf' | wc -l) PDFs from ${corpus#"$ROOT"/}"
    echo "files (bytes, path):"
    (cd "$bundle" && find . -type f ! -name MANIFEST.txt -printf '%s\t%P\n' | sort -k2)
    echo "in payload.tar.xz:"
    cat "$payload/files.txt"
} >"$bundle/MANIFEST.txt"

bytes=$(du -sb "$bundle" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
if ((bytes > MAX_BYTES)); then
    du -sh "$bundle"/* >&2
    die "the bundle is $mib MiB, over the 60 MiB limit: shrink the corpus (CORPUS=...) or the binary"
fi
say "ok: $bundle, $mib MiB (limit 60 MiB)"
du -sh "$bundle"/* >&2
