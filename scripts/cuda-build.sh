#!/usr/bin/env bash
# Builds `pipebench --features cuda` on a machine with no GPU and no system CUDA toolkit.
#
# The CUDA 13.0 compiler, headers and libraries come from pinned Python wheels installed with
# pip into a folder of their own (never system-wide); the build then runs against them.
#
#   scripts/cuda-build.sh            install the toolkit (once), build, smoke-test
#
# Environment (all optional):
#   CUDA_COMPUTE_CAP     target of candle's kernels (default 80, see below)
#   CUDA_TOOLKIT_DIR     where the wheels go (default target/cuda-toolkit)
#   CUDA_TARGET_DIR      cargo target folder of the CUDA build (default <target>/cuda, so that
#                        it never overwrites the CPU build's target/release/pipebench)
#   CUDA_BUILD_JOBS      cargo -j (default: cargo's)
#
# Output: <CUDA_TARGET_DIR>/release/pipebench, and the build log beside it (cuda-build.log).
#
# Why CUDA 13.0: the GPU machines we borrow run driver 580 (CUDA 13.0) with CUDA 13 libraries
# (PyTorch cu130, nvcc 13.0); a CUDA 12 build would look for libcublas.so.12 there and not start.
# candle embeds its kernels as PTX, which the driver compiles at load; PTX from a newer nvcc than
# the driver is refused, so the compiler is pinned to the driver's 13.0 and not to the newest.
#
# Why compute capability 80 by default: candle's kernels are PTX for `compute_80`, which the
# driver compiles for any GPU of capability 8.0 or later (A100, L4, H100, H200, B200). The
# alternative, 90, makes cudaforge emit `compute_90a`, PTX that runs on sm_90 parts (H100/H200)
# alone. Matrix products go through cuBLAS, which carries its own kernels for each GPU, so the
# difference is in element-wise, reduction and convolution kernels, which use no sm_90 feature.
# (The one library candle compiles to machine code, its MoE kernels, is sm_80 code and unused by
# pipebench.)
#
# cudarc, as candle 0.11 enables it (`dynamic-linking`), links libcuda, libcublas, libcublasLt,
# libcurand and libnvrtc, and candle-kernels libcudart: the binary needs them to start. libcuda
# is the driver's and is not on the package index, so the link uses a stub generated here from
# cudarc's own list of driver functions (every one returns CUDA_ERROR_STUB_LIBRARY). That stub
# also lets the binary start on this machine, where `--device cuda` then fails with that error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Pinned wheels: CUDA 13.0 update 2's compiler (nvcc, cicc, crt headers, CCCL headers), runtime
# headers and libcudart, and the libraries cudarc links (cuBLAS 13.0 GA, cuRAND of 13.0, NVRTC).
CUDA_WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.0.0.19
    nvidia-curand==10.4.0.35
)
CUDA_VERSION_EXPECTED="13.0"

TARGET_ROOT=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLKIT=${CUDA_TOOLKIT_DIR:-$ROOT/target/cuda-toolkit}
CUDA_TARGET_DIR=${CUDA_TARGET_DIR:-$TARGET_ROOT/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}

log() { printf 'cuda-build: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 2
}

command -v cargo >/dev/null || die "cargo not found: install Rust 1.95 (rustup) first"
command -v cc >/dev/null || die "no C compiler (cc): install build-essential (nvcc needs gcc/g++)"
command -v c++ >/dev/null || die "no C++ compiler (c++): install build-essential (nvcc needs g++)"
command -v python3 >/dev/null || die "python3 not found: it installs the toolkit with pip"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found: install python3-pip"

# --- 1. The toolkit, from wheels ------------------------------------------------------------
site=$TOOLKIT/site
stamp=$TOOLKIT/installed.txt
if [[ ! -f $stamp ]] || [[ "$(cat "$stamp")" != "${CUDA_WHEELS[*]}" ]]; then
    log "installing ${CUDA_WHEELS[*]} into $site"
    rm -rf "$site"
    mkdir -p "$TOOLKIT"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --target "$site" "${CUDA_WHEELS[@]}"
    printf '%s' "${CUDA_WHEELS[*]}" >"$stamp"
else
    log "toolkit already installed in $site"
fi
CUDA_ROOT=$site/nvidia/cu13
[[ -x $CUDA_ROOT/bin/nvcc ]] || die "no nvcc in $CUDA_ROOT/bin after installing the wheels"

# The wheels ship versioned libraries only (libcublas.so.13); the linker looks for libcublas.so.
for so in "$CUDA_ROOT"/lib/*.so.*; do
    base=${so##*/}
    [[ $base == *.alt.* ]] && continue
    ln -sf "$base" "$CUDA_ROOT/lib/${base%%.so.*}.so"
done

# --- 2. A libcuda stub (the driver is not a wheel) -----------------------------------------
stubs=$CUDA_ROOT/lib/stubs
cudarc_dir=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
    python3 -c 'import json,sys,os
m=json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))') ||
    die "could not find cudarc's sources (cargo metadata --features cuda)"
driver_sys=$cudarc_dir/src/driver/sys/mod.rs
[[ -f $driver_sys ]] || die "cudarc's driver bindings not found at $driver_sys"
mkdir -p "$stubs"
{
    echo '/* Generated by scripts/cuda-build.sh from cudarc'"'"'s driver bindings: a link-time'
    echo '   stand-in for the NVIDIA driver. Every call returns CUDA_ERROR_STUB_LIBRARY (34). */'
    echo 'static const char msg[] = "CUDA driver stub: no NVIDIA driver (libcuda.so.1) on this machine";'
    echo 'int cuGetErrorString(int e, const char **s) { (void)e; *s = msg; return 0; }'
    echo 'int cuGetErrorName(int e, const char **s) { (void)e; *s = "CUDA_ERROR_STUB_LIBRARY"; return 0; }'
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$driver_sys" | sed 's/^pub unsafe fn //' |
        grep -vxE 'cuGetErrorString|cuGetErrorName' | sort -u |
        sed 's/.*/int &(void) { return 34; }/'
} >"$stubs/libcuda_stub.c"
cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so.1" "$stubs/libcuda_stub.c"
ln -sf libcuda.so.1 "$stubs/libcuda.so"

# --- 3. Build ------------------------------------------------------------------------------
export PATH=$CUDA_ROOT/bin:$PATH
export CUDA_ROOT CUDA_PATH=$CUDA_ROOT CUDA_HOME=$CUDA_ROOT
# cudarc's build script searches <CUDA_ROOT>/lib and <CUDA_ROOT>/lib/stubs for the libraries.
nvcc_version=$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
[[ $nvcc_version == "$CUDA_VERSION_EXPECTED" ]] ||
    die "nvcc reports CUDA $nvcc_version, expected $CUDA_VERSION_EXPECTED"

mkdir -p "$CUDA_TARGET_DIR"
build_log=$CUDA_TARGET_DIR/cuda-build.log
{
    echo "# pipebench CUDA build, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# git: $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)"
    echo "# $(rustc -V); $(cargo -V)"
    echo "# host: $(uname -srm); $(cc --version | head -1); $(ldd --version | head -1)"
    echo "# nvcc: $(nvcc --version | tail -2 | tr '\n' ' ')"
    echo "# wheels: ${CUDA_WHEELS[*]}"
    echo "# CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
} >"$build_log"
log "cargo build --release --features cuda (target $CUDA_TARGET_DIR; log $build_log)"
start=$(date +%s)
jobs=()
[[ -n ${CUDA_BUILD_JOBS:-} ]] && jobs=(-j "$CUDA_BUILD_JOBS")
set +e
CARGO_TARGET_DIR=$CUDA_TARGET_DIR cargo build --release --features cuda "${jobs[@]}" 2>&1 |
    tee -a "$build_log"
status=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - start))
[[ $status -eq 0 ]] || die "cargo build failed after ${secs}s (exit $status); see $build_log"

# --- 4. Smoke test: the binary starts, runs on CPU, and refuses CUDA with a clear error -------
bin=$CUDA_TARGET_DIR/release/pipebench
{
    echo "# build time: ${secs} s"
    echo "# binary: $bin, $(stat -c %s "$bin") bytes ($(du -h "$bin" | cut -f1))"
    echo "# ldd (LD_LIBRARY_PATH = toolkit lib + driver stub):"
    LD_LIBRARY_PATH=$CUDA_ROOT/lib:$stubs ldd "$bin" | sed 's/^/#   /'
    echo "# NEEDED:"
    readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/#   \1/p'
} | tee -a "$build_log" >&2

export LD_LIBRARY_PATH=$CUDA_ROOT/lib:$stubs
# Without a backtrace, as a user sees it (candle attaches one when RUST_BACKTRACE is set).
unset RUST_BACKTRACE
version=$("$bin" --version) || die "$bin --version failed"
log "built: $version"
smoke=corpora/smoke/gofpdf-cellformat-tables.pdf
set +e
err=$("$bin" run "$smoke" --device cuda --max-pages 1 --quiet --force \
    --out "$CUDA_TARGET_DIR/smoke-cuda.json" 2>&1 >/dev/null)
rc=$?
set -e
echo "# --device cuda without a driver: exit $rc: $err" | tee -a "$build_log" >&2
if grep -q "panicked" <<<"$err" || [[ $rc -ne 2 ]] || ! grep -q "fix:" <<<"$err"; then
    die "--device cuda without a driver should fail cleanly (exit 2, a fix: line, no panic)"
fi
# The CPU path of the same binary: one page through every stage (fetches libpdfium and the
# weights into pipebench's cache on first use, with pip).
"$bin" run "$smoke" --device cpu --max-pages 1 --quiet --force \
    --out "$CUDA_TARGET_DIR/smoke-cpu.json" ||
    die "$bin run --device cpu failed"
echo "# --device cpu: one page ok ($CUDA_TARGET_DIR/smoke-cpu.json)" | tee -a "$build_log" >&2
log "ok in ${secs} s: $bin"
log "to run it here: LD_LIBRARY_PATH=$CUDA_ROOT/lib:$stubs $bin"
