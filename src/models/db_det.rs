//! PP-OCR text detection: PP-LCNetV3 backbone → RSEFPN neck → DB head, producing a text
//! probability map at input resolution.
//!
//! Architecture: "Real-time Scene Text Detection with Differentiable Binarization"
//! (arXiv:1911.08947) as implemented for PP-OCRv4/v5 mobile in PaddleOCR
//! (`ppocr/modeling/necks/db_fpn.py` RSEFPN, `ppocr/modeling/heads/det_db_head.py`). Only the
//! probability branch runs at inference (the threshold branch is dropped at export).
//!
//! RSEFPN: each input goes through an RSE layer (conv, then `x + SE(x)` with hard-sigmoid slope
//! 0.2) to 96 channels; a top-down path adds nearest-upsampled maps; a second RSE layer per
//! level reduces to 24 channels; the levels are upsampled to stride 4 and concatenated.
//! DB head: 3×3 conv + BN + ReLU, 2×2 stride-2 transposed conv + BN + ReLU, 2×2 stride-2
//! transposed conv, sigmoid.

use std::path::Path;

use candle_core::{Device, Module, Result, Tensor};

use super::deploy_graph::{GraphError, ParamCursor};
use super::layers::{Conv, ConvTranspose, SqueezeExcite, bn_affine};
use super::onnx;
use super::ops::pointwise::Act;
use super::pplcnet_v3::PPLCNetV3;

/// Slope of the hard-sigmoid in the neck's squeeze-excite (PaddleOCR's `SEModule` in db_fpn).
const NECK_SE_SLOPE: f64 = 0.2;

/// Conv then `x + SE(x)`.
#[derive(Debug, Clone)]
struct RseLayer {
    conv: Conv,
    se: SqueezeExcite,
}

impl RseLayer {
    fn load(p: &mut ParamCursor, kernel: usize) -> std::result::Result<Self, GraphError> {
        let conv = Conv::new(p.conv(false, Some(kernel))?)?;
        let p1 = p.conv(false, Some(1))?;
        let p2 = p.conv(false, Some(1))?;
        Ok(Self {
            conv,
            se: SqueezeExcite::new(p1, p2, NECK_SE_SLOPE)?,
        })
    }
}

impl Module for RseLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        y.add(&self.se.forward(&y)?)
    }
}

fn upsample(x: &Tensor, factor: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    x.upsample_nearest2d(h * factor, w * factor)
}

#[derive(Debug, Clone)]
struct RseFpn {
    /// Input RSE layers for strides 4, 8, 16, 32.
    ins: [RseLayer; 4],
    /// Output RSE layers for strides 4, 8, 16, 32.
    outs: [RseLayer; 4],
}

impl RseFpn {
    fn load(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        // The export runs (and stores) the deepest level first.
        let i5 = RseLayer::load(p, 1)?;
        let i4 = RseLayer::load(p, 1)?;
        let i3 = RseLayer::load(p, 1)?;
        let i2 = RseLayer::load(p, 1)?;
        let o5 = RseLayer::load(p, 3)?;
        let o4 = RseLayer::load(p, 3)?;
        let o3 = RseLayer::load(p, 3)?;
        let o2 = RseLayer::load(p, 3)?;
        Ok(Self {
            ins: [i2, i3, i4, i5],
            outs: [o2, o3, o4, o5],
        })
    }

    fn forward(&self, c: &[Tensor]) -> Result<Tensor> {
        let in5 = self.ins[3].forward(&c[3])?;
        let in4 = self.ins[2].forward(&c[2])?;
        let in3 = self.ins[1].forward(&c[1])?;
        let in2 = self.ins[0].forward(&c[0])?;
        let out4 = in4.add(&upsample(&in5, 2)?)?;
        let out3 = in3.add(&upsample(&out4, 2)?)?;
        let out2 = in2.add(&upsample(&out3, 2)?)?;
        let p5 = upsample(&self.outs[3].forward(&in5)?, 8)?;
        let p4 = upsample(&self.outs[2].forward(&out4)?, 4)?;
        let p3 = upsample(&self.outs[1].forward(&out3)?, 2)?;
        let p2 = self.outs[0].forward(&out2)?;
        Tensor::cat(&[p5, p4, p3, p2], 1)
    }
}

#[derive(Debug, Clone)]
struct DbHead {
    /// 3×3 conv with BN + ReLU fused.
    conv: Conv,
    /// First 2×2 upsampler with bias + BN + ReLU fused.
    up1: ConvTranspose,
    /// Second 2×2 upsampler with bias + sigmoid fused.
    up2: ConvTranspose,
}

impl DbHead {
    fn load(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        let cp = p.conv(false, Some(3))?;
        let (a, b) = bn_affine(&p.batch_norm()?)?;
        let conv = Conv::with_epilogue(cp, |e| e.then_channel_affine(&a, &b).then_act(Act::Relu))?;
        let tp = p.conv_transpose()?;
        let (a, b) = bn_affine(&p.batch_norm()?)?;
        let up1 = ConvTranspose::with_epilogue(tp, |e| {
            e.then_channel_affine(&a, &b).then_act(Act::Relu)
        })?;
        let up2 = ConvTranspose::with_epilogue(p.conv_transpose()?, |e| e.then_act(Act::Sigmoid))?;
        Ok(Self { conv, up1, up2 })
    }
}

impl Module for DbHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.up2.forward(&self.up1.forward(&self.conv.forward(x)?)?)
    }
}

/// The whole detector.
#[derive(Debug, Clone)]
pub struct DbDetector {
    backbone: PPLCNetV3,
    neck: RseFpn,
    head: DbHead,
}

impl DbDetector {
    /// Builds the detector from a deploy-form ONNX export's parameters.
    pub fn from_onnx(
        name: &str,
        model: &onnx::OnnxModel,
        dev: &Device,
    ) -> std::result::Result<Self, GraphError> {
        let mut p = ParamCursor::new(name, model, dev)?;
        let backbone = PPLCNetV3::load_det(&mut p)?;
        let neck = RseFpn::load(&mut p)?;
        let head = DbHead::load(&mut p)?;
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

    /// Milliseconds spent in the backbone, the neck and the head for one forward pass (for
    /// benchmarks; CPU only, where work is synchronous).
    pub fn profile(&self, x: &Tensor) -> Result<[f64; 3]> {
        let t = std::time::Instant::now();
        let feats = self.backbone.forward_det(x)?;
        let b = t.elapsed().as_secs_f64() * 1e3;
        let fused = self.neck.forward(&feats)?;
        let n = t.elapsed().as_secs_f64() * 1e3;
        self.head.forward(&fused)?;
        let h = t.elapsed().as_secs_f64() * 1e3;
        Ok([b, n - b, h - n])
    }

    /// `x`: [N, 3, H, W] normalized, H and W multiples of 32 → probability map [N, 1, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let feats = self.backbone.forward_det(x)?;
        let fused = self.neck.forward(&feats)?;
        self.head.forward(&fused)
    }
}
