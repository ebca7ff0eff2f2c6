//! Stage timings for `kakusan bench`: text encoder, one guided UNet step, VAE decode.
//!
//! On a GPU the kernels run asynchronously: each timed stage ends with a device
//! synchronisation, so a stage's time is its kernels' time and not only their launch.

use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::error::{PipelineError, Result};
use crate::guidance::GuidedUNet;
use crate::stable_diffusion::{vae_scale, StableDiffusion};

pub struct BenchReport {
    pub text_encoder_s: f64,
    pub unet_step_s: f64,
    pub vae_decode_s: f64,
}

impl StableDiffusion {
    pub fn bench(&self, width: usize, height: usize, steps: usize) -> Result<BenchReport> {
        let t = Instant::now();
        let cond = self.encode_prompt("a photograph of an astronaut riding a horse", 1)?;
        let uncond = self.encode_prompt("", 1)?;
        self.device.synchronize()?;
        let text_encoder_s = t.elapsed().as_secs_f64();
        let scale = vae_scale(&self.vae_config);
        let shape = (
            1,
            self.vae_config.latent_channels,
            height / scale,
            width / scale,
        );
        let x = Tensor::randn(0f32, 1f32, shape, &self.device)?;
        let guided = GuidedUNet {
            unet: &self.unet,
            context: Tensor::cat(&[uncond, cond], 0)?.to_dtype(self.dtype)?,
            cfg_scale: 7.0,
            dtype: self.dtype,
        };
        guided.predict(&x, 500.0)?; // warm-up
        self.device.synchronize()?;
        let t = Instant::now();
        for _ in 0..steps {
            guided.predict(&x, 500.0)?;
        }
        self.device.synchronize()?;
        let unet_step_s = t.elapsed().as_secs_f64() / steps as f64;
        let t = Instant::now();
        self.vae
            .decode(&x.to_dtype(self.dtype)?)
            .map_err(|e| PipelineError::Config(format!("vae: {e}")))?
            .to_dtype(DType::F32)?;
        self.device.synchronize()?;
        let vae_decode_s = t.elapsed().as_secs_f64();
        Ok(BenchReport {
            text_encoder_s,
            unet_step_s,
            vae_decode_s,
        })
    }
}
