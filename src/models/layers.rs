//! Building blocks shared by the models, in inference (deploy) form: convolutions (dense via
//! candle, depthwise via our CPU kernel), folded batch norm, learnable affine blocks,
//! hard-swish / hard-sigmoid, squeeze-and-excitation, linear, layer norm.
//!
//! candle-nn's layers are used where they compute the same values as fast: [`Linear`] is
//! candle-nn's. Ours stay where they were measured faster on CPU, behind the same `Module`
//! interface and with a candle-operations path for other devices: [`Conv`] (candle's conv2d
//! im2col ran the stems' 3×3 stride-2 convolutions at a quarter of our kernels' speed, and
//! candle-nn's `Conv2d` is that conv2d), [`ConvTranspose`], [`SqueezeExcite`] (one fused
//! pass) and [`LayerNorm`] (see its doc). Attention and softmax are fused ops
//! (`ops::attention`, `ops::fused`); candle-nn's are not used for the same reason.

use candle_core::{D, DType, Module, Result, Tensor, bail};

use super::deploy_graph::{BnParams, ConvParams};
use super::ops::conv_transpose::ConvTransposeOp;
use super::ops::dense_conv::DenseConvOp;
use super::ops::depthwise::DepthwiseConv2d;
use super::ops::pointwise::{ChannelEpilogue, hard_sigmoid};
use super::ops::squeeze_excite::SeOp;

/// Moves a convolution's bias out of `p` into an identity epilogue on `channels` channels.
fn take_bias_epilogue(p: &mut ConvParams, channels: usize) -> Result<ChannelEpilogue> {
    let bias = match p.bias.take() {
        Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; channels],
    };
    Ok(ChannelEpilogue::identity(channels).with_bias(&bias))
}

/// A 2-D convolution with an optional fused per-channel epilogue (bias, batch norm,
/// activation, affine blocks). Depthwise convolutions go through [`DepthwiseConv2d`] (fast on
/// CPU, any stride pair); dense stride-1 ones through [`DenseConvOp`] (im2col-free GEMMs) on
/// CPU; everything else, and every other device, through candle's `conv2d`.
#[derive(Debug, Clone)]
pub struct Conv {
    kind: ConvKind,
    /// The epilogue for the paths that do not fuse it into their kernel.
    epi: Option<ChannelEpilogue>,
}

#[derive(Debug, Clone)]
enum ConvKind {
    Depthwise(DepthwiseConv2d),
    Dense {
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        /// (vertical, horizontal): the SVTR neck uses 1×3 kernels padded (0, 1).
        pad: (usize, usize),
        /// The im2col-free CPU kernel, for stride 1.
        direct: Option<DenseConvOp>,
    },
}

impl Conv {
    pub fn new(p: ConvParams) -> Result<Self> {
        let (out_c, in_per_group, kh, kw) = p.weight.dims4()?;
        let [top, left, bottom, right] = p.pads;
        if p.groups > 1 {
            if p.groups != out_c || in_per_group != 1 {
                bail!(
                    "grouped (non-depthwise) convolutions are not supported: groups {} for {:?}",
                    p.groups,
                    p.weight.dims()
                )
            }
            let dw = DepthwiseConv2d::new(p.weight, p.bias, p.stride, (top, bottom, left, right))?;
            return Ok(Self {
                kind: ConvKind::Depthwise(dw),
                epi: None,
            });
        }
        if p.stride.0 != p.stride.1 || top != bottom || left != right {
            bail!(
                "dense convolution with asymmetric stride {:?} or uneven pads {:?} is not supported",
                p.stride,
                p.pads
            )
        }
        let direct = match p.stride.0 {
            1 => {
                let weight = p.weight.flatten_all()?.to_vec1::<f32>()?;
                Some(DenseConvOp {
                    weight,
                    cout: out_c,
                    cin: in_per_group,
                    kernel: (kh, kw),
                    pad: (top, left),
                    epi: None,
                    taps: None,
                })
            }
            // A stride-2 conv is a stride-1 conv over the space-to-depth input (see
            // `space_to_depth2`): the stems' 3×3 stride-2 convs ran through candle's im2col at
            // a quarter of the speed (8.6 of PicoDet's 70 ms).
            2 if kh % 2 == 1 && kw % 2 == 1 => {
                let w = p.weight.flatten_all()?.to_vec1::<f32>()?;
                let (kh2, kw2) = (kh.div_ceil(2), kw.div_ceil(2));
                let cin4 = 4 * in_per_group;
                let mut weight = vec![0f32; out_c * cin4 * kh2 * kw2];
                for co in 0..out_c {
                    for ci in 0..in_per_group {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (a, py, b, px) = (ky / 2, ky % 2, kx / 2, kx % 2);
                                let c4 = phase_slot(py, px) * in_per_group + ci;
                                weight[((co * cin4 + c4) * kh2 + a) * kw2 + b] =
                                    w[((co * in_per_group + ci) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
                // The last tap row sees only phase row 0, the last column only phase column
                // 0; with the slot order of `phase_slot` each tap's phases are contiguous.
                let c = in_per_group;
                let taps = (0..kh2)
                    .flat_map(|a| (0..kw2).map(move |b| (a + 1 == kh2, b + 1 == kw2)))
                    .map(|(last_row, last_col)| match (last_row, last_col) {
                        (false, false) => (0, 4 * c),
                        (false, true) => (0, 2 * c),
                        (true, false) => (c, 2 * c),
                        (true, true) => (c, c),
                    })
                    .collect();
                Some(DenseConvOp {
                    weight,
                    cout: out_c,
                    cin: cin4,
                    kernel: (kh2, kw2),
                    pad: (0, 0),
                    epi: None,
                    taps: Some(taps),
                })
            }
            _ => None,
        };
        let kind = ConvKind::Dense {
            weight: p.weight,
            bias: p.bias,
            stride: p.stride.0,
            pad: (top, left),
            direct,
        };
        Ok(Self { kind, epi: None })
    }

    /// Builds the convolution with its bias moved into a fused epilogue that `then` extends
    /// (it receives the identity-plus-bias epilogue).
    pub fn with_epilogue(
        mut p: ConvParams,
        then: impl FnOnce(ChannelEpilogue) -> ChannelEpilogue,
    ) -> Result<Self> {
        let channels = p.weight.dim(0)?;
        let epi = then(take_bias_epilogue(&mut p, channels)?);
        let mut conv = Self::new(p)?;
        match &mut conv.kind {
            ConvKind::Depthwise(d) => d.set_epilogue(epi),
            ConvKind::Dense { direct, .. } => {
                if let Some(op) = direct {
                    op.epi = Some(epi.clone());
                }
                conv.epi = Some(epi);
            }
        }
        Ok(conv)
    }

    /// The depthwise stride, for depthwise convolutions.
    pub fn depthwise_stride(&self) -> Option<(usize, usize)> {
        match &self.kind {
            ConvKind::Depthwise(d) => Some(d.geometry().stride),
            ConvKind::Dense { .. } => None,
        }
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.kind {
            // The depthwise module applies its epilogue itself, on every path.
            ConvKind::Depthwise(d) => d.forward(x),
            ConvKind::Dense {
                weight,
                bias,
                stride,
                pad,
                direct,
            } => {
                if let Some(op) = direct
                    .as_ref()
                    .filter(|_| x.device().is_cpu() && x.dtype() == DType::F32)
                {
                    let x = if *stride == 2 {
                        space_to_depth2(x, *pad, op.kernel)?
                    } else {
                        x.contiguous()?
                    };
                    let y = x.apply_op1_no_bwd(op)?;
                    // With an epilogue the bias is inside it; a plain conv adds its bias here.
                    return match (bias, &op.epi) {
                        (Some(b), None) => {
                            y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)
                        }
                        _ => Ok(y),
                    };
                }
                let y = if pad.0 == pad.1 {
                    x.conv2d(weight, pad.0, *stride, 1, 1)?
                } else {
                    x.pad_with_zeros(2, pad.0, pad.0)?
                        .pad_with_zeros(3, pad.1, pad.1)?
                        .conv2d(weight, 0, *stride, 1, 1)?
                };
                let y = match bias {
                    Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
                    None => y,
                };
                match &self.epi {
                    Some(e) => e.apply(&y),
                    None => Ok(y),
                }
            }
        }
    }
}

/// Where phase (py, px) of a 2×2 block goes among the 4 channel groups of [`space_to_depth2`]:
/// slots hold phases (1,0), (0,0), (0,1), (1,1), so the phases a folded kernel's last tap row
/// ((0,0), (0,1)), last column ((1,0), (0,0)) or corner ((0,0)) reads are contiguous.
fn phase_slot(py: usize, px: usize) -> usize {
    match (py, px) {
        (1, 0) => 0,
        (0, 0) => 1,
        (0, 1) => 2,
        _ => 3,
    }
}

/// The input of a stride-2 convolution rearranged for a stride-1 one: zero-padded by `pad`
/// (plus what evens the size and covers the folded kernel `k2`), then each 2×2 block of pixels
/// becomes 4 channels (slot-major: `phase_slot(py, px)·C + c`). A k×k stride-2 conv over `x` equals a
/// ⌈k/2⌉×⌈k/2⌉ stride-1 conv over this with the weights regrouped the same way.
fn space_to_depth2(x: &Tensor, pad: (usize, usize), k2: (usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    // Output size of the original conv: floor((h + 2p - k) / 2) + 1 with k = 2·k2 - 1 or 2·k2;
    // rows needed after padding: 2·(ho - 1 + k2).
    let out = |len: usize, p: usize, k2: usize| -> usize {
        let padded = len + 2 * p;
        let k = 2 * k2 - 1; // only odd kernels are folded (see `Conv::new`)
        (padded.saturating_sub(k)) / 2 + 1
    };
    let (ho, wo) = (out(h, pad.0, k2.0), out(w, pad.1, k2.1));
    let (h2, w2) = (ho - 1 + k2.0, wo - 1 + k2.1);
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        // One gather pass straight from the input's storage (the pad/permute/copy chain below
        // makes four).
        return x
            .contiguous()?
            .apply_op1_no_bwd(&SpaceToDepth2 { pad, out: (h2, w2) });
    }
    let (bottom, right) = (2 * h2 - h - pad.0, 2 * w2 - w - pad.1);
    x.pad_with_zeros(2, pad.0, bottom)?
        .pad_with_zeros(3, pad.1, right)?
        .reshape((n, c, h2, 2, w2, 2))?
        .permute((0, 3, 5, 1, 2, 4))?
        .reshape((n, 4, c, h2, w2))?
        // phase index py·2 + px of each slot (see `phase_slot`)
        .index_select(&Tensor::new(&[2u32, 0, 1, 3], x.device())?, 1)?
        .reshape((n, 4 * c, h2, w2))?
        .contiguous()
}

/// [`space_to_depth2`]'s CPU gather: output `[N, 4C, h2, w2]`, zero where the padding is.
struct SpaceToDepth2 {
    pad: (usize, usize),
    out: (usize, usize),
}

impl candle_core::CustomOp1 for SpaceToDepth2 {
    fn name(&self) -> &'static str {
        "space-to-depth2"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let src = super::ops::contiguous_f32("space-to-depth", storage, layout)?;
        let (pad, (h2, w2)) = (self.pad, self.out);
        let mut out = vec![0f32; n * 4 * c * h2 * w2];
        for (b, img) in src.chunks_exact(c * h * w).enumerate() {
            for ci in 0..c {
                let plane = &img[ci * h * w..(ci + 1) * h * w];
                for y in 0..h {
                    let py = y + pad.0;
                    let (ry, phy) = (py / 2, py % 2);
                    let row = &plane[y * w..(y + 1) * w];
                    for phx in 0..2 {
                        let oc = (b * 4 + phase_slot(phy, phx)) * c + ci;
                        let dst = &mut out[(oc * h2 + ry) * w2..(oc * h2 + ry + 1) * w2];
                        // Input columns x with (x + pad) % 2 == phx land at (x + pad) / 2.
                        let first = (phx + 2 - pad.1 % 2) % 2;
                        for xx in (first..w).step_by(2) {
                            dst[(xx + pad.1) / 2] = row[xx];
                        }
                    }
                }
            }
        }
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((n, 4 * c, h2, w2)),
        ))
    }
}

/// A transposed convolution (the DB head's 2×2, stride-2 upsamplers) with an optional fused
/// epilogue. On CPU, kernel = stride runs [`ConvTransposeOp`] (one GEMM + one scatter pass);
/// otherwise candle's `conv_transpose2d`.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    epi: Option<ChannelEpilogue>,
    op: Option<ConvTransposeOp>,
}

impl ConvTranspose {
    pub fn new(p: ConvParams) -> Result<Self> {
        if p.stride.0 != p.stride.1 || p.pads.iter().any(|x| *x != 0) || p.groups != 1 {
            bail!(
                "transposed convolution: only symmetric stride, no padding, one group is supported"
            )
        }
        let (cin, cout, kh, kw) = p.weight.dims4()?;
        let op = (kh == p.stride.0 && kw == p.stride.0)
            .then(|| -> Result<ConvTransposeOp> {
                Ok(ConvTransposeOp {
                    weight: p.weight.flatten_all()?.to_vec1::<f32>()?,
                    cin,
                    cout,
                    k: kh,
                    epi: None,
                })
            })
            .transpose()?;
        Ok(Self {
            weight: p.weight,
            bias: p.bias,
            stride: p.stride.0,
            epi: None,
            op,
        })
    }

    /// Builds it with its bias moved into a fused epilogue that `then` extends.
    pub fn with_epilogue(
        mut p: ConvParams,
        then: impl FnOnce(ChannelEpilogue) -> ChannelEpilogue,
    ) -> Result<Self> {
        let channels = p.weight.dim(1)?;
        let epi = then(take_bias_epilogue(&mut p, channels)?);
        let mut t = Self::new(p)?;
        if let Some(op) = &mut t.op {
            op.epi = Some(epi.clone());
        }
        t.epi = Some(epi);
        Ok(t)
    }
}

impl Module for ConvTranspose {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(op) = self
            .op
            .as_ref()
            .filter(|_| x.device().is_cpu() && x.dtype() == DType::F32)
        {
            let y = x.contiguous()?.apply_op1_no_bwd(op)?;
            return match (&self.bias, &op.epi) {
                (Some(b), None) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
                _ => Ok(y),
            };
        }
        let y = x.conv_transpose2d(&self.weight, 0, 0, self.stride, 1)?;
        let y = match (&self.bias, &self.epi) {
            (Some(b), None) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
            _ => y,
        };
        match &self.epi {
            Some(e) => e.apply(&y),
            None => Ok(y),
        }
    }
}

/// A batch norm as per-channel `x * a + b` (for [`ChannelEpilogue::then_channel_affine`]).
pub fn bn_affine(p: &BnParams) -> Result<(Vec<f32>, Vec<f32>)> {
    let scale = p.scale.to_vec1::<f32>()?;
    let bias = p.bias.to_vec1::<f32>()?;
    let mean = p.mean.to_vec1::<f32>()?;
    let var = p.var.to_vec1::<f32>()?;
    let a: Vec<f32> = scale
        .iter()
        .zip(&var)
        .map(|(s, v)| s / (v + p.eps as f32).sqrt())
        .collect();
    let b: Vec<f32> = bias
        .iter()
        .zip(&mean)
        .zip(&a)
        .map(|((b, m), a)| b - m * a)
        .collect();
    Ok((a, b))
}

/// Softmax over the last axis, shifted by the maximum for stability.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

pub use candle_nn::Linear;

/// candle-nn's [`Linear`] from a weight stored [in, out] (the ONNX MatMul layout; DETR
/// transposes its checkpoint's [out, in] once at load). candle-nn keeps the weight [out, in]
/// and multiplies by its transpose: given the transposed view of an [in, out] matrix, that
/// product reads it row-major, as the hand-written linear it replaced did. Measured on
/// DETR's and SVTR's shapes: bit-identical outputs and the same speed (candle-nn's own [out, in]
/// storage was 5–8 % slower on the 825×256→2048 FFN). A 3-D or 4-D input must be contiguous to
/// run as one 2-D product (otherwise candle-nn broadcasts the weight per batch item).
pub fn linear(weight_in_out: Tensor, bias: Option<Tensor>) -> Result<Linear> {
    Ok(Linear::new(weight_in_out.t()?, bias))
}

/// Layer norm over the last axis. Ours rather than `candle_nn::LayerNorm`: candle-nn's CPU
/// kernel takes the variance as E[x²] − mean² in one scalar pass (different values, and
/// cancellation on rows with a large mean), ours two passes over vectorized lanes
/// ([`super::ops::fused::layer_norm_rows`]), which is also what the parity tests were made
/// against.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // CPU: one pass per row instead of seven whole-tensor ops (DETR's encoder normalizes
        // 825 × 256 per layer and page).
        if x.device().is_cpu() && self.gamma.dtype() == DType::F32 {
            let (gamma, beta) = (self.gamma.to_vec1::<f32>()?, self.beta.to_vec1::<f32>()?);
            if let Some(y) = super::ops::fused::layer_norm_rows(x, &gamma, &beta, self.eps) {
                return y;
            }
        }
        let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.gamma)?
            .broadcast_add(&self.beta)
    }
}

/// Squeeze-and-excitation: `x * hard_sigmoid(conv2(relu(conv1(mean_hw(x)))))`; on CPU one
/// fused op ([`SeOp`]), elsewhere candle operations.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    conv1: Conv,
    conv2: Conv,
    alpha: f64,
    op: SeOp,
}

impl SqueezeExcite {
    /// From the two 1×1 convolutions (with biases) and the hard-sigmoid slope.
    pub fn new(p1: ConvParams, p2: ConvParams, alpha: f64) -> Result<Self> {
        let (mid, channels, _, _) = p1.weight.dims4()?;
        let host = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1::<f32>() };
        let bias = |p: &ConvParams, n: usize| -> Result<Vec<f32>> {
            p.bias.as_ref().map_or(Ok(vec![0.0; n]), host)
        };
        let op = SeOp {
            w1: host(&p1.weight)?,
            b1: bias(&p1, mid)?,
            w2: host(&p2.weight)?,
            b2: bias(&p2, channels)?,
            channels,
            mid,
            alpha: alpha as f32,
        };
        Ok(Self {
            conv1: Conv::new(p1)?,
            conv2: Conv::new(p2)?,
            alpha,
            op,
        })
    }
}

impl Module for SqueezeExcite {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return x.contiguous()?.apply_op1_no_bwd(&self.op);
        }
        self.forward_generic(x)
    }
}

impl SqueezeExcite {
    /// The candle-operations path (CUDA, Metal).
    fn forward_generic(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
        let s = self.conv2.forward(&self.conv1.forward(&s)?.relu()?)?;
        x.broadcast_mul(&hard_sigmoid(&s, self.alpha)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_squeeze_excite_matches_the_candle_path() {
        let dev = Device::Cpu;
        let conv = |cout: usize, cin: usize| ConvParams {
            weight: Tensor::randn(0f32, 0.5, (cout, cin, 1, 1), &dev).expect("w"),
            bias: Some(Tensor::randn(0f32, 0.5, cout, &dev).expect("b")),
            stride: (1, 1),
            pads: [0; 4],
            groups: 1,
        };
        let se = SqueezeExcite::new(conv(3, 8), conv(8, 3), 0.2).expect("se");
        let x = Tensor::randn(0f32, 1.0, (2, 8, 5, 7), &dev).expect("x");
        let d = crate::models::ops::max_abs_diff(
            &se.forward(&x).expect("fused"),
            &se.forward_generic(&x).expect("generic"),
        );
        assert!(d < 1e-5, "max diff {d}");
    }

    #[test]
    fn stride_two_dense_conv_matches_candle() {
        let dev = Device::Cpu;
        for (cin, cout, k, pad, h, w) in [
            (3, 16, 3, 1, 20, 16),
            (3, 8, 3, 1, 21, 17),
            (4, 5, 5, 2, 13, 10),
            (2, 3, 3, 0, 9, 12),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &dev).expect("x");
            let wt = Tensor::randn(0f32, 1.0, (cout, cin, k, k), &dev).expect("w");
            let b = Tensor::randn(0f32, 1.0, cout, &dev).expect("b");
            let conv = Conv::new(ConvParams {
                weight: wt.clone(),
                bias: Some(b.clone()),
                stride: (2, 2),
                pads: [pad; 4],
                groups: 1,
            })
            .expect("conv");
            let got = conv.forward(&x).expect("forward");
            let want = x
                .conv2d(&wt, pad, 2, 1, 1)
                .and_then(|y| y.broadcast_add(&b.reshape((1, cout, 1, 1))?))
                .expect("reference");
            assert_eq!(got.dims(), want.dims(), "{cin} {cout} k{k} p{pad} {h}x{w}");
            let d = crate::models::ops::max_abs_diff(&got, &want);
            assert!(d < 1e-4, "max diff {d} for k{k} p{pad} {h}x{w}");
        }
    }

    #[test]
    fn folded_batch_norm_matches_the_formula() {
        let dev = Device::Cpu;
        let p = BnParams {
            scale: Tensor::new(&[2f32, 0.5], &dev).expect("t"),
            bias: Tensor::new(&[1f32, -1.0], &dev).expect("t"),
            mean: Tensor::new(&[0.5f32, 2.0], &dev).expect("t"),
            var: Tensor::new(&[4f32, 0.25], &dev).expect("t"),
            eps: 0.0,
        };
        let (a, b) = bn_affine(&p).expect("bn");
        let y: Vec<f32> = a.iter().zip(&b).map(|(a, b)| 3.0 * a + b).collect();
        // (3-0.5)/2*2+1 = 3.5 ; (3-2)/0.5*0.5-1 = 0
        assert!((y[0] - 3.5).abs() < 1e-6 && y[1].abs() < 1e-6, "{y:?}");
    }
}
