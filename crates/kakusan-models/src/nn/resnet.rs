//! diffusers' `ResnetBlock2D` (pre-norm, "default" time-embedding handling): `norm1` ->
//! act -> `conv1` (+ `time_emb_proj(act(temb))`) -> `norm2` -> act -> (dropout, a no-op at
//! inference) -> `conv2`, added to the input (through a 1x1 `conv_shortcut` when the channel
//! count changes) and divided by `output_scale_factor`.

use super::linear::{linear, Linear};
use super::Conv2d;
use super::{conv2d, Activation, GroupNorm};
use candle_core::{bail, Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// Shape and options of one residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the timestep embedding; `None` for blocks without one (the VAE).
    pub temb_channels: Option<usize>,
    /// Groups of both group norms.
    pub groups: usize,
    /// Epsilon of both group norms.
    pub eps: f64,
    /// Non-linearity.
    pub act: Activation,
    /// The sum is divided by this.
    pub output_scale_factor: f64,
}

/// A residual block with optional timestep conditioning.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    act: Activation,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Loads `norm1`, `conv1`, `time_emb_proj`, `norm2`, `conv2` and, when the channel
    /// count changes, `conv_shortcut`.
    pub fn new(cfg: &ResnetConfig, vb: VarBuilder) -> Result<Self> {
        let (cin, cout) = (cfg.in_channels, cfg.out_channels);
        let time_emb_proj = match cfg.temb_channels {
            Some(t) => Some(linear(t, cout, vb.pp("time_emb_proj"))?),
            None => None,
        };
        let conv_shortcut = if cin != cout {
            Some(conv2d(cin, cout, 1, 1, 0, vb.pp("conv_shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            norm1: GroupNorm::new(cfg.groups, cin, cfg.eps, vb.pp("norm1"))?,
            conv1: conv2d(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj,
            norm2: GroupNorm::new(cfg.groups, cout, cfg.eps, vb.pp("norm2"))?,
            conv2: conv2d(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut,
            act: cfg.act,
            output_scale_factor: cfg.output_scale_factor,
        })
    }

    /// `x`: `[B, in, H, W]`; `temb`: `[B, temb_channels]` when the block has a projection.
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let h = self.act.after_group_norm(&self.norm1, x)?;
        let mut h = self.conv1.forward(&h)?;
        if let Some(proj) = &self.time_emb_proj {
            let Some(temb) = temb else {
                bail!("this residual block has a time_emb_proj but no timestep embedding was given")
            };
            let t = proj
                .forward(&self.act.apply(temb)?)?
                .unsqueeze(2)?
                .unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.act.after_group_norm(&self.norm2, &h)?;
        let h = self.conv2.forward(&h)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        let out = (shortcut + h)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out / self.output_scale_factor
        }
    }
}
