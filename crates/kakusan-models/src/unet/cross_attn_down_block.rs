//! diffusers' `CrossAttnDownBlock2D`: residual blocks each followed by a spatial
//! transformer attending to the text context, then an optional down-sampler. Every output
//! on the way is kept as a skip connection for the up path.

use super::layout::{CrossAttentionSettings, DownBlockLayout, ResnetSettings};
use crate::nn::{Downsample2D, ResnetBlock2D, Transformer2DModel};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}`, `attentions.{j}` and `downsamplers.0`.
#[derive(Debug, Clone)]
pub struct CrossAttnDownBlock2D {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
}

impl CrossAttnDownBlock2D {
    /// Loads the block described by `layout`, with transformers per `attention`.
    pub fn new(
        layout: &DownBlockLayout,
        attention: &CrossAttentionSettings,
        resnet: &ResnetSettings,
        downsample_padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = layout.out_channels;
        let mut resnets = Vec::with_capacity(layout.resnets);
        let mut attentions = Vec::with_capacity(layout.resnets);
        for j in 0..layout.resnets {
            let cin = if j == 0 { layout.in_channels } else { c };
            resnets.push(ResnetBlock2D::new(
                &resnet.block(cin, c),
                vb.pp(format!("resnets.{j}")),
            )?);
            attentions.push(Transformer2DModel::new(
                &attention.transformer(c),
                vb.pp(format!("attentions.{j}")),
            )?);
        }
        let downsampler = if layout.downsample {
            Some(Downsample2D::new(
                c,
                c,
                downsample_padding,
                vb.pp("downsamplers.0"),
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Returns the block output and the skip connections it produced, in order.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut h = x.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (resnet, attn) in self.resnets.iter().zip(&self.attentions) {
            h = resnet.forward(&h, Some(temb))?;
            h = attn.forward(&h, context)?;
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            h = down.forward(&h)?;
            skips.push(h.clone());
        }
        Ok((h, skips))
    }
}
