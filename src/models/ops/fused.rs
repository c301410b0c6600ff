//! Small fused CPU ops for the DETR family, where candle's op-by-op path makes several full
//! passes (each allocating) over large tensors:
//!
//! - [`softmax_rows`]: softmax over the last axis in one pass per row (max, exp, sum, scale)
//!   instead of five, vectorized ([`softmax_row`], also the core of
//!   [`super::attention`]);
//! - [`layer_norm_rows`]: layer norm over the last axis, one vectorized task per block of rows
//!   instead of seven whole-tensor ops;
//! - [`add_relu`]: `relu(a + b)`, a ResNet block's residual join, in one pass instead of two
//!   (at stride 4 a ResNet-50 block's output is 256 × 259 × 200 floats);
//! - [`gelu_tanh_mul`]: T5's gated MLP join `gelu_tanh(a) · b` (Pix2Struct's `gelu_new`) in one
//!   vectorized pass instead of candle's `gelu` (one libm `tanhf` per element) and a multiply:
//!   DePlot's encoder spent 8 % of its time in `tanhf`/`expm1f`;
//! - [`max_pool_3x3_s2`]: the ResNet stem's 3×3 stride-2 max pool with PyTorch's padding 1,
//!   straight from the input (two padding copies and candle's pool took 33–53 ms per page).
//!
//! Other devices, dtypes and layouts take the candle path; both paths compute the same values.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// `e^x` for x ≤ 0 (softmax after subtracting the maximum), within 2 ulp of `f32::exp`, in
/// plain arithmetic the compiler vectorizes (libm's `expf` is one call per element: the
/// encoder's attention spent 10 ms per layer in it). Cody–Waite reduction `x = n·ln2 + r`,
/// |r| ≤ ln2/2, Cephes' degree-6 polynomial for e^r, 2^n from the exponent bits; below −87.3
/// the result is 0 (f32 would be subnormal).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let xc = x.max(-87.3);
    let t = xc * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n ∈ [−126, 0]: the biased exponent n + 127 is a normal float's.
    let bits = ((t.to_bits() as i32 - 0x4B40_0000 + 127) as u32) << 23;
    let y = er * f32::from_bits(bits);
    if x < -87.3 { 0.0 } else { y }
}

/// Lanes of the max and sum accumulators: independent partial results the compiler keeps in
/// vector registers (a single running max or sum is a serial chain it may not reorder).
const LANES: usize = 16;

/// `Σ f(x)` over `xs` in [`LANES`] independent partial sums (then the remainder), so the
/// compiler keeps them in vector registers.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += f(x);
        }
    }
    sums.iter().sum::<f32>() + chunks.remainder().iter().map(|&x| f(x)).sum::<f32>()
}

/// In-place softmax of one row; `masked` keys (true) get probability 0.
#[inline(always)]
fn softmax_row_generic(row: &mut [f32], masked: Option<&[bool]>) {
    if let Some(m) = masked {
        for (x, &m) in row.iter_mut().zip(m) {
            if m {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    for l in lanes {
        max = if l > max { l } else { max };
    }
    if max == f32::NEG_INFINITY {
        // Every key masked: transformers' finite mask then gives a uniform row.
        let u = 1.0 / row.len() as f32;
        row.fill(u);
        return;
    }
    for x in row.iter_mut() {
        *x = exp_nonpositive(*x - max);
    }
    let inv = 1.0 / lane_sum(row, |x| x);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_row_avx2(row: &mut [f32], masked: Option<&[bool]>) {
    softmax_row_generic(row, masked)
}

/// In-place softmax of one row, masked keys (true) excluded; with AVX2 + FMA where the CPU has
/// them (the baseline x86-64 build has only SSE2).
pub fn softmax_row(row: &mut [f32], masked: Option<&[bool]>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { softmax_row_avx2(row, masked) };
    }
    softmax_row_generic(row, masked)
}

struct SoftmaxRows;

impl CustomOp1 for SoftmaxRows {
    fn name(&self) -> &'static str {
        "softmax-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("softmax-rows", storage, layout)?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = x.to_vec();
        out.par_chunks_mut(n * 64).for_each(|o| {
            for row in o.chunks_exact_mut(n) {
                softmax_row(row, None);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Layer norm of each row of `x` into `out`: two passes over the row (mean, then the centered
/// variance, as candle's op-by-op path computes it), then the affine map.
#[inline(always)]
fn layer_norm_rows_generic(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    for (row, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = lane_sum(row, |v| v) / n as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn layer_norm_rows_avx2(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    layer_norm_rows_generic(x, out, gamma, beta, eps)
}

fn layer_norm_rows_dispatch(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { layer_norm_rows_avx2(x, out, gamma, beta, eps) };
    }
    layer_norm_rows_generic(x, out, gamma, beta, eps)
}

/// Rows per task of the layer norm: enough work per task to amortize rayon's hand-off.
const LAYER_NORM_ROWS: usize = 64;

struct LayerNormRows<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
}

impl CustomOp1 for LayerNormRows<'_> {
    fn name(&self) -> &'static str {
        "layer-norm-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("layer-norm-rows", storage, layout)?;
        let n = self.gamma.len();
        if layout.shape().dims().last() != Some(&n) {
            candle_core::bail!(
                "layer norm over {n} channels of a {:?} tensor",
                layout.shape()
            )
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n * LAYER_NORM_ROWS)
            .zip(x.par_chunks(n * LAYER_NORM_ROWS))
            .for_each(|(o, x)| layer_norm_rows_dispatch(x, o, self.gamma, self.beta, self.eps));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Layer norm over the last axis in one op on CPU (f32), for `gamma` and `beta` on the host;
/// None where the op does not apply (other devices and dtypes take candle's operations).
pub fn layer_norm_rows(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> Option<Result<Tensor>> {
    (x.device().is_cpu() && x.dtype() == DType::F32).then(|| {
        x.contiguous()?.apply_op1_no_bwd(&LayerNormRows {
            gamma,
            beta,
            eps: eps as f32,
        })
    })
}

/// Softmax over the last axis.
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&SoftmaxRows);
    }
    crate::models::layers::softmax_last(x)
}

/// An element-wise op of two same-shape f32 tensors, in parallel chunks of `chunk` values:
/// `f(a, b)` per element (inlined, so the loop vectorizes).
struct Zip2<F> {
    name: &'static str,
    chunk: usize,
    f: F,
}

impl<F: Fn(f32, f32) -> f32 + Send + Sync> CustomOp2 for Zip2<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(self.name, s1, l1)?;
        let b = contiguous_f32(self.name, s2, l2)?;
        if a.len() != b.len() {
            candle_core::bail!("{}: {:?} vs {:?}", self.name, l1.shape(), l2.shape());
        }
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(self.chunk)
            .zip(a.par_chunks(self.chunk).zip(b.par_chunks(self.chunk)))
            .for_each(|(o, (a, b))| {
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = (self.f)(*a, *b);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `relu(a + b)` for tensors of one shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == DType::F32 && a.dims() == b.dims() {
        let op = Zip2 {
            name: "add-relu",
            chunk: 1 << 16,
            f: |a: f32, b: f32| (a + b).max(0.0),
        };
        return a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op);
    }
    (a + b)?.relu()
}

/// `tanh(z)` through [`exp_nonpositive`]: `(1 − e^{−2|z|}) / (1 + e^{−2|z|})` with z's sign;
/// within 3e-7 absolute of `f32::tanh` (tested).
#[inline(always)]
fn tanh_fast(z: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * z.abs());
    ((1.0 - e) / (1.0 + e)).copysign(z)
}

/// `gelu_tanh(a) · b` (the tanh form of GELU, transformers' `gelu_new`) for tensors of one
/// shape.
pub fn gelu_tanh_mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == DType::F32 && a.dims() == b.dims() {
        const C: f32 = 0.797_884_6; // √(2/π)
        let op = Zip2 {
            name: "gelu-tanh-mul",
            chunk: 1 << 14,
            f: |a: f32, b: f32| 0.5 * a * (1.0 + tanh_fast(C * (a + 0.044_715 * a * a * a))) * b,
        };
        return a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op);
    }
    a.gelu()? * b
}

struct MaxPool3s2;

impl CustomOp1 for MaxPool3s2 {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("max-pool-3x3-s2", storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let mut out = vec![0f32; n * c * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, x)| {
                for oy in 0..ho {
                    // Rows 2·oy − 1 ..= 2·oy + 1 that exist (padding never wins a max).
                    let (y0, y1) = ((2 * oy).saturating_sub(1), (2 * oy + 1).min(h - 1));
                    let orow = &mut o[oy * wo..(oy + 1) * wo];
                    for (ox, v) in orow.iter_mut().enumerate() {
                        let (x0, x1) = ((2 * ox).saturating_sub(1), (2 * ox + 1).min(w - 1));
                        let mut m = f32::NEG_INFINITY;
                        for yy in y0..=y1 {
                            for &p in &x[yy * w + x0..=yy * w + x1] {
                                m = m.max(p);
                            }
                        }
                        *v = m;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// Max pool, 3×3 window, stride 2, padding 1 (padding never selected), as
/// `torch.nn.MaxPool2d(3, 2, 1)`.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&MaxPool3s2);
    }
    max_pool_generic(x)
}

/// [`max_pool_3x3_s2`] with candle operations: pad with the lowest value, pool.
fn max_pool_generic(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let low = |shape: (usize, usize, usize, usize)| {
        Tensor::full(f32::MIN, shape, x.device())?.to_dtype(x.dtype())
    };
    let x = Tensor::cat(&[&low((n, c, 1, w))?, x, &low((n, c, 1, w))?], 2)?;
    let x = Tensor::cat(&[&low((n, c, h + 2, 1))?, &x, &low((n, c, h + 2, 1))?], 3)?;
    x.max_pool2d_with_stride((3, 3), (2, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    use crate::models::ops::max_abs_diff as max_diff;

    #[test]
    fn the_fused_gated_gelu_matches_candles() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 3.0, (37, 129), &dev).expect("a");
        let b = Tensor::randn(0f32, 1.0, (37, 129), &dev).expect("b");
        let want = (a.gelu().expect("gelu") * &b).expect("mul");
        assert!(max_diff(&gelu_tanh_mul(&a, &b).expect("fused"), &want) < 2e-6);
        for z in [-20.0f32, -3.0, -0.5, -1e-3, 0.0, 1e-4, 0.3, 2.0, 9.0] {
            assert!((tanh_fast(z) - z.tanh()).abs() < 3e-7, "{z}");
        }
    }

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut worst = 0f32;
        let mut x = 0f32;
        while x > -87.0 {
            let (a, b) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x -= 0.000_37;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn fused_ops_match_the_candle_path() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 3, 70, 129), &dev).expect("x");
        let want = crate::models::layers::softmax_last(&x).expect("candle");
        assert!(max_diff(&softmax_rows(&x).expect("fused"), &want) < 1e-6);
        let gamma: Vec<f32> = (0..129).map(|i| 0.5 + i as f32 / 100.0).collect();
        let beta: Vec<f32> = (0..129).map(|i| i as f32 / 50.0 - 1.0).collect();
        let (g, b) = (
            Tensor::new(gamma.as_slice(), &dev).expect("g"),
            Tensor::new(beta.as_slice(), &dev).expect("b"),
        );
        let xc = x
            .broadcast_sub(&x.mean_keepdim(3).expect("mean"))
            .expect("xc");
        let want = xc
            .sqr()
            .and_then(|v| v.mean_keepdim(3))
            .and_then(|v| (v + 1e-5)?.sqrt())
            .and_then(|s| xc.broadcast_div(&s))
            .and_then(|n| n.broadcast_mul(&g))
            .and_then(|n| n.broadcast_add(&b))
            .expect("candle layer norm");
        let got = layer_norm_rows(&x, &gamma, &beta, 1e-5)
            .expect("cpu")
            .expect("fused");
        assert!(max_diff(&got, &want) < 1e-5);
        let y = Tensor::randn(0f32, 1.0, (2, 3, 70, 129), &dev).expect("y");
        let want = (&x + &y).and_then(|t| t.relu()).expect("candle");
        assert_eq!(max_diff(&add_relu(&x, &y).expect("fused"), &want), 0.0);
        for (h, w) in [(9, 12), (10, 7), (1, 1), (2, 3)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).expect("x");
            let fused = max_pool_3x3_s2(&x).expect("fused");
            let generic = max_pool_generic(&x).expect("generic");
            assert_eq!(fused.dims(), generic.dims(), "{h}x{w}");
            assert_eq!(max_diff(&fused, &generic), 0.0, "{h}x{w}");
        }
    }
}
