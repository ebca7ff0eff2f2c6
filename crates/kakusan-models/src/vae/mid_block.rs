//! diffusers' `UNetMidBlock2D` as the autoencoder uses it: a residual block, the
//! single-head self-attention (unless `mid_block_add_attention` is false), another residual
//! block; no timestep conditioning.

use super::attention_block::VaeAttentionBlock;
use crate::nn::{ResnetBlock2D, ResnetConfig};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.0`, `attentions.0`, `resnets.1`.
#[derive(Debug, Clone)]
pub struct VaeMidBlock {
    first: ResnetBlock2D,
    attention: Option<VaeAttentionBlock>,
    second: ResnetBlock2D,
}

impl VaeMidBlock {
    /// Loads the block; `resnet` describes both residual blocks (same channels in and out).
    pub fn new(resnet: &ResnetConfig, add_attention: bool, vb: VarBuilder) -> Result<Self> {
        let attention = if add_attention {
            Some(VaeAttentionBlock::new(
                resnet.out_channels,
                resnet.groups,
                resnet.eps,
                vb.pp("attentions.0"),
            )?)
        } else {
            None
        };
        Ok(Self {
            first: ResnetBlock2D::new(resnet, vb.pp("resnets.0"))?,
            attention,
            second: ResnetBlock2D::new(resnet, vb.pp("resnets.1"))?,
        })
    }

    /// `[B, C, h, w]` -> `[B, C, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, None)?;
        if let Some(attn) = &self.attention {
            h = attn.forward(&h)?;
        }
        self.second.forward(&h, None)
    }
}
