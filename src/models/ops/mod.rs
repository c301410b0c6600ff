//! Custom kernels where candle's generic ones are slow for our models.

pub mod attention;
pub mod conv_transpose;
pub mod dense_conv;
pub mod depthwise;
pub mod fused;
pub mod pointwise;
pub mod resize;
pub mod skinny;
pub mod squeeze_excite;

use candle_core::{CpuStorage, Layout, Result, bail};

/// The f32 values of a custom op's CPU input, which must be contiguous (callers pass
/// `x.contiguous()`); `op` names the op in the error.
pub(crate) fn contiguous_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => bail!("{op}: input must be contiguous"),
        _ => bail!("{op}: only f32 is supported on CPU"),
    }
}

/// Largest absolute elementwise difference of two tensors (the kernels' unit tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}
