//! Custom kernels where candle's generic ones are slow for our models.

pub mod depthwise;
