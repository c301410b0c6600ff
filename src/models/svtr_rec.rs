//! PP-OCR text recognition: PP-LCNetV3 backbone (recognition strides) → SVTR neck → CTC head.
//!
//! Architecture: PaddleOCR `ppocr/modeling/necks/rnn.py` (`EncoderWithSVTR`) and
//! `ppocr/modeling/heads/rec_ctc_head.py`; SVTR: "SVTR: Scene Text Recognition with a Single
//! Visual Model" (arXiv:2205.00159). Only the CTC branch of PP-OCRv4/v5's multi-head runs at
//! inference.
//!
//! Neck: 1×3 conv-BN-swish to C/8, 1×1 conv-BN-swish to the hidden size, two pre-norm
//! transformer blocks (global multi-head self-attention, swish MLP ×2) over the W/8 positions,
//! a final layer norm, 1×1 conv-BN-swish back to C, concatenation with the neck input, 1×3 and
//! 1×1 conv-BN-swish. Head: a linear layer to the dictionary size and a softmax.

use std::path::Path;

use candle_core::{Device, Module, Result, Tensor};

use super::deploy_graph::{GraphError, ParamCursor};
use super::layers::{Conv, LayerNorm, Linear, bn_affine, softmax_last};
use super::onnx;
use super::ops::pointwise::{Act, swish};
use super::pplcnet_v3::PPLCNetV3;

/// Attention heads of `EncoderWithSVTR` (PaddleOCR's default; 120 hidden / 8 = 15 per head).
const SVTR_HEADS: usize = 8;
/// Transformer blocks in the neck (PaddleOCR's `depth: 2` for PP-OCRv4/v5 mobile).
const SVTR_DEPTH: usize = 2;

/// Conv + batch norm + swish (bias, BN and swish as one fused epilogue).
#[derive(Debug, Clone)]
struct ConvBnSwish {
    conv: Conv,
}

impl ConvBnSwish {
    fn load(p: &mut ParamCursor, kernel: usize) -> std::result::Result<Self, GraphError> {
        let cp = p.conv(false, Some(kernel))?;
        let (a, b) = bn_affine(&p.batch_norm()?)?;
        let conv = Conv::with_epilogue(cp, |e| e.then_channel_affine(&a, &b).then_act(Act::Swish))?;
        Ok(Self { conv })
    }
}

impl Module for ConvBnSwish {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}

fn linear(p: &mut ParamCursor) -> std::result::Result<Linear, GraphError> {
    let (weight, bias) = p.linear()?;
    Ok(super::layers::linear(weight, bias)?)
}

fn layer_norm(p: &mut ParamCursor) -> std::result::Result<LayerNorm, GraphError> {
    let (gamma, beta, eps) = p.layer_norm()?;
    Ok(LayerNorm { gamma, beta, eps })
}

/// Pre-norm transformer block with global attention.
#[derive(Debug, Clone)]
struct SvtrBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl SvtrBlock {
    fn load(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        Ok(Self {
            norm1: layer_norm(p)?,
            qkv: linear(p)?,
            proj: linear(p)?,
            norm2: layer_norm(p)?,
            fc1: linear(p)?,
            fc2: linear(p)?,
        })
    }
}

impl Module for SvtrBlock {
    /// `x`: [N, T, C].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, t, c) = x.dims3()?;
        let hd = c / SVTR_HEADS;
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(x)?)?
            .reshape((n, t, 3, SVTR_HEADS, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)? * (hd as f64).powf(-0.5))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax_last(&q.matmul(&k.t()?)?)?;
        let o = attn.matmul(&v)?.transpose(1, 2)?.reshape((n, t, c))?;
        let x = x.add(&self.proj.forward(&o)?)?;
        let m = self
            .fc2
            .forward(&swish(&self.fc1.forward(&self.norm2.forward(&x)?)?)?)?;
        x.add(&m)
    }
}

#[derive(Debug, Clone)]
struct SvtrNeck {
    conv1: ConvBnSwish,
    conv2: ConvBnSwish,
    blocks: Vec<SvtrBlock>,
    norm: LayerNorm,
    conv3: ConvBnSwish,
    conv4: ConvBnSwish,
    conv1x1: ConvBnSwish,
}

impl SvtrNeck {
    fn load(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        let conv1 = ConvBnSwish::load(p, 1)?;
        let conv2 = ConvBnSwish::load(p, 1)?;
        let blocks = (0..SVTR_DEPTH)
            .map(|_| SvtrBlock::load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let norm = layer_norm(p)?;
        let conv3 = ConvBnSwish::load(p, 1)?;
        let conv4 = ConvBnSwish::load(p, 1)?;
        let conv1x1 = ConvBnSwish::load(p, 1)?;
        Ok(Self {
            conv1,
            conv2,
            blocks,
            norm,
            conv3,
            conv4,
            conv1x1,
        })
    }
}

impl Module for SvtrNeck {
    /// [N, C, 1, W] → [N, W, hidden].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let z = self.conv2.forward(&self.conv1.forward(x)?)?;
        let (n, c, h, w) = z.dims4()?;
        let mut seq = z.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        for b in &self.blocks {
            seq = b.forward(&seq)?;
        }
        let seq = self.norm.forward(&seq)?;
        let z = seq
            .reshape((n, h, w, c))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let z = self.conv3.forward(&z)?;
        let z = Tensor::cat(&[x, &z], 1)?;
        let z = self.conv1x1.forward(&self.conv4.forward(&z)?)?;
        // Contiguous for the CTC head: one 2-D product (see `layers::linear`).
        z.squeeze(2)?.transpose(1, 2)?.contiguous()
    }
}

/// The whole recognizer.
#[derive(Debug, Clone)]
pub struct SvtrRecognizer {
    backbone: PPLCNetV3,
    neck: SvtrNeck,
    head: Linear,
}

impl SvtrRecognizer {
    pub fn from_onnx(
        name: &str,
        model: &onnx::OnnxModel,
        dev: &Device,
    ) -> std::result::Result<Self, GraphError> {
        let mut p = ParamCursor::new(name, model, dev)?;
        let backbone = PPLCNetV3::load_rec(&mut p)?;
        let neck = SvtrNeck::load(&mut p)?;
        let head = linear(&mut p)?;
        p.finish()?;
        Ok(Self {
            backbone,
            neck,
            head,
        })
    }

    pub fn from_onnx_file(
        name: &str,
        path: &Path,
        dev: &Device,
    ) -> std::result::Result<Self, GraphError> {
        Self::from_onnx(name, &super::deploy_graph::read_onnx(name, path)?, dev)
    }

    /// Milliseconds in the backbone, the neck, the head and the softmax for one forward pass
    /// (benchmarks; CPU only, where work is synchronous).
    pub fn profile(&self, x: &Tensor) -> Result<[f64; 4]> {
        let t = std::time::Instant::now();
        let f = self.backbone.forward_rec(x)?;
        let b = t.elapsed().as_secs_f64() * 1e3;
        let n = self.neck.forward(&f)?;
        let nk = t.elapsed().as_secs_f64() * 1e3;
        let logits = self.head.forward(&n)?;
        let h = t.elapsed().as_secs_f64() * 1e3;
        softmax_last(&logits)?;
        let s = t.elapsed().as_secs_f64() * 1e3;
        Ok([b, nk - b, h - nk, s - h])
    }

    /// `x`: [N, 3, 48, W] normalized → class logits [N, W/8, classes] (before the softmax;
    /// greedy decoding needs only their argmax and one normalizer per kept step).
    pub fn forward_logits(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.backbone.forward_rec(x)?;
        self.head.forward(&self.neck.forward(&f)?)
    }

    /// `x`: [N, 3, 48, W] normalized → class probabilities [N, W/8, classes].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.backbone.forward_rec(x)?;
        softmax_last(&self.head.forward(&self.neck.forward(&f)?)?)
    }
}
