//! DETR's segmentation head (`DetrForSegmentation`: `bbox_attention` + `mask_head`), optional:
//! cmarkea/detr-layout-detection carries it, its users discard the masks, and it costs about
//! 4.5× the detector (100 queries × an FPN up to stride 4). Stages run it only when asked
//! (`masks = true`), to measure what a pipeline that keeps it pays.
//!
//! Per query: a multi-head attention map of the decoder output over the encoder memory
//! (softmax over heads and positions jointly, as DETR does), concatenated with the projected
//! feature map, then 3×3 conv + GroupNorm + ReLU blocks that upsample (nearest) and add the
//! backbone's stride-16/8/4 features through 1×1 adapters, and a last 3×3 conv to one channel:
//! mask logits at a quarter of the input size. Checkpoint names are the legacy ones
//! (`bbox_attention.{q,k}_linear`, `mask_head.{lay1..lay5, gn1..gn5, adapter1..3, out_lay}`).
//!
//! Padded batches stay exact as in the backbone: every 3×3 convolution's input is zeroed
//! outside each image's valid size and GroupNorm statistics are taken over valid positions only.

use candle_core::{D, Module, Result, Tensor};

use candle_nn::{Init, VarBuilder};

use super::linear;
use super::resnet::{StageOutput, mask_padding};
use crate::models::checkpoint::{TORCH_DEFAULT, uniform};
use crate::models::deploy_graph::ConvParams;
use crate::models::layers::{Conv, Linear};

struct ConvGn {
    conv: Conv,
    gamma: Tensor,
    beta: Tensor,
    groups: usize,
}

fn conv(w: &VarBuilder<'_>, cin: usize, cout: usize, k: usize) -> Result<Conv> {
    let bound = 1.0 / ((cin * k * k) as f32).sqrt();
    Conv::new(ConvParams {
        weight: w.get_with_hints((cout, cin, k, k), "weight", TORCH_DEFAULT)?,
        bias: Some(w.get_with_hints(cout, "bias", uniform(bound))?),
        stride: (1, 1),
        pads: [k / 2; 4],
        groups: 1,
    })
}

impl ConvGn {
    fn load(lay: &VarBuilder<'_>, gn: &VarBuilder<'_>, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            conv: conv(lay, cin, cout, 3)?,
            gamma: gn.get_with_hints(cout, "weight", Init::Const(1.0))?,
            beta: gn.get_with_hints(cout, "bias", Init::Const(0.0))?,
            groups: 8.min(cout),
        })
    }

    /// conv → GroupNorm (over valid positions) → ReLU.
    fn forward(&self, x: &Tensor, valid: Option<&[(usize, usize)]>) -> Result<Tensor> {
        let x = match valid {
            Some(v) => mask_padding(x, v)?,
            None => x.clone(),
        };
        let y = self.conv.forward(&x)?;
        group_norm(&y, self.groups, &self.gamma, &self.beta, valid)?.relu()
    }
}

/// GroupNorm (eps 1e-5, biased variance) of `x` [N, C, H, W]; with `valid`, image `n`'s
/// statistics use its valid region only.
fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    valid: Option<&[(usize, usize)]>,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let xg = x.reshape((n, groups, (c / groups) * h * w))?;
    let (mean, var) = match valid {
        None => {
            let mean = xg.mean_keepdim(D::Minus1)?;
            let var = xg.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
            (mean, var)
        }
        Some(v) => {
            let ones = Tensor::ones((n, 1, h, w), x.dtype(), x.device())?;
            let m = mask_padding(&ones, v)?
                .broadcast_as((n, c / groups, h, w))?
                .reshape((n, 1, (c / groups) * h * w))?;
            let count = m.sum_keepdim(D::Minus1)?;
            let mean = xg
                .broadcast_mul(&m)?
                .sum_keepdim(D::Minus1)?
                .broadcast_div(&count)?;
            let var = xg
                .broadcast_sub(&mean)?
                .broadcast_mul(&m)?
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .broadcast_div(&count)?;
            (mean, var)
        }
    };
    let y = xg
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .reshape((n, c, h, w))?;
    y.broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)
}

/// Nearest-neighbour resize to `(oh, ow)`, PyTorch's `interpolate(mode="nearest")` rule:
/// source index `min(floor(i · in/out), in − 1)` with the ratio in f32.
fn resize_nearest(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let index = |out: usize, inp: usize| -> Result<Tensor> {
        let scale = inp as f32 / out as f32;
        let idx: Vec<u32> = (0..out)
            .map(|i| ((i as f32 * scale).floor() as usize).min(inp - 1) as u32)
            .collect();
        Tensor::from_vec(idx, out, x.device())
    };
    let y = if oh == h {
        x.clone()
    } else {
        x.index_select(&index(oh, h)?, 2)?
    };
    if ow == w {
        Ok(y)
    } else {
        y.index_select(&index(ow, w)?, 3)
    }
}

/// The segmentation head.
pub struct MaskHead {
    q: Linear,
    k: Linear,
    heads: usize,
    lay1: ConvGn,
    lay2: ConvGn,
    adapters: [Conv; 3],
    fpn: [ConvGn; 3],
    out: Conv,
}

impl MaskHead {
    /// Loads from the checkpoint root (beside `detr.`). `widths` are the backbone's stage
    /// output channels.
    pub fn load(root: &VarBuilder<'_>, d: usize, heads: usize, widths: &[usize]) -> Result<Self> {
        let att = root.pp("bbox_attention");
        let m = root.pp("mask_head");
        let c0 = d + heads;
        let inter = [d / 2, d / 4, d / 8, d / 16];
        // adapter1/2/3 take the stride-16/8/4 stages (layer3, layer2, layer1).
        let fpn_in = [widths[2], widths[1], widths[0]];
        let adapter = |i: usize| -> Result<Conv> {
            conv(&m.pp(format!("adapter{}", i + 1)), fpn_in[i], inter[i], 1)
        };
        let stage = |i: usize| -> Result<ConvGn> {
            ConvGn::load(
                &m.pp(format!("lay{}", i + 3)),
                &m.pp(format!("gn{}", i + 3)),
                inter[i],
                inter[i + 1],
            )
        };
        Ok(Self {
            q: linear(&att.pp("q_linear"), d, d)?,
            k: linear(&att.pp("k_linear"), d, d)?,
            heads,
            lay1: ConvGn::load(&m.pp("lay1"), &m.pp("gn1"), c0, c0)?,
            lay2: ConvGn::load(&m.pp("lay2"), &m.pp("gn2"), c0, inter[0])?,
            adapters: [adapter(0)?, adapter(1)?, adapter(2)?],
            fpn: [stage(0)?, stage(1)?, stage(2)?],
            out: conv(&m.pp("out_lay"), inter[3], 1, 3)?,
        })
    }

    /// Mask logits [B, Q, H/4, W/4]. `projected` [B, d, h, w] is the input projection's
    /// output, `memory` [B, h·w, d] the encoder's, `queries` [B, Q, d] the decoder's;
    /// `stages` the backbone's four stage outputs; `key_mask` [B, 1, 1, h·w] additive or None.
    pub fn forward(
        &self,
        projected: &Tensor,
        memory: &Tensor,
        queries: &Tensor,
        stages: &[StageOutput],
        key_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, d, h, w) = projected.dims4()?;
        let nq = queries.dim(1)?;
        let (nh, hd) = (self.heads, d / self.heads);
        // Attention maps: q [B, nh, Q, hd] · k [B, nh, hd, hw] → [B, Q, nh·hw], softmax over
        // heads and positions together.
        let q = (self.q.forward(queries)? * (hd as f64).powf(-0.5))?
            .reshape((b, nq, nh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = self
            .k
            .forward(memory)?
            .reshape((b, h * w, nh, hd))?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        let scores = q.matmul(&k)?.transpose(1, 2)?; // [B, Q, nh, hw]
        let scores = match key_mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let attn =
            crate::models::ops::fused::softmax_rows(&scores.reshape((b, nq, nh * h * w))?)?
                .reshape((b * nq, nh, h, w))?;
        // Per query: [projected features ‖ its attention maps].
        let per_query = |t: &Tensor| -> Result<Tensor> {
            let (_, c, th, tw) = t.dims4()?;
            t.unsqueeze(1)?
                .broadcast_as((b, nq, c, th, tw))?
                .reshape((b * nq, c, th, tw))
        };
        let repeat_valid = |v: &Option<Vec<(usize, usize)>>| -> Option<Vec<(usize, usize)>> {
            v.as_ref()
                .map(|v| v.iter().flat_map(|s| std::iter::repeat_n(*s, nq)).collect())
        };
        let valid32 = repeat_valid(&stages[3].1);
        let x = Tensor::cat(&[&per_query(projected)?, &attn], 1)?;
        let x = self.lay1.forward(&x, valid32.as_deref())?;
        let mut x = self.lay2.forward(&x, valid32.as_deref())?;
        for (i, (adapter, refine)) in self.adapters.iter().zip(&self.fpn).enumerate() {
            let (feat, v) = &stages[2 - i];
            let fpn = adapter.forward(feat)?;
            let (_, _, fh, fw) = fpn.dims4()?;
            x = (resize_nearest(&x, fh, fw)? + per_query(&fpn)?)?;
            x = refine.forward(&x, repeat_valid(v).as_deref())?;
        }
        let valid4 = repeat_valid(&stages[0].1);
        let x = match valid4 {
            Some(v) => mask_padding(&x, &v)?,
            None => x,
        };
        let y = self.out.forward(&x)?;
        let (_, _, oh, ow) = y.dims4()?;
        y.reshape((b, nq, oh, ow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn nearest_resize_follows_pytorch() {
        let x = Tensor::arange(0f32, 3.0, &Device::Cpu)
            .and_then(|t| t.reshape((1, 1, 1, 3)))
            .expect("x");
        let y = resize_nearest(&x, 1, 5).expect("resize");
        // floor(i · 3/5): 0, 0, 1, 1, 2
        assert_eq!(
            y.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v"),
            vec![0., 0., 1., 1., 2.]
        );
    }

    #[test]
    fn group_norm_over_the_valid_region_ignores_padding() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 3, 5), &dev).expect("x");
        let padded = x
            .pad_with_zeros(2, 0, 2)
            .and_then(|t| t.pad_with_zeros(3, 0, 1))
            .expect("p");
        let (g, b) = (
            Tensor::new(&[1f32, 2., 3., 4.], &dev).expect("g"),
            Tensor::new(&[0f32, 1., 0., 1.], &dev).expect("b"),
        );
        let plain = group_norm(&x, 2, &g, &b, None).expect("plain");
        let masked = group_norm(&padded, 2, &g, &b, Some(&[(3, 5)])).expect("masked");
        let cut = masked
            .narrow(2, 0, 3)
            .and_then(|t| t.narrow(3, 0, 5))
            .expect("cut");
        let d = crate::models::ops::max_abs_diff(&plain, &cut);
        assert!(d < 1e-5, "{d}");
    }
}
