//! The VAE mid-block self-attention (diffusers' `Attention` as built by `UNetMidBlock2D`
//! for the autoencoder): `group_norm` over the feature map, one head as wide as the
//! channels, biased `to_q`/`to_k`/`to_v`/`to_out.0` projections over the pixels as tokens,
//! and the input added back. Folders saved by diffusers before 0.14 name the projections
//! `query`/`key`/`value`/`proj_attn`; those are accepted too.

use crate::nn::{Attention, AttentionConfig, AttentionWeightNames, GroupNorm};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Single-head spatial self-attention with a residual connection.
#[derive(Debug, Clone)]
pub struct VaeAttentionBlock {
    group_norm: GroupNorm,
    attention: Attention,
}

impl VaeAttentionBlock {
    /// Loads `group_norm` and the four projections.
    pub fn new(channels: usize, groups: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let names = if !vb.contains_tensor("to_q.weight") && vb.contains_tensor("query.weight") {
            AttentionWeightNames::LEGACY
        } else {
            AttentionWeightNames::DIFFUSERS
        };
        let cfg = AttentionConfig {
            query_dim: channels,
            context_dim: None,
            heads: 1,
            head_dim: channels,
            qkv_bias: true,
            out_bias: true,
            upcast: true,
        };
        Ok(Self {
            group_norm: GroupNorm::new(groups, channels, eps, vb.pp("group_norm"))?,
            attention: Attention::with_names(&cfg, vb, &names)?,
        })
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let tokens = self
            .group_norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?;
        let out = self.attention.forward(&tokens, None)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + x
    }
}
