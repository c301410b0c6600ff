//! The ResNet backbone of DETR and Table Transformer (He et al. 2016), frozen batch norms folded
//! into the convolutions, under either of the two checkpoint namings:
//!
//! - **timm** (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.{0,1}`): the original
//!   DETR/TATR checkpoints, cmarkea/detr-layout-detection, the TATR `main` revisions;
//! - **HF ResNet** (`embedder.embedder.convolution`, `encoder.stages.0.layers.0.layer.0`,
//!   `…shortcut`): `no_timm` revisions and TATR v1.1.
//!
//! Both compute the same network (stride on the 3×3 convolution of a bottleneck, 7×7 stem,
//! 3×3 max pool); only names differ. Frozen batch norm is `x·w/√(var+1e-5) + b − mean·w/√(…)`,
//! exactly an affine map, so it folds into the convolution's epilogue.
//!
//! **Batches of mixed sizes.** Images are padded bottom/right to the batch's largest one. To
//! make a padded image's features equal its unpadded ones, the activations in the padding are
//! zeroed before every convolution that looks at neighbours (k > 1) and before the max pool:
//! the convolution then sees the same zeros as the unpadded image's zero padding (and after a
//! ReLU a zero never wins a max). The reference (transformers) does not do this, so its batched
//! outputs differ slightly from its unbatched ones; ours equal the unbatched reference — see
//! `models/detr/mod.rs`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::models::checkpoint::TORCH_DEFAULT;
use crate::models::deploy_graph::ConvParams;
use crate::models::layers::Conv;
use crate::models::ops::pointwise::Act;

/// Which checkpoint naming the backbone's tensors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    Timm,
    HfResnet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Block {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1 → 3×3 → 1×1, four-fold expansion (ResNet-50/101).
    Bottleneck,
}

/// A ResNet's shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    pub naming: Naming,
    pub block: Block,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Stem output channels.
    pub stem: usize,
    /// Output channels of each stage (bottleneck: 4 × its inner width).
    pub widths: Vec<usize>,
}

impl ResNetConfig {
    /// timm's resnet18/34/50/101 (the names DETR and TATR configs give in `backbone`).
    pub fn timm(name: &str) -> Option<Self> {
        let (block, depths) = match name {
            "resnet18" => (Block::Basic, vec![2, 2, 2, 2]),
            "resnet34" => (Block::Basic, vec![3, 4, 6, 3]),
            "resnet50" => (Block::Bottleneck, vec![3, 4, 6, 3]),
            "resnet101" => (Block::Bottleneck, vec![3, 4, 23, 3]),
            _ => return None,
        };
        let expansion = if block == Block::Bottleneck { 4 } else { 1 };
        Some(Self {
            naming: Naming::Timm,
            block,
            depths,
            stem: 64,
            widths: [64, 128, 256, 512].iter().map(|w| w * expansion).collect(),
        })
    }

    /// Output channels of the last stage.
    pub fn channels(&self) -> usize {
        self.widths.last().copied().unwrap_or(self.stem)
    }
}

/// A convolution with its frozen batch norm folded in, and its geometry (for masks).
struct ConvBn {
    conv: Conv,
    kernel: usize,
    stride: usize,
    pad: usize,
    /// 1×1 stride-2 convolutions subsample first, then run as 1×1 stride 1.
    subsample: bool,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn load(
        conv_w: &VarBuilder<'_>,
        bn: &VarBuilder<'_>,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        act: Act,
    ) -> Result<Self> {
        let weight = conv_w.get_with_hints((cout, cin, kernel, kernel), "weight", TORCH_DEFAULT)?;
        let host = |name: &str, init: Init| -> Result<Vec<f32>> {
            bn.get_with_hints(cout, name, init)?.to_vec1::<f32>()
        };
        let (w, b) = (
            host("weight", Init::Const(1.0))?,
            host("bias", Init::Const(0.0))?,
        );
        let mean = host("running_mean", Init::Const(0.0))?;
        let var = host("running_var", Init::Const(1.0))?;
        // DetrFrozenBatchNorm2d, in its order of operations: scale = w·rsqrt(var + 1e-5),
        // shift = b − mean·scale. (`layers::bn_affine` divides by the square root instead: one
        // ulp here moved the tiny fixtures' logits by 1e-4.)
        let scale: Vec<f32> = w
            .iter()
            .zip(&var)
            .map(|(w, v)| w * (v + 1e-5).sqrt().recip())
            .collect();
        let shift: Vec<f32> = b
            .iter()
            .zip(mean.iter().zip(&scale))
            .map(|(b, (m, s))| b - m * s)
            .collect();
        let pad = kernel / 2;
        let subsample = kernel == 1 && stride == 2;
        let conv = Conv::with_epilogue(
            ConvParams {
                weight,
                bias: None,
                stride: if subsample { (1, 1) } else { (stride, stride) },
                pads: [pad; 4],
                groups: 1,
            },
            |e| e.then_channel_affine(&scale, &shift).then_act(act),
        )?;
        Ok(Self {
            conv,
            kernel,
            stride,
            pad,
            subsample,
        })
    }

    fn out_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.pad - self.kernel) / self.stride + 1;
        (o(h), o(w))
    }

    /// Runs the convolution; `valid` holds each image's valid size at the input's resolution
    /// (None: no padding in the batch), updated to the output's.
    fn forward(&self, x: &Tensor, valid: &mut Option<Vec<(usize, usize)>>) -> Result<Tensor> {
        let y = if self.subsample {
            self.conv.forward(&subsample2(x)?)?
        } else if self.kernel > 1
            && let Some(v) = valid.as_ref()
        {
            self.conv.forward(&mask_padding(x, v)?)?
        } else {
            self.conv.forward(x)?
        };
        if let Some(v) = valid.as_mut() {
            for s in v.iter_mut() {
                *s = self.out_size(*s);
            }
        }
        Ok(y)
    }
}

/// Every other row and column, starting at 0 (a 1×1 stride-2 convolution's input).
fn subsample2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let x = x.pad_with_zeros(2, 0, h % 2)?.pad_with_zeros(3, 0, w % 2)?;
    x.reshape((n, c, h.div_ceil(2), 2, w.div_ceil(2), 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, h.div_ceil(2), w.div_ceil(2)))?
        .contiguous()
}

/// `x` with every image's activations outside its valid `(h, w)` set to zero.
pub fn mask_padding(x: &Tensor, valid: &[(usize, usize)]) -> Result<Tensor> {
    let (n, _, h, w) = x.dims4()?;
    let mut m = vec![0f32; n * h * w];
    for (i, &(vh, vw)) in valid.iter().enumerate() {
        for y in 0..vh.min(h) {
            m[(i * h + y) * w..(i * h + y) * w + vw.min(w)].fill(1.0);
        }
    }
    let m = Tensor::from_vec(m, (n, 1, h, w), x.device())?;
    x.broadcast_mul(&m)
}

struct ResBlock {
    convs: Vec<ConvBn>,
    shortcut: Option<ConvBn>,
}

impl ResBlock {
    fn forward(&self, x: &Tensor, valid: &mut Option<Vec<(usize, usize)>>) -> Result<Tensor> {
        let input_valid = valid.clone();
        let mut y = x.clone();
        for c in &self.convs {
            y = c.forward(&y, valid)?;
        }
        let s = match &self.shortcut {
            Some(sc) => sc.forward(x, &mut input_valid.clone())?,
            None => x.clone(),
        };
        crate::models::ops::fused::add_relu(&y, &s)
    }
}

/// The backbone: stem, max pool, four stages; returns the last stage's feature map (and the
/// earlier ones on request, for the segmentation mask head).
pub struct ResNet {
    stem: ConvBn,
    /// Blocks, stage by stage.
    stages: Vec<Vec<ResBlock>>,
    pub config: ResNetConfig,
}

/// One stage's output and each image's valid size in it (None: no image padded).
pub type StageOutput = (Tensor, Option<Vec<(usize, usize)>>);

impl ResNet {
    /// Loads from `w` (the backbone's root: `…conv_encoder.model`).
    pub fn load(cfg: &ResNetConfig, w: &VarBuilder<'_>) -> Result<Self> {
        let stem = match cfg.naming {
            Naming::Timm => {
                ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), 3, cfg.stem, 7, 2, Act::Relu)?
            }
            Naming::HfResnet => {
                let e = w.pp("embedder").pp("embedder");
                ConvBn::load(
                    &e.pp("convolution"),
                    &e.pp("normalization"),
                    3,
                    cfg.stem,
                    7,
                    2,
                    Act::Relu,
                )?
            }
        };
        let mut stages = Vec::new();
        let mut cin = cfg.stem;
        for (s, (&depth, &cout)) in cfg.depths.iter().zip(&cfg.widths).enumerate() {
            let mut blocks = Vec::new();
            for b in 0..depth {
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let block_in = if b == 0 { cin } else { cout };
                let (bw, names): (VarBuilder<'_>, BlockNames) = match cfg.naming {
                    Naming::Timm => (
                        w.pp(format!("layer{}", s + 1)).pp(b.to_string()),
                        BlockNames::Timm,
                    ),
                    Naming::HfResnet => (
                        w.pp("encoder")
                            .pp("stages")
                            .pp(s.to_string())
                            .pp("layers")
                            .pp(b.to_string()),
                        BlockNames::Hf,
                    ),
                };
                blocks.push(load_block(&bw, names, cfg.block, block_in, cout, stride)?);
            }
            stages.push(blocks);
            cin = cout;
        }
        Ok(Self {
            stem,
            stages,
            config: cfg.clone(),
        })
    }

    /// The last feature map of `x` [N, 3, H, W]; `valid` holds each image's unpadded size (or
    /// None when no image is padded) and comes back at the feature map's resolution.
    pub fn forward(&self, x: &Tensor, valid: &mut Option<Vec<(usize, usize)>>) -> Result<Tensor> {
        let mut stages = self.forward_stages(x, valid, false)?;
        Ok(stages.pop().expect("a ResNet has stages").0)
    }

    /// Like [`ResNet::forward`]; with `keep_all`, every stage's output comes back (first to
    /// last), else only the last.
    pub fn forward_stages(
        &self,
        x: &Tensor,
        valid: &mut Option<Vec<(usize, usize)>>,
        keep_all: bool,
    ) -> Result<Vec<StageOutput>> {
        let y = self.stem.forward(x, valid)?;
        // Max pool 3×3, stride 2, pad 1. In a padded batch the padding is zeroed first: after
        // the ReLU every real value is ≥ 0, so a zero never changes a window's maximum.
        let y = match valid.as_ref() {
            Some(v) => mask_padding(&y, v)?,
            None => y,
        };
        let y = crate::models::ops::fused::max_pool_3x3_s2(&y)?;
        if let Some(v) = valid.as_mut() {
            for s in v.iter_mut() {
                *s = ((s.0 - 1) / 2 + 1, (s.1 - 1) / 2 + 1);
            }
        }
        let mut y = y;
        let mut out = Vec::new();
        for (i, blocks) in self.stages.iter().enumerate() {
            for b in blocks {
                y = b.forward(&y, valid)?;
            }
            if keep_all || i + 1 == self.stages.len() {
                out.push((y.clone(), valid.clone()));
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy)]
enum BlockNames {
    Timm,
    Hf,
}

fn load_block(
    w: &VarBuilder<'_>,
    names: BlockNames,
    block: Block,
    cin: usize,
    cout: usize,
    stride: usize,
) -> Result<ResBlock> {
    // (conv, bn) weights of the block's k-th convolution.
    let conv_k = |k: usize| -> (VarBuilder<'_>, VarBuilder<'_>) {
        match names {
            BlockNames::Timm => (w.pp(format!("conv{}", k + 1)), w.pp(format!("bn{}", k + 1))),
            BlockNames::Hf => {
                let l = w.pp("layer").pp(k.to_string());
                (l.pp("convolution"), l.pp("normalization"))
            }
        }
    };
    let mut convs = Vec::new();
    match block {
        Block::Basic => {
            let (c, b) = conv_k(0);
            convs.push(ConvBn::load(&c, &b, cin, cout, 3, stride, Act::Relu)?);
            let (c, b) = conv_k(1);
            convs.push(ConvBn::load(&c, &b, cout, cout, 3, 1, Act::Identity)?);
        }
        Block::Bottleneck => {
            let mid = cout / 4;
            let (c, b) = conv_k(0);
            convs.push(ConvBn::load(&c, &b, cin, mid, 1, 1, Act::Relu)?);
            let (c, b) = conv_k(1);
            convs.push(ConvBn::load(&c, &b, mid, mid, 3, stride, Act::Relu)?);
            let (c, b) = conv_k(2);
            convs.push(ConvBn::load(&c, &b, mid, cout, 1, 1, Act::Identity)?);
        }
    }
    let shortcut = if cin != cout || stride != 1 {
        let (c, b) = match names {
            BlockNames::Timm => (w.pp("downsample").pp("0"), w.pp("downsample").pp("1")),
            BlockNames::Hf => (
                w.pp("shortcut").pp("convolution"),
                w.pp("shortcut").pp("normalization"),
            ),
        };
        Some(ConvBn::load(&c, &b, cin, cout, 1, stride, Act::Identity)?)
    } else {
        None
    };
    Ok(ResBlock { convs, shortcut })
}
