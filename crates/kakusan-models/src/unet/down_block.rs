//! diffusers' `DownBlock2D`: residual blocks, then an optional strided-conv down-sampler.
//! Every output on the way is kept as a skip connection for the up path.

use super::layout::{DownBlockLayout, ResnetSettings};
use crate::nn::{Downsample2D, ResnetBlock2D};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}` and `downsamplers.0`.
#[derive(Debug, Clone)]
pub struct DownBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock2D {
    /// Loads the block described by `layout`.
    pub fn new(
        layout: &DownBlockLayout,
        resnet: &ResnetSettings,
        downsample_padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let resnets = (0..layout.resnets)
            .map(|j| {
                let cin = if j == 0 {
                    layout.in_channels
                } else {
                    layout.out_channels
                };
                ResnetBlock2D::new(
                    &resnet.block(cin, layout.out_channels),
                    vb.pp(format!("resnets.{j}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let downsampler = if layout.downsample {
            let c = layout.out_channels;
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
            downsampler,
        })
    }

    /// Returns the block output and the skip connections it produced, in order.
    pub fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut h = x.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for resnet in &self.resnets {
            h = resnet.forward(&h, Some(temb))?;
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            h = down.forward(&h)?;
            skips.push(h.clone());
        }
        Ok((h, skips))
    }
}
