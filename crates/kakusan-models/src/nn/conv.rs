//! A 2-D convolution loaded from diffusers weights (`weight` [out, in, k, k] and `bias`).

use candle_core::Result;
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

/// Builds a square-kernel convolution with bias, as `torch.nn.Conv2d(in, out, kernel,
/// stride, padding)`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding,
        stride,
        ..Default::default()
    };
    candle_nn::conv2d(in_channels, out_channels, kernel, config, vb)
}
