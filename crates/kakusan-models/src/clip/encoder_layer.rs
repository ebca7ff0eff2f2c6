//! One pre-norm transformer block of the CLIP text encoder:
//! `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`.

use crate::nn::{linear, Linear};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::ClipAttention;
use super::config::{ClipActivation, ClipTextConfig};
use crate::nn::LayerNorm;

/// `self_attn`, `layer_norm1`, `mlp.fc1`, `mlp.fc2`, `layer_norm2`.
#[derive(Debug, Clone)]
pub(crate) struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: ClipActivation,
    layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    pub(crate) fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let mlp = vb.pp("mlp");
        Ok(Self {
            self_attn: ClipAttention::new(vb.pp("self_attn"), cfg)?,
            layer_norm1: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            fc1: linear(d, cfg.intermediate_size, mlp.pp("fc1"))?,
            fc2: linear(cfg.intermediate_size, d, mlp.pp("fc2"))?,
            activation: cfg.hidden_act,
            layer_norm2: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
        })
    }

    /// `x`: [batch, seq, hidden]; `mask`: the causal mask.
    pub(crate) fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let attended = self
            .self_attn
            .forward(&self.layer_norm1.forward(x)?, mask)?;
        let x = (x + attended)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&x)?)?;
        let hidden = self.fc2.forward(&self.activation.apply(&hidden)?)?;
        x + hidden
    }
}
