//! diffusers' `UpBlock2D`: residual blocks, each fed the running features concatenated
//! (on channels) with one skip connection taken from the end of the down path, then an
//! optional up-sampler to the next skip's size.

use super::layout::{ResnetSettings, UpBlockLayout};
use crate::nn::{ResnetBlock2D, Upsample2D};
use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}` and `upsamplers.0`.
#[derive(Debug, Clone)]
pub struct UpBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

/// Input channels of up-block resnet `j`: the running features plus the skip it eats.
pub(crate) fn up_resnet_channels(layout: &UpBlockLayout, j: usize) -> (usize, usize) {
    let skip = if j + 1 == layout.resnets {
        layout.in_channels
    } else {
        layout.out_channels
    };
    let running = if j == 0 {
        layout.prev_output_channels
    } else {
        layout.out_channels
    };
    (running + skip, layout.out_channels)
}

impl UpBlock2D {
    /// Loads the block described by `layout`.
    pub fn new(layout: &UpBlockLayout, resnet: &ResnetSettings, vb: VarBuilder) -> Result<Self> {
        let resnets = (0..layout.resnets)
            .map(|j| {
                let (cin, cout) = up_resnet_channels(layout, j);
                ResnetBlock2D::new(&resnet.block(cin, cout), vb.pp(format!("resnets.{j}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let upsampler = if layout.upsample {
            let c = layout.out_channels;
            Some(Upsample2D::new(c, c, vb.pp("upsamplers.0"))?)
        } else {
            None
        };
        Ok(Self { resnets, upsampler })
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
        for (resnet, skip) in self.resnets.iter().zip(skips.iter().rev()) {
            h = resnet.forward(&Tensor::cat(&[&h, skip], 1)?, Some(temb))?;
        }
        match &self.upsampler {
            Some(up) => up.forward(&h, upsample_size),
            None => Ok(h),
        }
    }
}
