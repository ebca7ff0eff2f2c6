//! diffusers' `BasicTransformerBlock` as Stable Diffusion uses it (layer norms, no
//! adaptive norms): self-attention `attn1` after `norm1`, cross-attention `attn2` to the
//! text context after `norm2`, GEGLU feed-forward `ff` after `norm3`, each added back to
//! the residual stream.

use super::{Attention, AttentionConfig, FeedForward, LayerNorm};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Shape and options of one transformer block.
#[derive(Debug, Clone, Copy)]
pub struct TransformerBlockConfig {
    /// Width of the token stream (`heads * head_dim`).
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// `attn1` attends to the context too (diffusers' `only_cross_attention`).
    pub only_cross_attention: bool,
    /// Scores and softmax in f32 for half-precision runs.
    pub upcast_attention: bool,
}

/// Layer-norm epsilon of diffusers' transformer blocks.
const NORM_EPS: f64 = 1e-5;
/// Feed-forward inner width is this times `dim`.
const FF_MULT: usize = 4;

/// Self-attention, cross-attention and feed-forward with pre-norms and residuals.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
    only_cross_attention: bool,
}

impl BasicTransformerBlock {
    /// Loads `norm1..3`, `attn1`, `attn2`, `ff`.
    pub fn new(cfg: &TransformerBlockConfig, vb: VarBuilder) -> Result<Self> {
        let attn = |context_dim| AttentionConfig {
            query_dim: cfg.dim,
            context_dim,
            heads: cfg.heads,
            head_dim: cfg.head_dim,
            qkv_bias: false,
            out_bias: true,
            upcast: cfg.upcast_attention,
        };
        let attn1_context = cfg.only_cross_attention.then_some(cfg.context_dim);
        Ok(Self {
            norm1: LayerNorm::new(cfg.dim, NORM_EPS, vb.pp("norm1"))?,
            attn1: Attention::new(&attn(attn1_context), vb.pp("attn1"))?,
            norm2: LayerNorm::new(cfg.dim, NORM_EPS, vb.pp("norm2"))?,
            attn2: Attention::new(&attn(Some(cfg.context_dim)), vb.pp("attn2"))?,
            norm3: LayerNorm::new(cfg.dim, NORM_EPS, vb.pp("norm3"))?,
            ff: FeedForward::new(cfg.dim, FF_MULT, vb.pp("ff"))?,
            only_cross_attention: cfg.only_cross_attention,
        })
    }

    /// `x`: `[B, L, dim]`, `context`: `[B, Lc, context_dim]`.
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let self_context = self.only_cross_attention.then_some(context);
        let x = (self.attn1.forward(&self.norm1.forward(x)?, self_context)? + x)?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}
