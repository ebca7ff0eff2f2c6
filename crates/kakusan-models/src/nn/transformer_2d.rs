//! diffusers' `Transformer2DModel` for continuous (image) inputs: group norm, `proj_in`
//! (a 1x1 convolution, or a linear layer on the token sequence with
//! `use_linear_projection`), a stack of `transformer_blocks`, `proj_out` the same way
//! back, and the input added as a residual.

use super::linear::{linear, Linear};
use super::Conv2d;
use super::{BasicTransformerBlock, GroupNorm, TransformerBlockConfig};
use candle_core::{bail, Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// Group-norm epsilon diffusers fixes for `Transformer2DModel`.
const NORM_EPS: f64 = 1e-6;

/// Shape and options of a spatial transformer.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    /// Channels of the feature map (input and output).
    pub in_channels: usize,
    /// Attention heads; the token width is `heads * head_dim`.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Number of `transformer_blocks`.
    pub layers: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// Groups of the input group norm.
    pub norm_groups: usize,
    /// `proj_in`/`proj_out` are linear layers (SD 2.x) rather than 1x1 convolutions.
    pub use_linear_projection: bool,
    /// `attn1` attends to the context too.
    pub only_cross_attention: bool,
    /// Scores and softmax in f32 for half-precision runs.
    pub upcast_attention: bool,
}

/// A projection between the feature map and the token stream.
#[derive(Debug, Clone)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// Spatial transformer over a `[B, C, H, W]` feature map.
#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DModel {
    /// Loads `norm`, `proj_in`, `transformer_blocks.{i}`, `proj_out`.
    pub fn new(cfg: &Transformer2DConfig, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.heads * cfg.head_dim;
        if inner == 0 {
            bail!("transformer at {:?} has no attention heads", vb.prefix());
        }
        let proj = |i, o, name: &str| -> Result<Projection> {
            Ok(if cfg.use_linear_projection {
                Projection::Linear(linear(i, o, vb.pp(name))?)
            } else {
                Projection::Conv(super::conv2d(i, o, 1, 1, 0, vb.pp(name))?)
            })
        };
        let block_cfg = TransformerBlockConfig {
            dim: inner,
            heads: cfg.heads,
            head_dim: cfg.head_dim,
            context_dim: cfg.context_dim,
            only_cross_attention: cfg.only_cross_attention,
            upcast_attention: cfg.upcast_attention,
        };
        let blocks_vb = vb.pp("transformer_blocks");
        let blocks = (0..cfg.layers)
            .map(|i| BasicTransformerBlock::new(&block_cfg, blocks_vb.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: GroupNorm::new(cfg.norm_groups, cfg.in_channels, NORM_EPS, vb.pp("norm"))?,
            proj_in: proj(cfg.in_channels, inner, "proj_in")?,
            blocks,
            proj_out: proj(inner, cfg.in_channels, "proj_out")?,
        })
    }

    /// `x`: `[B, C, H, W]`, `context`: `[B, Lc, context_dim]`; returns `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let normed = self.norm.forward(x)?;
        let to_tokens = |t: &Tensor| -> Result<Tensor> {
            let c = t.dim(1)?;
            t.permute((0, 2, 3, 1))?.reshape((b, h * w, c))
        };
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?)?,
            Projection::Linear(lin) => lin.forward(&to_tokens(&normed)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let to_map = |t: &Tensor| -> Result<Tensor> {
            let c = t.dim(2)?;
            t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
        };
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_map(&tokens)?)?,
            Projection::Linear(lin) => to_map(&lin.forward(&tokens)?)?,
        };
        out + x
    }
}
