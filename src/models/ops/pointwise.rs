//! A fused per-channel epilogue: `y = post_scale * act(scale[c] * x + shift[c]) + post_shift`,
//! in one pass over an NCHW tensor.
//!
//! Why: in deploy-form PP-LCNet a convolution is followed by a bias add, a learnable affine
//! block, hard-swish (three elementwise ops in candle) and a second affine block: six full
//! passes over the feature map, each allocating a new tensor. They all act per channel, so
//! they compose into this single op (conv bias and batch norm fold into `scale`/`shift`, the
//! first affine block too, the second one into `post_*`). On CUDA/Metal the same maths runs as
//! candle operations.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// The activation in the middle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    /// `x * clamp(x/6 + 1/2, 0, 1)`
    HardSwish,
    /// `x * sigmoid(x)`
    Swish,
    Sigmoid,
}

impl Act {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Relu => v.max(0.0),
            Act::HardSwish => v * (v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            Act::Swish => v / (1.0 + (-v).exp()),
            Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }
}

/// `1 / (1 + exp(-x))`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// `x * sigmoid(x)` (swish / SiLU).
pub fn swish(x: &Tensor) -> Result<Tensor> {
    x.mul(&sigmoid(x)?)
}

/// `clamp(alpha * x + 0.5, 0, 1)`. Paddle uses alpha 1/6 (hard-swish, backbone SE) and 0.2
/// (the DB neck's SE): the slope differs, so it is a parameter.
pub fn hard_sigmoid(x: &Tensor, alpha: f64) -> Result<Tensor> {
    x.affine(alpha, 0.5)?.clamp(0f32, 1f32)
}

/// `x * hard_sigmoid(x, 1/6)`.
pub fn hard_swish(x: &Tensor) -> Result<Tensor> {
    x.mul(&hard_sigmoid(x, 1.0 / 6.0)?)
}

/// The fused epilogue for a tensor with `scale.len()` channels on axis 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEpilogue {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub act: Act,
    pub post_scale: f32,
    pub post_shift: f32,
}

impl ChannelEpilogue {
    /// Identity on `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Self {
            scale: vec![1.0; channels],
            shift: vec![0.0; channels],
            act: Act::Identity,
            post_scale: 1.0,
            post_shift: 0.0,
        }
    }

    /// Adds a per-channel bias before everything else.
    pub fn with_bias(mut self, bias: &[f32]) -> Self {
        for ((s, t), b) in self.scale.iter().zip(self.shift.iter_mut()).zip(bias) {
            *t += s * b;
        }
        self
    }

    /// Follows the current (pre-activation) affine map with `x * a + b` (scalars).
    pub fn then_affine(mut self, a: f32, b: f32) -> Self {
        if self.act == Act::Identity {
            for (s, t) in self.scale.iter_mut().zip(self.shift.iter_mut()) {
                *s *= a;
                *t = *t * a + b;
            }
        } else {
            self.post_scale *= a;
            self.post_shift = self.post_shift * a + b;
        }
        self
    }

    /// Follows the current pre-activation map with per-channel `x * a[c] + b[c]` (batch norm).
    pub fn then_channel_affine(mut self, a: &[f32], b: &[f32]) -> Self {
        debug_assert_eq!(self.act, Act::Identity);
        for (((s, t), a), b) in self
            .scale
            .iter_mut()
            .zip(self.shift.iter_mut())
            .zip(a)
            .zip(b)
        {
            *s *= a;
            *t = *t * a + b;
        }
        self
    }

    pub fn then_act(mut self, act: Act) -> Self {
        debug_assert_eq!(self.act, Act::Identity, "one activation per epilogue");
        self.act = act;
        self
    }

    /// Applies the epilogue in place to one channel plane (for kernels that fuse it).
    #[inline]
    pub fn apply_plane(&self, channel: usize, plane: &mut [f32]) {
        let (s, t, ps, pt, act) = (
            self.scale[channel],
            self.shift[channel],
            self.post_scale,
            self.post_shift,
            self.act,
        );
        for v in plane.iter_mut() {
            *v = act.apply(*v * s + t) * ps + pt;
        }
    }

    /// Applies the epilogue (fast path on CPU for contiguous f32).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return x.contiguous()?.apply_op1_no_bwd(self);
        }
        let c = self.scale.len();
        let dev = x.device();
        let s = Tensor::from_slice(&self.scale, (1, c, 1, 1), dev)?.to_dtype(x.dtype())?;
        let t = Tensor::from_slice(&self.shift, (1, c, 1, 1), dev)?.to_dtype(x.dtype())?;
        let y = x.broadcast_mul(&s)?.broadcast_add(&t)?;
        let y = match self.act {
            Act::Identity => y,
            Act::Relu => y.relu()?,
            Act::HardSwish => hard_swish(&y)?,
            Act::Swish => swish(&y)?,
            Act::Sigmoid => sigmoid(&y)?,
        };
        y.affine(self.post_scale as f64, self.post_shift as f64)
    }
}

impl CustomOp1 for ChannelEpilogue {
    fn name(&self) -> &'static str {
        "channel-epilogue"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        if dims.len() < 2 || dims[1] != self.scale.len() {
            bail!(
                "channel epilogue: shape {dims:?}, expected {} channels on axis 1",
                self.scale.len()
            )
        }
        let c = dims[1];
        let plane: usize = dims[2..].iter().product();
        let src = super::contiguous_f32("channel epilogue", storage, layout)?;
        let mut dst = vec![0f32; src.len()];
        let (ps, pt, act) = (self.post_scale, self.post_shift, self.act);
        dst.par_chunks_mut(plane.max(1))
            .zip(src.par_chunks(plane.max(1)))
            .enumerate()
            .for_each(|(i, (o, x))| {
                let ch = i % c;
                let (s, t) = (self.scale[ch], self.shift[ch]);
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = act.apply(v * s + t) * ps + pt;
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_matches_the_unfused_chain_on_cpu_and_generic_paths() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 3, 4, 5), &dev).expect("x");
        let bias = [0.5f32, -1.0, 2.0];
        for act in [
            Act::Identity,
            Act::Relu,
            Act::HardSwish,
            Act::Swish,
            Act::Sigmoid,
        ] {
            let e = ChannelEpilogue::identity(3)
                .with_bias(&bias)
                .then_affine(1.5, -0.25)
                .then_act(act)
                .then_affine(0.5, 0.1);
            // Reference with plain ops.
            let b = Tensor::from_slice(&bias, (1, 3, 1, 1), &dev).expect("b");
            let y = x
                .broadcast_add(&b)
                .and_then(|y| y.affine(1.5, -0.25))
                .expect("pre");
            let v: Vec<f32> = y.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
            let expected: Vec<f32> = v.iter().map(|&v| act.apply(v) * 0.5 + 0.1).collect();
            let fast: Vec<f32> = e
                .apply(&x)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("fast");
            let slow: Vec<f32> = {
                // Force the generic path through a non-f32 dtype round trip.
                let x64 = x.to_dtype(DType::F64).expect("f64");
                e.apply(&x64)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("generic")
            };
            for ((a, b), c) in fast.iter().zip(&expected).zip(&slow) {
                assert!(
                    (a - b).abs() < 1e-5 && (a - c).abs() < 1e-4,
                    "{act:?}: {a} {b} {c}"
                );
            }
        }
    }

    #[test]
    fn hard_activations_match_their_definitions() {
        let x = Tensor::new(&[-4f32, -3.0, 0.0, 1.5, 3.0, 4.0], &Device::Cpu).expect("x");
        let hs = hard_swish(&x).and_then(|t| t.to_vec1::<f32>()).expect("hs");
        let expected: Vec<f32> = [-4f32, -3.0, 0.0, 1.5, 3.0, 4.0]
            .iter()
            .map(|v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0))
            .collect();
        for (a, b) in hs.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
        let s = hard_sigmoid(&x, 0.2)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("hsig");
        assert!((s[3] - 0.8).abs() < 1e-6 && s[0] == 0.0 && s[5] == 1.0);
    }

    #[test]
    fn batch_norm_folds_per_channel() {
        let dev = Device::Cpu;
        let x = Tensor::ones((1, 2, 1, 2), DType::F32, &dev).expect("x");
        let e = ChannelEpilogue::identity(2)
            .then_channel_affine(&[2.0, 3.0], &[1.0, -1.0])
            .then_act(Act::Relu);
        let y: Vec<f32> = e
            .apply(&x)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("y");
        assert_eq!(y, vec![3.0, 3.0, 2.0, 2.0]);
    }
}
