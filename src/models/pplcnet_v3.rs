//! PP-LCNetV3, the backbone of PP-OCRv4/v5 mobile detection and recognition, in deploy form
//! (re-parameterized branches merged into one convolution, batch norms folded into biases).
//!
//! Architecture: PaddleOCR `ppocr/modeling/backbones/rec_lcnetv3.py` (PP-LCNetV3); paper
//! "PP-LCNet: A Lightweight CPU Convolutional Neural Network" (arXiv:2109.15099), with the
//! learnable affine blocks of PP-OCRv4. A stem (3×3 stride-2 conv + batch norm), then blocks of
//! depthwise conv → optional squeeze-excite → pointwise conv; each conv is followed by a
//! learnable affine block (LAB) and, except after stride-(2,2) depthwise convs, by hard-swish
//! and a second LAB. In detection mode the outputs of stages 3–6 go through 1×1 convs to the
//! neck.
//!
//! Channel counts are read from the checkpoint (they depend on the width scale: ×0.75 for
//! det, ×0.95 for rec); the block layout (kernel, stride, SE) is the configuration below.

use candle_core::{Module, Result, Tensor};

use super::deploy_graph::{GraphError, ParamCursor};
use super::layers::{Conv, SqueezeExcite, bn_affine};
use super::ops::pointwise::Act;

/// One block: depthwise kernel, depthwise stride (vertical, horizontal), squeeze-excite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: (usize, usize),
    pub se: bool,
}

const fn b(kernel: usize, stride: (usize, usize), se: bool) -> BlockSpec {
    BlockSpec { kernel, stride, se }
}

/// PaddleOCR's `NET_CONFIG_det`: stages 2–6.
pub const DET_STAGES: [&[BlockSpec]; 5] = [
    &[b(3, (1, 1), false)],
    &[b(3, (2, 2), false), b(3, (1, 1), false)],
    &[b(3, (2, 2), false), b(3, (1, 1), false)],
    &[
        b(3, (2, 2), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
    ],
    &[
        b(5, (2, 2), true),
        b(5, (1, 1), true),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
    ],
];

/// PaddleOCR's `NET_CONFIG_rec`: stages 2–6, downsampling height more than width so a text
/// line keeps its horizontal resolution (48×W in, 3×W/4 out before pooling).
pub const REC_STAGES: [&[BlockSpec]; 5] = [
    &[b(3, (1, 1), false)],
    &[b(3, (1, 1), false), b(3, (1, 1), false)],
    &[b(3, (2, 1), false), b(3, (1, 1), false)],
    &[
        b(3, (1, 2), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
        b(5, (1, 1), false),
    ],
    &[
        b(5, (2, 1), true),
        b(5, (1, 1), true),
        b(5, (2, 1), false),
        b(5, (1, 1), false),
    ],
];

/// A conv followed by a LAB and, optionally, hard-swish + a second LAB (PaddleOCR's
/// `LearnableRepLayer` after re-parameterization). Bias, LABs and activation run as one fused
/// epilogue pass.
#[derive(Debug, Clone)]
struct RepLayer {
    conv: Conv,
}

impl RepLayer {
    fn load(
        p: &mut ParamCursor,
        depthwise: bool,
        kernel: usize,
        act: bool,
    ) -> std::result::Result<Self, GraphError> {
        let cp = p.conv(depthwise, Some(kernel))?;
        let (s1, b1) = p.lab()?;
        let second = if act { Some(p.lab()?) } else { None };
        let conv = Conv::with_epilogue(cp, |e| {
            let e = e.then_affine(s1 as f32, b1 as f32);
            match second {
                Some((s2, b2)) => e.then_act(Act::HardSwish).then_affine(s2 as f32, b2 as f32),
                None => e,
            }
        })?;
        Ok(Self { conv })
    }
}

impl Module for RepLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}

#[derive(Debug, Clone)]
struct Block {
    dw: RepLayer,
    se: Option<SqueezeExcite>,
    pw: RepLayer,
}

impl Block {
    fn load(p: &mut ParamCursor, spec: BlockSpec) -> std::result::Result<Self, GraphError> {
        // Paddle applies the activation unless the stride is exactly 2 (on both axes).
        let dw = RepLayer::load(p, true, spec.kernel, spec.stride != (2, 2))?;
        let got = dw.conv.depthwise_stride().unwrap_or((0, 0));
        if got != spec.stride {
            return Err(GraphError::Bad {
                model: "pplcnet_v3".into(),
                message: format!(
                    "block stride {:?} in the checkpoint, {:?} in the configuration",
                    got, spec.stride
                ),
            });
        }
        let se = if spec.se {
            let p1 = p.conv(false, Some(1))?;
            let p2 = p.conv(false, Some(1))?;
            Some(SqueezeExcite::new(p1, p2, 1.0 / 6.0)?)
        } else {
            None
        };
        let pw = RepLayer::load(p, false, 1, true)?;
        Ok(Self { dw, se, pw })
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = self.dw.forward(x)?;
        if let Some(se) = &self.se {
            y = se.forward(&y)?;
        }
        self.pw.forward(&y)
    }
}

/// The backbone: in detection mode four feature maps at strides 4, 8, 16, 32; in recognition
/// mode one map pooled to height 1.
#[derive(Debug, Clone)]
pub struct PPLCNetV3 {
    /// Stem conv with its batch norm fused.
    stem: Conv,
    stages: Vec<Vec<Block>>,
    /// Detection mode: 1×1 convs applied to the outputs of stages 3, 4, 5, 6.
    outs: Vec<Conv>,
}

impl PPLCNetV3 {
    fn load(
        p: &mut ParamCursor,
        config: &[&[BlockSpec]; 5],
        det_outs: usize,
    ) -> std::result::Result<Self, GraphError> {
        let cp = p.conv(false, Some(3))?;
        let (a, b) = bn_affine(&p.batch_norm()?)?;
        let stem = Conv::with_epilogue(cp, |e| e.then_channel_affine(&a, &b))?;
        let stages = config
            .iter()
            .map(|specs| {
                specs
                    .iter()
                    .map(|s| Block::load(p, *s))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let outs = (0..det_outs)
            .map(|_| Ok(Conv::new(p.conv(false, Some(1))?)?))
            .collect::<std::result::Result<Vec<_>, GraphError>>()?;
        Ok(Self { stem, stages, outs })
    }

    /// Detection configuration (`NET_CONFIG_det`, four outputs).
    pub fn load_det(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        Self::load(p, &DET_STAGES, 4)
    }

    /// Recognition configuration (`NET_CONFIG_rec`).
    pub fn load_rec(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        Self::load(p, &REC_STAGES, 0)
    }

    fn run(&self, x: &Tensor, mut tap: impl FnMut(usize, &Tensor)) -> Result<Tensor> {
        let mut y = self.stem.forward(x)?;
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                y = block.forward(&y)?;
            }
            tap(i, &y);
        }
        Ok(y)
    }

    /// Detection mode: the four neck inputs (strides 4, 8, 16, 32).
    pub fn forward_det(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut feats = Vec::with_capacity(4);
        self.run(x, |i, y| {
            if i >= 1 {
                feats.push(y.clone());
            }
        })?;
        feats
            .iter()
            .zip(&self.outs)
            .map(|(f, c)| c.forward(f))
            .collect()
    }

    /// Recognition mode: [N, C, 1, W/8] after PaddleOCR's 3×2 average pooling.
    pub fn forward_rec(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, |_, _| {})?
            .avg_pool2d_with_stride((3, 2), (3, 2))
    }
}
