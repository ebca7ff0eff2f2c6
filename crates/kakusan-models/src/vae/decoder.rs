//! diffusers' VAE `Decoder`: `conv_in` from the latent, the mid block, `UpDecoderBlock2D`s
//! (widest first, `layers_per_block + 1` resnets each, up-sampling all but the last),
//! `conv_norm_out`, activation, and `conv_out` to image channels.

use super::encoder::VAE_NORM_EPS;
use super::error::At;
use super::mid_block::VaeMidBlock;
use super::up_decoder_block::UpDecoderBlock2D;
use super::{VaeConfig, VaeError};
use crate::nn::Conv2d;
use crate::nn::{conv2d, Activation, GroupNorm, ResnetConfig};
use candle_core::Tensor;
use candle_nn::{Module, VarBuilder};

/// Latent -> image.
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<(String, UpDecoderBlock2D)>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    act: Activation,
}

impl Decoder {
    /// Loads the decoder; `vb` points at `decoder`.
    pub fn new(cfg: &VaeConfig, act: Activation, vb: VarBuilder) -> Result<Self, VaeError> {
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let n = reversed.len();
        let resnet = |cin, cout| ResnetConfig {
            in_channels: cin,
            out_channels: cout,
            temb_channels: None,
            groups: cfg.norm_num_groups,
            eps: VAE_NORM_EPS,
            act,
            output_scale_factor: 1.0,
        };
        let widest = reversed[0];
        let conv_in = conv2d(cfg.latent_channels, widest, 3, 1, 1, vb.pp("conv_in"))
            .loading("decoder.conv_in")?;
        let mid_block = VaeMidBlock::new(
            &resnet(widest, widest),
            cfg.mid_block_add_attention,
            vb.pp("mid_block"),
        )
        .loading("decoder.mid_block")?;
        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let place = format!("decoder.up_blocks.{i}");
            let cin = if i == 0 { widest } else { reversed[i - 1] };
            let block = UpDecoderBlock2D::new(
                &resnet(cin, reversed[i]),
                cfg.layers_per_block + 1,
                i + 1 < n,
                vb.pp(format!("up_blocks.{i}")),
            )
            .loading(&place)?;
            up_blocks.push((place, block));
        }
        let narrowest = reversed[n - 1];
        let conv_norm_out = GroupNorm::new(
            cfg.norm_num_groups,
            narrowest,
            VAE_NORM_EPS,
            vb.pp("conv_norm_out"),
        )
        .loading("decoder.conv_norm_out")?;
        let conv_out = conv2d(narrowest, cfg.out_channels, 3, 1, 1, vb.pp("conv_out"))
            .loading("decoder.conv_out")?;
        Ok(Self {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            act,
        })
    }

    /// `[B, latent_channels, h, w]` -> `[B, out_channels, h * f, w * f]`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor, VaeError> {
        self.upsampling_stage(&self.latent_stage(z)?)
    }

    /// `conv_in` and the mid block (with the self-attention over the whole latent), at the
    /// latent's resolution.
    pub(crate) fn latent_stage(&self, z: &Tensor) -> Result<Tensor, VaeError> {
        let h = self.conv_in.forward(z).running("decoder.conv_in")?;
        self.mid_block.forward(&h).running("decoder.mid_block")
    }

    /// The up blocks, the output norm and `conv_out`: the part whose activations scale with
    /// the picture (a tiled decode runs it tile by tile).
    pub(crate) fn upsampling_stage(&self, h: &Tensor) -> Result<Tensor, VaeError> {
        let mut h = h.clone();
        for (place, block) in &self.up_blocks {
            h = block.forward(&h).running(place)?;
        }
        let h = self
            .act
            .after_group_norm(&self.conv_norm_out, &h)
            .running("decoder.conv_norm_out")?;
        self.conv_out.forward(&h).running("decoder.conv_out")
    }
}
