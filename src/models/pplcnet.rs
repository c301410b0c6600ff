//! PP-LCNet (v1), the backbone of PP-PicoDet layout detection and SLANet table recognition, in
//! deploy form as PaddlePaddle exports it: every convolution followed by an (unfolded) batch
//! norm and hard-swish, which we fold into one fused epilogue at load time.
//!
//! Architecture: PaddleClas `ppcls/arch/backbone/legendary_models/pp_lcnet.py`; paper
//! "PP-LCNet: A Lightweight CPU Convolutional Neural Network" (arXiv:2109.15099). A 3×3
//! stride-2 stem, then depthwise-separable blocks (depthwise conv → optional squeeze-excite →
//! pointwise conv). Both checkpoints we load use width ×1.0; channel counts are read from the
//! checkpoint and the block layout is [`NET_CONFIG`].

use candle_core::{Module, Result, Tensor};

use super::deploy_graph::{GraphError, ParamCursor};
use super::layers::{Conv, SqueezeExcite, bn_affine};
use super::ops::pointwise::Act;

/// One block: depthwise kernel, depthwise stride, squeeze-excite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: usize,
    pub se: bool,
}

const fn b(kernel: usize, stride: usize, se: bool) -> BlockSpec {
    BlockSpec { kernel, stride, se }
}

/// PaddleClas `NET_CONFIG`, stages `blocks2` … `blocks6` (strides 2, 4, 8, 16, 32 after the
/// stem's 2).
pub const NET_CONFIG: [&[BlockSpec]; 5] = [
    &[b(3, 1, false)],
    &[b(3, 2, false), b(3, 1, false)],
    &[b(3, 2, false), b(3, 1, false)],
    &[
        b(3, 2, false),
        b(5, 1, false),
        b(5, 1, false),
        b(5, 1, false),
        b(5, 1, false),
        b(5, 1, false),
    ],
    &[b(5, 2, true), b(5, 1, true)],
];

/// A convolution + batch norm + hard-swish (PaddleDetection's `ConvBNLayer` with
/// `act="hard_swish"`), as one conv with a fused epilogue.
pub(crate) fn conv_bn_hswish(
    p: &mut ParamCursor,
    depthwise: bool,
    kernel: usize,
) -> std::result::Result<Conv, GraphError> {
    let cp = p.conv(depthwise, Some(kernel))?;
    let (a, bias) = bn_affine(&p.batch_norm()?)?;
    Ok(Conv::with_epilogue(cp, |e| {
        e.then_channel_affine(&a, &bias).then_act(Act::HardSwish)
    })?)
}

/// Checks that a depthwise conv has the stride the configuration expects.
pub(crate) fn check_stride(
    model: &str,
    conv: &Conv,
    stride: usize,
) -> std::result::Result<(), GraphError> {
    match conv.depthwise_stride() {
        Some(s) if s == (stride, stride) => Ok(()),
        got => Err(GraphError::Bad {
            model: model.into(),
            message: format!("depthwise stride {got:?} in the checkpoint, {stride} expected"),
        }),
    }
}

#[derive(Debug, Clone)]
struct Block {
    dw: Conv,
    se: Option<SqueezeExcite>,
    pw: Conv,
}

impl Block {
    fn load(p: &mut ParamCursor, spec: BlockSpec) -> std::result::Result<Self, GraphError> {
        let dw = conv_bn_hswish(p, true, spec.kernel)?;
        check_stride("pplcnet", &dw, spec.stride)?;
        let se = if spec.se {
            let p1 = p.conv(false, Some(1))?;
            let p2 = p.conv(false, Some(1))?;
            Some(SqueezeExcite::new(p1, p2, 1.0 / 6.0)?)
        } else {
            None
        };
        let pw = conv_bn_hswish(p, false, 1)?;
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

/// The backbone; [`PPLCNet::forward`] returns the outputs of `blocks3` … `blocks6` (strides
/// 4, 8, 16, 32).
#[derive(Debug, Clone)]
pub struct PPLCNet {
    stem: Conv,
    stages: Vec<Vec<Block>>,
}

impl PPLCNet {
    pub fn load(p: &mut ParamCursor) -> std::result::Result<Self, GraphError> {
        let stem = conv_bn_hswish(p, false, 3)?;
        let stages = NET_CONFIG
            .iter()
            .map(|specs| specs.iter().map(|s| Block::load(p, *s)).collect())
            .collect::<std::result::Result<Vec<Vec<_>>, _>>()?;
        Ok(Self { stem, stages })
    }

    /// Milliseconds per layer for one forward pass (benchmarks): the stem, then each block's
    /// depthwise, squeeze-excite and pointwise parts.
    pub fn profile(&self, x: &Tensor) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        let mut timed = |name: String, f: &dyn Fn() -> Result<Tensor>| -> Result<Tensor> {
            let t = std::time::Instant::now();
            let y = f()?;
            out.push((name, t.elapsed().as_secs_f64() * 1e3));
            Ok(y)
        };
        let mut y = timed("stem".into(), &|| self.stem.forward(x))?;
        for (si, stage) in self.stages.iter().enumerate() {
            for (bi, b) in stage.iter().enumerate() {
                let d = y.dims().to_vec();
                y = timed(format!("b{}.{bi} dw {d:?}", si + 2), &|| b.dw.forward(&y))?;
                if let Some(se) = &b.se {
                    y = timed(format!("b{}.{bi} se", si + 2), &|| se.forward(&y))?;
                }
                y = timed(format!("b{}.{bi} pw", si + 2), &|| b.pw.forward(&y))?;
            }
        }
        Ok(out)
    }

    /// Feature maps at strides 4, 8, 16, 32.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut y = self.stem.forward(x)?;
        let mut outs = Vec::with_capacity(4);
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                y = block.forward(&y)?;
            }
            if i >= 1 {
                outs.push(y.clone());
            }
        }
        Ok(outs)
    }
}
