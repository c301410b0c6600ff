//! Multi-head scaled dot-product attention in one CPU op: `softmax(s·Q_h K_hᵀ + mask) V_h` for
//! every head, read from and written to the `[B, L, heads·head_dim]` layout the projections
//! use, a block of query rows at a time.
//!
//! Why: op by op, DETR's attention splits Q, K and V into `[B, heads, L, head_dim]` copies,
//! writes an `[B, heads, Lq, Lk]` score tensor (8 × 825 × 825 floats per page), reads it
//! back for the softmax, writes the probabilities, multiplies and transposes the result back:
//! on Table Transformer's encoder that was 57 ms of a 436 ms table, more than its two FFN
//! matrix products. Here each task takes one (image, head, block of query rows): its scores
//! (`QUERY_BLOCK × Lk`) stay in the core's L2 from the first product through the softmax to
//! the second, the GEMMs read the heads in place through strides, and the output lands in
//! its final layout. Tasks are independent, so both cores stay busy without a barrier per op.
//!
//! The softmax runs over each row with the vectorized exp of [`super::fused`] (AVX2 + FMA when
//! the CPU has them, chosen at run time). Masked keys (the padding of a batched image) get
//! probability 0, as transformers' additive `finfo.min` mask gives.
//! Other devices use candle's operations (`crate::models::detr`).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, bail};
use rayon::prelude::*;

use super::contiguous_f32;
use super::fused::softmax_row;

/// Query rows per task: the block's scores (64 × 825 floats for a DETR page, 211 KB) stay in
/// L2, and a page's 8 heads × 13 blocks keep two cores busy to the end.
const QUERY_BLOCK: usize = 64;

/// The op: heads, the score scale, and each image's key mask (`true`: the key is padding).
#[derive(Debug, Clone)]
pub struct AttentionOp<'a> {
    pub heads: usize,
    pub scale: f32,
    /// `[B × Lk]`, or None when no key is masked.
    pub masked: Option<&'a [bool]>,
}

impl CustomOp3 for AttentionOp<'_> {
    fn name(&self) -> &'static str {
        "multi-head-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq_layout: &Layout,
        sk: &CpuStorage,
        lk_layout: &Layout,
        sv: &CpuStorage,
        lv_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = contiguous_f32("attention (q)", sq, lq_layout)?;
        let k = contiguous_f32("attention (k)", sk, lk_layout)?;
        let v = contiguous_f32("attention (v)", sv, lv_layout)?;
        let (b, lq, d) = lq_layout.shape().dims3()?;
        let (bk, lk, dk) = lk_layout.shape().dims3()?;
        if (bk, dk) != (b, d) || lv_layout.shape().dims3()? != (b, lk, d) {
            bail!(
                "attention: q {:?}, k {:?}, v {:?} do not agree",
                lq_layout.shape(),
                lk_layout.shape(),
                lv_layout.shape()
            )
        }
        if self.heads == 0 || d % self.heads != 0 {
            bail!(
                "attention: {d} channels do not split into {} heads",
                self.heads
            )
        }
        if let Some(m) = &self.masked
            && m.len() != b * lk
        {
            bail!("attention: a mask of {} for {b} × {lk} keys", m.len())
        }
        let hd = d / self.heads;
        let blocks = lq.div_ceil(QUERY_BLOCK);
        let mut out = vec![0f32; b * lq * d];
        // Tasks write disjoint (rows, head columns) blocks of `out`.
        let dst = out.as_mut_ptr() as usize;
        (0..b * self.heads * blocks).into_par_iter().for_each_init(
            Vec::new,
            |scores: &mut Vec<f32>, task| {
                let (img, rest) = (task / (self.heads * blocks), task % (self.heads * blocks));
                let (h, blk) = (rest / blocks, rest % blocks);
                let q0 = blk * QUERY_BLOCK;
                let rows = QUERY_BLOCK.min(lq - q0);
                scores.resize(rows * lk, 0.0);
                let head = img * lk * d + h * hd;
                // SAFETY: every pointer + stride stays inside its buffer: q rows
                // img·lq + q0 .. + rows of d floats, head columns h·hd .. + hd; k and v rows
                // img·lk .. + lk, the same columns; `scores` holds rows × lk; `out` is b·lq·d
                // like q, and the tasks' (rows, columns) blocks are disjoint.
                unsafe {
                    gemm::gemm(
                        rows,
                        lk,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        lk as isize,
                        false,
                        q.as_ptr().add((img * lq + q0) * d + h * hd),
                        1,
                        d as isize,
                        k.as_ptr().add(head),
                        d as isize,
                        1,
                        0.0,
                        self.scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                let mask = self.masked.map(|m| &m[img * lk..(img + 1) * lk]);
                for row in scores.chunks_exact_mut(lk) {
                    softmax_row(row, mask);
                }
                // SAFETY: as above.
                unsafe {
                    gemm::gemm(
                        rows,
                        hd,
                        lk,
                        (dst as *mut f32).add((img * lq + q0) * d + h * hd),
                        1,
                        d as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        lk as isize,
                        v.as_ptr().add(head),
                        1,
                        d as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, lq, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The op against the op-by-op reference (split heads, scores, additive mask, softmax,
    /// product, merge), with and without a key mask, over several query blocks.
    #[test]
    fn matches_the_op_by_op_attention() {
        let dev = Device::Cpu;
        let (b, lq, lk, heads, hd) = (2, 150, 77, 4, 8);
        let d = heads * hd;
        let q = Tensor::randn(0f32, 1.0, (b, lq, d), &dev).expect("q");
        let k = Tensor::randn(0f32, 1.0, (b, lk, d), &dev).expect("k");
        let v = Tensor::randn(0f32, 1.0, (b, lk, d), &dev).expect("v");
        let scale = (hd as f32).powf(-0.5);
        let masked: Vec<bool> = (0..b * lk).map(|i| i / lk == 1 && i % lk >= 60).collect();
        for mask in [None, Some(masked.as_slice())] {
            let split = |t: &Tensor, l: usize| {
                t.reshape((b, l, heads, hd))
                    .and_then(|t| t.transpose(1, 2))
                    .and_then(|t| t.contiguous())
                    .expect("split")
            };
            let s = split(&q, lq)
                .matmul(&split(&k, lk).t().expect("t"))
                .and_then(|s| s * f64::from(scale))
                .expect("scores");
            let s = match &mask {
                Some(m) => {
                    let add: Vec<f32> = m.iter().map(|&x| if x { f32::MIN } else { 0.0 }).collect();
                    let add = Tensor::from_vec(add, (b, 1, 1, lk), &dev).expect("mask");
                    s.broadcast_add(&add).expect("add")
                }
                None => s,
            };
            let p = crate::models::layers::softmax_last(&s).expect("softmax");
            let want = p
                .matmul(&split(&v, lk))
                .and_then(|o| o.transpose(1, 2))
                .and_then(|o| o.reshape((b, lq, d)))
                .expect("want");
            let op = AttentionOp {
                heads,
                scale,
                masked: mask,
            };
            let got = q.apply_op3_no_bwd(&k, &v, &op).expect("op");
            let diff = crate::models::ops::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "max diff {diff}");
        }
    }
}
