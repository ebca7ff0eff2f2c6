//! diffusers' `TimestepEmbedding`: `linear_1` -> activation -> `linear_2`, turning the
//! sinusoidal timestep features into the vector every residual block receives.

use super::linear::{linear, Linear};
use super::Activation;
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// `linear_1` (in -> dim), activation, `linear_2` (dim -> dim).
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl TimestepEmbedding {
    /// Loads `linear_1` and `linear_2`.
    pub fn new(in_dim: usize, dim: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_dim, dim, vb.pp("linear_1"))?,
            linear_2: linear(dim, dim, vb.pp("linear_2"))?,
            act,
        })
    }

    /// `[B, in_dim]` -> `[B, dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.linear_1.forward(x)?;
        self.linear_2.forward(&self.act.apply(&h)?)
    }
}
