//! diffusers' `UNetMidBlock2DCrossAttn`: a residual block, then a spatial transformer
//! followed by another residual block (once), at the lowest resolution.

use super::layout::MidBlockLayout;
use crate::nn::{ResnetBlock2D, Transformer2DModel};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.0`, `attentions.0`, `resnets.1`.
#[derive(Debug, Clone)]
pub struct UNetMidBlock2DCrossAttn {
    first: ResnetBlock2D,
    layers: Vec<(Transformer2DModel, ResnetBlock2D)>,
}

/// Number of (transformer, resnet) pairs after the first resnet in diffusers' mid block.
const MID_LAYERS: usize = 1;

impl UNetMidBlock2DCrossAttn {
    /// Loads the block described by `layout`.
    pub fn new(layout: &MidBlockLayout, vb: VarBuilder) -> Result<Self> {
        let c = layout.channels;
        let resnet = layout.resnet.block(c, c);
        let first = ResnetBlock2D::new(&resnet, vb.pp("resnets.0"))?;
        let layers = (0..MID_LAYERS)
            .map(|i| {
                Ok((
                    Transformer2DModel::new(
                        &layout.cross_attention.transformer(c),
                        vb.pp(format!("attentions.{i}")),
                    )?,
                    ResnetBlock2D::new(&resnet, vb.pp(format!("resnets.{}", i + 1)))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { first, layers })
    }

    /// `[B, C, h, w]` -> `[B, C, h, w]`.
    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, Some(temb))?;
        for (attn, resnet) in &self.layers {
            h = attn.forward(&h, context)?;
            h = resnet.forward(&h, Some(temb))?;
        }
        Ok(h)
    }
}
