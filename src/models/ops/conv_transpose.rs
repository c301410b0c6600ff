//! Transposed convolution with kernel = stride = k (non-overlapping, as in the DB head's 2×2
//! stride-2 upsamplers), with a fused per-channel epilogue, on CPU.
//!
//! Why: each output pixel receives exactly one tap, so the whole layer is one GEMM
//! `T [Cout·k·k × Cin] = W × X [Cin × H·W]` straight on the CHW input (the weight's
//! [Cin, Cout, k, k] layout is read through strides), then one pass that scatters `T` into the
//! upsampled output and applies bias/BN/activation. candle's generic path (or a matmul on an
//! NHWC copy followed by a 6-D permute) costs several full-size copies.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;

use super::pointwise::ChannelEpilogue;

#[derive(Debug, Clone)]
pub struct ConvTransposeOp {
    /// [Cin, Cout, k, k]
    pub weight: Vec<f32>,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub epi: Option<ChannelEpilogue>,
}

impl CustomOp1 for ConvTransposeOp {
    fn name(&self) -> &'static str {
        "conv-transpose-k-eq-s"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, cin, h, w) = layout.shape().dims4()?;
        if cin != self.cin {
            bail!(
                "transposed conv: {cin} input channels, weights for {}",
                self.cin
            )
        }
        let src = super::contiguous_f32("transposed conv", storage, layout)?;
        let (k, cout) = (self.k, self.cout);
        let rows = cout * k * k;
        let hw = h * w;
        let (ho, wo) = (h * k, w * k);
        let threads = crate::models::device::kernel_threads();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let mut t = vec![0f32; rows * hw];
        let mut out = vec![0f32; n * cout * ho * wo];
        for img in 0..n {
            let x = &src[img * cin * hw..(img + 1) * cin * hw];
            // SAFETY: T is rows × hw (row stride hw); the lhs element (r, ci) is at
            // ci·rows + r < cin·rows = weight.len(); the rhs element (ci, p) at ci·hw + p.
            unsafe {
                gemm::gemm(
                    rows,
                    hw,
                    cin,
                    t.as_mut_ptr(),
                    1,
                    hw as isize,
                    false,
                    self.weight.as_ptr(),
                    rows as isize,
                    1,
                    x.as_ptr(),
                    1,
                    hw as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
            let o = &mut out[img * cout * ho * wo..(img + 1) * cout * ho * wo];
            let t = &t;
            o.par_chunks_mut(ho * wo)
                .enumerate()
                .for_each(|(co, plane)| {
                    for (oy, row) in plane.chunks_exact_mut(wo).enumerate() {
                        let (y, i) = (oy / k, oy % k);
                        for j in 0..k {
                            let tr = &t[((co * k + i) * k + j) * hw + y * w..][..w];
                            for (x, v) in tr.iter().enumerate() {
                                row[x * k + j] = *v;
                            }
                        }
                    }
                    if let Some(e) = &self.epi {
                        e.apply_plane(co, plane);
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, ho, wo))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_candle_conv_transpose() {
        let dev = Device::Cpu;
        for (n, cin, cout, h, w) in [(1, 5, 3, 4, 6), (2, 24, 1, 3, 5)] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).expect("x");
            let wt = Tensor::randn(0f32, 1.0, (cin, cout, 2, 2), &dev).expect("w");
            let op = ConvTransposeOp {
                weight: wt.flatten_all().and_then(|t| t.to_vec1()).expect("vec"),
                cin,
                cout,
                k: 2,
                epi: None,
            };
            let got = x.apply_op1_no_bwd(&op).expect("op");
            let reference = x.conv_transpose2d(&wt, 0, 0, 2, 1).expect("candle");
            assert_eq!(got.dims(), reference.dims());
            let diff = crate::models::ops::max_abs_diff(&got, &reference);
            assert!(diff < 1e-4, "{diff}");
        }
    }
}
