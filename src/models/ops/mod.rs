//! Custom kernels where candle's generic ones are slow for our models.

pub mod conv_transpose;
pub mod dense_conv;
pub mod depthwise;
pub mod pointwise;
