//! diffusers' `UpDecoderBlock2D`: residual blocks without timestep conditioning, then an
//! optional nearest-x2 up-sampler with a convolution.

use crate::nn::{ResnetBlock2D, ResnetConfig, Upsample2D};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `resnets.{j}` and `upsamplers.0`.
#[derive(Debug, Clone)]
pub struct UpDecoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    /// Loads `layers` residual blocks from `resnet.in_channels` to `resnet.out_channels`.
    pub fn new(
        resnet: &ResnetConfig,
        layers: usize,
        upsample: bool,
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
        let upsampler = if upsample {
            Some(Upsample2D::new(cout, cout, vb.pp("upsamplers.0"))?)
        } else {
            None
        };
        Ok(Self { resnets, upsampler })
    }

    /// `[B, in, h, w]` -> `[B, out, 2h, 2w]` (or `[B, out, h, w]` without up-sampler).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for resnet in &self.resnets {
            h = resnet.forward(&h, None)?;
        }
        match &self.upsampler {
            Some(up) => up.forward(&h, None),
            None => Ok(h),
        }
    }
}
