//! diffusers' VAE `Encoder`: `conv_in`, `DownEncoderBlock2D`s (down-sampling all but the
//! last), the mid block, `conv_norm_out`, activation, and `conv_out` to the mean and log
//! variance of the latent (2 x `latent_channels`).

use super::down_encoder_block::DownEncoderBlock2D;
use super::error::At;
use super::mid_block::VaeMidBlock;
use super::{VaeConfig, VaeError};
use crate::nn::Conv2d;
use crate::nn::{conv2d, Activation, GroupNorm, ResnetConfig};
use candle_core::Tensor;
use candle_nn::{Module, VarBuilder};

/// Group-norm epsilon diffusers fixes for the autoencoder.
pub(crate) const VAE_NORM_EPS: f64 = 1e-6;

/// Image -> latent distribution parameters.
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<(String, DownEncoderBlock2D)>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    act: Activation,
}

impl Encoder {
    /// Loads the encoder; `vb` points at `encoder`.
    pub fn new(cfg: &VaeConfig, act: Activation, vb: VarBuilder) -> Result<Self, VaeError> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let resnet = |cin, cout| ResnetConfig {
            in_channels: cin,
            out_channels: cout,
            temb_channels: None,
            groups: cfg.norm_num_groups,
            eps: VAE_NORM_EPS,
            act,
            output_scale_factor: 1.0,
        };
        let conv_in =
            conv2d(cfg.in_channels, ch[0], 3, 1, 1, vb.pp("conv_in")).loading("encoder.conv_in")?;
        let mut down_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let place = format!("encoder.down_blocks.{i}");
            let cin = if i == 0 { ch[0] } else { ch[i - 1] };
            let block = DownEncoderBlock2D::new(
                &resnet(cin, ch[i]),
                cfg.layers_per_block,
                i + 1 < n,
                vb.pp(format!("down_blocks.{i}")),
            )
            .loading(&place)?;
            down_blocks.push((place, block));
        }
        let last = ch[n - 1];
        let mid_block = VaeMidBlock::new(
            &resnet(last, last),
            cfg.mid_block_add_attention,
            vb.pp("mid_block"),
        )
        .loading("encoder.mid_block")?;
        let conv_norm_out = GroupNorm::new(
            cfg.norm_num_groups,
            last,
            VAE_NORM_EPS,
            vb.pp("conv_norm_out"),
        )
        .loading("encoder.conv_norm_out")?;
        let conv_out = conv2d(last, 2 * cfg.latent_channels, 3, 1, 1, vb.pp("conv_out"))
            .loading("encoder.conv_out")?;
        Ok(Self {
            conv_in,
            down_blocks,
            mid_block,
            conv_norm_out,
            conv_out,
            act,
        })
    }

    /// `[B, in_channels, H, W]` -> `[B, 2 * latent_channels, H / f, W / f]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, VaeError> {
        self.latent_stage(&self.downsampling_stage(x)?)
    }

    /// `conv_in` and the down blocks: the part whose activations scale with the picture
    /// (a tiled encode runs it tile by tile). `[B, in, H, W]` -> `[B, widest, H / f, W / f]`.
    pub(crate) fn downsampling_stage(&self, x: &Tensor) -> Result<Tensor, VaeError> {
        let mut h = self.conv_in.forward(x).running("encoder.conv_in")?;
        for (place, block) in &self.down_blocks {
            h = block.forward(&h).running(place)?;
        }
        Ok(h)
    }

    /// The mid block (with the self-attention over the whole latent), the output norm and
    /// `conv_out`, at the latent's resolution.
    pub(crate) fn latent_stage(&self, h: &Tensor) -> Result<Tensor, VaeError> {
        let h = self.mid_block.forward(h).running("encoder.mid_block")?;
        let h = self
            .act
            .after_group_norm(&self.conv_norm_out, &h)
            .running("encoder.conv_norm_out")?;
        self.conv_out.forward(&h).running("encoder.conv_out")
    }
}
