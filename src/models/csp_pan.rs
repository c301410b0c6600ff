//! CSP-PAN, the neck of PP-PicoDet and SLANet: a path-aggregation network whose fusion blocks
//! are cross-stage-partial layers built from depthwise-separable convolutions.
//!
//! Architecture: PaddleDetection `ppdet/modeling/necks/csp_pan.py`; paper "PP-PicoDet: A
//! Better Real-Time Object Detector on Mobile Devices" (arXiv:2111.00902). Every input level is
//! reduced to `out` channels by a 1×1 conv; a top-down pass upsamples (nearest, to the lower
//! level's size) and fuses by concatenation + CSP layer; a bottom-up pass downsamples with a
//! stride-2 depthwise-separable conv and fuses the same way. PicoDet adds a fourth, stride-64
//! level: `first_top_conv(top input) + second_top_conv(last output)`.
//!
//! Parameter order follows the exported graph, which runs a CSP layer's shortcut conv before
//! its main conv; every convolution is conv + batch norm + hard-swish.

use std::time::Instant;

use candle_core::{Module, Result, Tensor};

use super::deploy_graph::{GraphError, ParamCursor};
use super::layers::Conv;
use super::ops::resize::upsample_concat;
use super::pplcnet::{check_stride, conv_bn_hswish};

/// Depthwise conv (stride `stride`, kernel `kernel`) then a pointwise conv.
#[derive(Debug, Clone)]
pub struct DepthwiseSeparable {
    dw: Conv,
    pw: Conv,
}

impl DepthwiseSeparable {
    pub fn load(
        p: &mut ParamCursor,
        kernel: usize,
        stride: usize,
    ) -> std::result::Result<Self, GraphError> {
        let dw = conv_bn_hswish(p, true, kernel)?;
        check_stride("csp_pan", &dw, stride)?;
        let pw = conv_bn_hswish(p, false, 1)?;
        Ok(Self { dw, pw })
    }
}

impl Module for DepthwiseSeparable {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.pw.forward(&self.dw.forward(x)?)
    }
}

/// `final(concat(bottleneck(main(x)), short(x)))` with one bottleneck (1×1 conv then a 5×5
/// depthwise-separable conv, no identity add: PicoDet and SLANet both build it without).
#[derive(Debug, Clone)]
struct CspLayer {
    short: Conv,
    main: Conv,
    bottleneck: (Conv, DepthwiseSeparable),
    fuse: Conv,
}

impl CspLayer {
    fn load(p: &mut ParamCursor, kernel: usize) -> std::result::Result<Self, GraphError> {
        let short = conv_bn_hswish(p, false, 1)?;
        let main = conv_bn_hswish(p, false, 1)?;
        let bottleneck = (
            conv_bn_hswish(p, false, 1)?,
            DepthwiseSeparable::load(p, kernel, 1)?,
        );
        let fuse = conv_bn_hswish(p, false, 1)?;
        Ok(Self {
            short,
            main,
            bottleneck,
            fuse,
        })
    }
}

impl Module for CspLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.short.forward(x)?;
        let m = self
            .bottleneck
            .1
            .forward(&self.bottleneck.0.forward(&self.main.forward(x)?)?)?;
        self.fuse.forward(&Tensor::cat(&[&m, &s], 1)?)
    }
}

/// The neck. `forward` takes the backbone levels (lowest stride first) and returns the fused
/// levels in the same order, plus the extra stride-doubling level when configured.
#[derive(Debug, Clone)]
pub struct CspPan {
    reduce: Vec<Conv>,
    top_down: Vec<CspLayer>,
    downsample: Vec<DepthwiseSeparable>,
    bottom_up: Vec<CspLayer>,
    /// (first_top_conv on the top input, second_top_conv on the top output).
    extra: Option<(DepthwiseSeparable, DepthwiseSeparable)>,
}

/// Depthwise kernel of every CSP-PAN conv in PicoDet and SLANet.
const KERNEL: usize = 5;

impl CspPan {
    /// `levels` backbone inputs; `extra_level` adds PicoDet's stride-doubling output.
    pub fn load(
        p: &mut ParamCursor,
        levels: usize,
        extra_level: bool,
    ) -> std::result::Result<Self, GraphError> {
        let reduce = (0..levels)
            .map(|_| conv_bn_hswish(p, false, 1))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let top_down = (1..levels)
            .map(|_| CspLayer::load(p, KERNEL))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut downsample = Vec::with_capacity(levels - 1);
        let mut bottom_up = Vec::with_capacity(levels - 1);
        for _ in 1..levels {
            downsample.push(DepthwiseSeparable::load(p, KERNEL, 2)?);
            bottom_up.push(CspLayer::load(p, KERNEL)?);
        }
        let extra = if extra_level {
            Some((
                DepthwiseSeparable::load(p, KERNEL, 2)?,
                DepthwiseSeparable::load(p, KERNEL, 2)?,
            ))
        } else {
            None
        };
        Ok(Self {
            reduce,
            top_down,
            downsample,
            bottom_up,
            extra,
        })
    }

    /// Milliseconds in the reduce convs, the top-down and the bottom-up passes (the extra
    /// level included), and within them in upsampling + concatenation (benchmarks).
    pub fn profile(&self, feats: &[Tensor]) -> Result<[f64; 4]> {
        let mut times = [0.0; 4];
        self.run(feats, Some(&mut times))?;
        Ok(times)
    }

    pub fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run(feats, None)
    }

    /// The forward pass; with `times`, adds [`CspPan::profile`]'s phase times to it (a dozen
    /// clock reads per pass). Without, it reads no clock: in a run the executor times the
    /// stage call, and nothing would read the phases.
    fn run(&self, feats: &[Tensor], mut times: Option<&mut [f64; 4]>) -> Result<Vec<Tensor>> {
        if feats.len() != self.reduce.len() {
            candle_core::bail!(
                "CSP-PAN built for {} levels, got {}",
                self.reduce.len(),
                feats.len()
            )
        }
        let profiling = times.is_some();
        let start = || profiling.then(Instant::now);
        let mut add = |phase: usize, t: Option<Instant>| {
            if let (Some(times), Some(t)) = (times.as_deref_mut(), t) {
                times[phase] += t.elapsed().as_secs_f64() * 1e3;
            }
        };
        let t = start();
        let inputs = feats
            .iter()
            .zip(&self.reduce)
            .map(|(f, c)| c.forward(f))
            .collect::<Result<Vec<_>>>()?;
        add(0, t);
        let n = inputs.len();
        // Top-down: inner[i] fuses level i with the upsampled inner[i + 1].
        let t = start();
        let mut inner = vec![inputs[n - 1].clone()];
        for idx in (1..n).rev() {
            let tg = start();
            let cat = upsample_concat(&inner[0], &inputs[idx - 1])?;
            add(3, tg);
            inner.insert(0, self.top_down[n - 1 - idx].forward(&cat)?);
        }
        add(1, t);
        // Bottom-up.
        let t = start();
        let mut outs = vec![inner[0].clone()];
        for idx in 0..n - 1 {
            let down = self.downsample[idx].forward(&outs[idx])?;
            let tg = start();
            let cat = Tensor::cat(&[&down, &inner[idx + 1]], 1)?;
            add(3, tg);
            outs.push(self.bottom_up[idx].forward(&cat)?);
        }
        if let Some((first, second)) = &self.extra {
            let top = (first.forward(&inputs[n - 1])? + second.forward(&outs[n - 1])?)?;
            outs.push(top);
        }
        add(2, t);
        Ok(outs)
    }
}
