//! diffusers' `Downsample2D` with a convolution: a 3x3 stride-2 `conv`. With `padding` 0
//! (the VAE encoder) the input is first padded by one zero row and column at the bottom and
//! right only, as diffusers does, so odd sizes round the way the checkpoints expect.

use super::conv2d;
use super::Conv2d;
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// Halves the spatial size with a strided convolution.
#[derive(Debug, Clone)]
pub struct Downsample2D {
    conv: Conv2d,
    asymmetric_pad: bool,
}

impl Downsample2D {
    /// Loads `conv`; `padding` is the config's `downsample_padding` (1 in UNets, 0 in VAEs).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv2d(in_channels, out_channels, 3, 2, padding, vb.pp("conv"))?,
            asymmetric_pad: padding == 0,
        })
    }

    /// `[B, C, H, W]` -> `[B, C', ceil-ish(H/2), ...]` per the convolution arithmetic.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.asymmetric_pad {
            let padded = x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&padded)
        } else {
            self.conv.forward(x)
        }
    }
}
