//! diffusers' `CrossAttnUpBlock2D`: residual blocks, each fed the running features
//! concatenated with one skip connection from the end of the down path and followed by a
//! spatial transformer attending to the text context, then an optional up-sampler to the
//! next skip's size.

use super::layout::{CrossAttentionSettings, ResnetSettings, UpBlockLayout};
use super::up_block::up_resnet_channels;
use crate::nn::{ResnetBlock2D, Transformer2DModel, Upsample2D};
use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}`, `attentions.{j}` and `upsamplers.0`.
#[derive(Debug, Clone)]
pub struct CrossAttnUpBlock2D {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
}

impl CrossAttnUpBlock2D {
    /// Loads the block described by `layout`, with transformers per `attention`.
    pub fn new(
        layout: &UpBlockLayout,
        attention: &CrossAttentionSettings,
        resnet: &ResnetSettings,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = layout.out_channels;
        let mut resnets = Vec::with_capacity(layout.resnets);
        let mut attentions = Vec::with_capacity(layout.resnets);
        for j in 0..layout.resnets {
            let (cin, cout) = up_resnet_channels(layout, j);
            resnets.push(ResnetBlock2D::new(
                &resnet.block(cin, cout),
                vb.pp(format!("resnets.{j}")),
            )?);
            attentions.push(Transformer2DModel::new(
                &attention.transformer(c),
                vb.pp(format!("attentions.{j}")),
            )?);
        }
        let upsampler = if layout.upsample {
            Some(Upsample2D::new(c, c, vb.pp("upsamplers.0"))?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Number of skip connections this block consumes.
    pub fn skips_needed(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` are this block's skip connections in down-path order (the last is used
    /// first); `upsample_size` is the spatial size to up-sample to.
    pub fn forward(
        &self,
        x: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        if skips.len() != self.resnets.len() {
            bail!(
                "up block needs {} skip connections, got {}",
                self.resnets.len(),
                skips.len()
            );
        }
        let mut h = x.clone();
        for ((resnet, attn), skip) in self
            .resnets
            .iter()
            .zip(&self.attentions)
            .zip(skips.iter().rev())
        {
            h = resnet.forward(&Tensor::cat(&[&h, skip], 1)?, Some(temb))?;
            h = attn.forward(&h, context)?;
        }
        match &self.upsampler {
            Some(up) => up.forward(&h, upsample_size),
            None => Ok(h),
        }
    }
}
