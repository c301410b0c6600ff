//! `x · Wᵀ` for a few rows of `x`: the linear layers of a decode step, where every sequence of
//! the batch contributes one row and the weights are read once per step.
//!
//! Why: a decode step is memory-bound; its cost is reading the weights (GOT's decoder: 1.86 GB
//! of f32 per step). candle's CPU matmul (gemm 0.19) takes a matrix-vector path for one row,
//! which streams the weights once (82 ms per GOT step on the 2-core machine, ~23 GB/s), but for
//! 2–8 rows it packs the weight matrix before multiplying: the step cost 272 ms at 2 rows and
//! 339 ms at 8, so batching 8 sequences bought 1.9× the tokens/s instead of the ~6× the memory
//! traffic allows. Here each output feature's weight row is read once, from memory, and
//! dotted with every input row while it sits in L1 (the rows of `x`, ≤ 16 × hidden floats, stay
//! in cache); output features are split over the threads.
//!
//! Measured with `pipebench bench-got` (GOT-OCR 2.0 full size, random weights, 2 threads, one
//! decode step, ms): candle's matmul 82 / 272 / 286 / 339 at 1 / 2 / 4 / 8 sequences, this
//! kernel 70 / 82 / 116 / 177 — tokens/s at 8 sequences 3.2× those at 1, where candle's
//! matmul gave 1.9× (transformers on the same shapes: 132 / 255 / 317 / 330).
//!
//! Each output is one dot product computed the same way whatever the number of rows, so a
//! sequence's logits are bit-identical alone and in any decode batch (≤ [`MAX_ROWS`]).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// Rows up to which the kernel is used; more rows are compute-bound, where gemm's blocking
/// wins.
pub const MAX_ROWS: usize = 16;

/// Output features per parallel task.
const CHUNK: usize = 32;

/// Σ x[j]·w[j], 16 lanes (two AVX registers) of fused multiply-adds.
#[inline(always)]
fn dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let xc = x.chunks_exact(16);
    let wc = w.chunks_exact(16);
    let (xt, wt) = (xc.remainder(), wc.remainder());
    for (a, b) in xc.zip(wc) {
        for l in 0..16 {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }
    let mut s = 0.0f32;
    for (a, b) in xt.iter().zip(wt) {
        s = a.mul_add(*b, s);
    }
    // Pairwise, in a fixed order.
    for half in [8, 4, 2, 1] {
        for l in 0..half {
            acc[l] += acc[l + half];
        }
    }
    acc[0] + s
}

/// out[o·m + i] = x_i · w_o for the output features of one chunk.
#[inline(always)]
fn chunk(x: &[f32], w: &[f32], k: usize, m: usize, out: &mut [f32]) {
    for (o, wrow) in w.chunks_exact(k).enumerate() {
        for i in 0..m {
            out[o * m + i] = dot(&x[i * k..(i + 1) * k], wrow);
        }
    }
}

/// Rows `x[r0..r0 + R]` dotted with the weight rows `w[0..W]` (AVX2 + FMA): each 8 floats
/// of an input row are loaded once for the W weight rows, each 8 floats of a weight row once
/// for the R input rows (R · W accumulators). Every (input row, weight row) pair has its own
/// accumulator summed in the same order whatever R and W are, which keeps a row's results
/// bit-identical across batch sizes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Index loops over the const-sized blocks: the form LLVM unrolls into registers.
#[allow(clippy::needless_range_loop)]
fn block_avx2<const R: usize, const W: usize>(
    x: &[f32],
    r0: usize,
    w: &[f32],
    k: usize,
) -> [[f32; R]; W] {
    use std::arch::x86_64::*;
    let main = k - k % 8;
    // SAFETY: every load reads 8 floats at an index + 8 ≤ `main` ≤ k inside weight row o < W of
    // `w` (w.len() = W · k) and inside input row r0 + r of `x` (the caller passes rows that
    // exist: r0 + R ≤ x.len() / k).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        let mut j = 0;
        while j < main {
            let mut wv = [_mm256_setzero_ps(); W];
            for (o, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(w.as_ptr().add(o * k + j));
            }
            for r in 0..R {
                let xv = _mm256_loadu_ps(x.as_ptr().add((r0 + r) * k + j));
                for o in 0..W {
                    acc[o][r] = _mm256_fmadd_ps(xv, wv[o], acc[o][r]);
                }
            }
            j += 8;
        }
        let mut out = [[0f32; R]; W];
        for o in 0..W {
            for r in 0..R {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[o][r]);
                let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                    + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                let xr = &x[(r0 + r) * k..(r0 + r + 1) * k];
                let wr = &w[o * k..(o + 1) * k];
                for jj in main..k {
                    s = xr[jj].mul_add(wr[jj], s);
                }
                out[o][r] = s;
            }
        }
        out
    }
}

/// Rows `r0..` (up to 4) against weight rows `w` (W of them) into `out` (features-major).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2<const W: usize>(
    x: &[f32],
    r0: usize,
    n_rows: usize,
    w: &[f32],
    k: usize,
    m: usize,
    out: &mut [f32],
) {
    macro_rules! put {
        ($r:literal) => {{
            let v = block_avx2::<$r, W>(x, r0, w, k);
            for (o, row) in v.iter().enumerate() {
                out[o * m + r0..o * m + r0 + $r].copy_from_slice(row);
            }
        }};
    }
    match n_rows {
        1 => put!(1),
        2 => put!(2),
        3 => put!(3),
        _ => put!(4),
    }
}

/// The chunk in AVX2: weight rows W at a time (W = 8 for one input row, 4 for two, 2 for
/// more), each group against the input rows in blocks of up to 4 while it is in L1; every
/// block keeps 4–8 accumulators (the FMA latency hidden) and loads ≤ ~1.1 vectors per FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chunk_avx2(x: &[f32], w: &[f32], k: usize, m: usize, out: &mut [f32]) {
    let n = w.len() / k;
    let wide = match m {
        1 => 8,
        2 => 4,
        _ => 2,
    };
    let mut o = 0;
    while o < n {
        let t = if n - o >= wide { wide } else { 1 };
        let ws = &w[o * k..(o + t) * k];
        let dst = &mut out[o * m..];
        let mut r0 = 0;
        while r0 < m {
            let rows = (m - r0).min(4);
            match t {
                8 => rows_avx2::<8>(x, r0, rows, ws, k, m, dst),
                4 => rows_avx2::<4>(x, r0, rows, ws, k, m, dst),
                2 => rows_avx2::<2>(x, r0, rows, ws, k, m, dst),
                _ => rows_avx2::<1>(x, r0, rows, ws, k, m, dst),
            }
            r0 += 4;
        }
        o += t;
    }
}

fn chunk_dispatch(x: &[f32], w: &[f32], k: usize, m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        unsafe { chunk_avx2(x, w, k, m, out) };
        return;
    }
    chunk(x, w, k, m, out)
}

struct Skinny;

impl CustomOp2 for Skinny {
    fn name(&self) -> &'static str {
        "skinny-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("skinny-matmul", s1, l1)?;
        let w = contiguous_f32("skinny-matmul", s2, l2)?;
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("skinny-matmul: {:?} · {:?}ᵀ", l1.shape(), l2.shape());
        }
        // Transposed result (n, m): each task writes its features' rows.
        let mut t = vec![0f32; n * m];
        t.par_chunks_mut(CHUNK * m)
            .zip(w.par_chunks(CHUNK * k))
            .for_each(|(out, w)| chunk_dispatch(x, w, k, m, out));
        let mut y = vec![0f32; m * n];
        for (o, row) in t.chunks_exact(m).enumerate() {
            for (i, v) in row.iter().enumerate() {
                y[i * n + o] = *v;
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

/// `x · wᵀ` for `x` (m, k) and `w` (n, k): the kernel for f32 on CPU with m ≤ [`MAX_ROWS`],
/// candle's matmul otherwise.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, _) = x.dims2()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 && m <= MAX_ROWS {
        return x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &Skinny);
    }
    x.matmul(&w.t()?)
}

/// A linear layer for decode steps: [`matmul_t`] for few rows (any leading dimensions are
/// flattened), candle-nn's `Linear` for more.
#[derive(Debug, Clone)]
pub struct SkinnyLinear {
    inner: candle_nn::Linear,
}

impl SkinnyLinear {
    pub fn new(inner: candle_nn::Linear) -> Self {
        Self { inner }
    }

    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }
}

impl candle_core::Module for SkinnyLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let k = dims[dims.len() - 1];
        let rows = x.elem_count() / k.max(1);
        if rows > MAX_ROWS || !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.inner.forward(x);
        }
        let y = matmul_t(&x.reshape((rows, k))?, self.inner.weight())?;
        let y = match self.inner.bias() {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("at least one dimension") = y.dim(1)?;
        y.reshape(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    #[test]
    fn matches_candle_and_is_the_same_for_any_number_of_rows() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (8, 100), &dev).expect("x");
        let w = Tensor::randn(0f32, 1.0, (70, 100), &dev).expect("w");
        let ours = matmul_t(&x, &w).expect("ours");
        let want = x.matmul(&w.t().expect("t")).expect("candle");
        assert!(super::super::max_abs_diff(&ours, &want) < 1e-4);
        // Row 3 alone: bit-identical to row 3 in the batch of 8.
        let one = matmul_t(&x.narrow(0, 3, 1).expect("row"), &w).expect("one");
        let row = ours.narrow(0, 3, 1).expect("row");
        assert_eq!(
            one.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("v"),
            row.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("v")
        );
        let lin = SkinnyLinear::new(candle_nn::Linear::new(
            w.clone(),
            Some(Tensor::ones(70, DType::F32, &dev).expect("b")),
        ));
        let y = lin
            .forward(&x.reshape((8, 1, 100)).expect("3d"))
            .expect("fwd");
        assert_eq!(y.dims(), &[8, 1, 70]);
    }
}
