//! Custom kernels where candle's generic ones are slow for our models.

pub mod dense_conv;
pub mod depthwise;
pub mod pointwise;
