//! diffusers' `DownEncoderBlock2D`: residual blocks without timestep conditioning, then an
//! optional down-sampler (3x3 stride-2 convolution after asymmetric zero padding).

use crate::nn::{Downsample2D, ResnetBlock2D, ResnetConfig};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}` and `downsamplers.0`.
#[derive(Debug, Clone)]
pub struct DownEncoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    /// Loads `layers` residual blocks from `resnet.in_channels` to `resnet.out_channels`.
    pub fn new(
        resnet: &ResnetConfig,
        layers: usize,
        downsample: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cout = resnet.out_channels;
        let resnets = (0..layers)
            .map(|j| {
                let cfg = ResnetConfig {
                    in_channels: if j == 0 { resnet.in_channels } else { cout },
                    ..*resnet
                };
                ResnetBlock2D::new(&cfg, vb.pp(format!("resnets.{j}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let downsampler = if downsample {
            Some(Downsample2D::new(cout, cout, 0, vb.pp("downsamplers.0"))?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            downsampler,
        })
    }

    /// `[B, in, H, W]` -> `[B, out, H', W']`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for resnet in &self.resnets {
            h = resnet.forward(&h, None)?;
        }
        match &self.downsampler {
            Some(down) => down.forward(&h),
            None => Ok(h),
        }
    }
}
