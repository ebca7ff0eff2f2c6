//! Training the text encoder and the UNet together with the standard noise-prediction
//! objective (DDPM / LDM): encode the picture with the frozen VAE, draw a timestep and
//! noise, and regress the noise the UNet sees in `sqrt(ac) z + sqrt(1 - ac) eps`.
//! A share of captions is replaced by the empty prompt so the model also learns the
//! unconditional prediction that classifier-free guidance needs.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kakusan_core::rng::TorchCpuGenerator;
use kakusan_models::clip::{ClipTextConfig, ClipTextModel, Tokenizer};
use kakusan_models::unet::{UNet2DConditionModel, UNetConfig};
use kakusan_models::vae::AutoencoderKL;
use serde::{Deserialize, Serialize};

use super::captioned_images::{batch_for_step, CaptionedImages};
use crate::error::{Result, TrainError};
use crate::named_vars::NamedVars;
use crate::trainer::TrainTask;

/// Settings of the diffusion objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffusionTaskConfig {
    pub batch_size: usize,
    /// Probability that a caption is replaced by "" (classifier-free guidance).
    pub caption_dropout: f64,
    /// Seed of timesteps, noise and caption dropout (the data has its own seed).
    pub seed: u64,
}

impl Default for DiffusionTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            caption_dropout: 0.1,
            seed: 0,
        }
    }
}

pub struct DiffusionTask {
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    scaling_factor: f64,
    tokenizer: Tokenizer,
    alphas_cumprod: Vec<f64>,
    vars: NamedVars,
    config: DiffusionTaskConfig,
    data: Box<dyn CaptionedImages>,
    device: Device,
}

/// Prefix of the text encoder's variables in checkpoints.
pub const TEXT_PREFIX: &str = "text_encoder.";
/// Prefix of the UNet's variables in checkpoints.
pub const UNET_PREFIX: &str = "unet.";

impl DiffusionTask {
    /// Fresh text encoder and UNet over a trained, frozen `vae`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        text_config: &ClipTextConfig,
        unet_config: &UNetConfig,
        vae: AutoencoderKL,
        tokenizer: Tokenizer,
        alphas_cumprod: Vec<f64>,
        config: DiffusionTaskConfig,
        data: Box<dyn CaptionedImages>,
        device: &Device,
    ) -> Result<Self> {
        let text_varmap = VarMap::new();
        let unet_varmap = VarMap::new();
        let text_encoder = ClipTextModel::new(
            VarBuilder::from_varmap(&text_varmap, DType::F32, device),
            text_config,
        )
        .map_err(|e| TrainError::Config(format!("text encoder config: {e}")))?;
        let unet = UNet2DConditionModel::new(
            VarBuilder::from_varmap(&unet_varmap, DType::F32, device),
            unet_config,
        )
        .map_err(|e| TrainError::Config(format!("unet config: {e}")))?;
        let vars = NamedVars::prefixed(&[(TEXT_PREFIX, &text_varmap), (UNET_PREFIX, &unet_varmap)]);
        crate::init::initialise(&vars)?;
        let scaling_factor = vae.config().scaling_factor;
        Ok(Self {
            text_encoder,
            unet,
            vae,
            scaling_factor,
            tokenizer,
            alphas_cumprod,
            vars,
            config,
            data,
            device: device.clone(),
        })
    }

    /// Text embeddings `[B, 77, D]` of `captions`.
    pub fn encode_text(&self, captions: &[String]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(captions.len() * 77);
        for c in captions {
            ids.extend(self.tokenizer.encode_padded(c, 77));
        }
        let ids = Tensor::from_vec(ids, (captions.len(), 77), &self.device)?;
        self.text_encoder
            .forward(&ids, 1)
            .map_err(|e| TrainError::Config(format!("text encoder: {e}")))
    }
}

/// A uniform number in [0, 1) from the generator's 24-bit stream.
fn uniform(gen: &mut TorchCpuGenerator) -> f64 {
    (gen.next_u32() >> 8) as f64 / (1u32 << 24) as f64
}

impl TrainTask for DiffusionTask {
    fn vars(&self) -> &NamedVars {
        &self.vars
    }

    fn loss(&mut self, step: u64) -> Result<Tensor> {
        let b = self.config.batch_size;
        let batch = batch_for_step(self.data.as_ref(), step, b);
        let mut gen = TorchCpuGenerator::new(self.config.seed.wrapping_add(step));
        let (images, captions): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let captions: Vec<String> = captions
            .into_iter()
            .map(|c| {
                if uniform(&mut gen) < self.config.caption_dropout {
                    String::new()
                } else {
                    c
                }
            })
            .collect();
        let x = kakusan_core::image_io::images_to_tensor(&images)
            .map_err(|e| TrainError::Config(e.to_string()))?
            .to_device(&self.device)?;
        let vae_err = |e: kakusan_models::vae::VaeError| TrainError::Config(e.to_string());
        let posterior = self.vae.encode(&x).map_err(vae_err)?;
        let shape = posterior.mean.dims().to_vec();
        let post_eps = Tensor::from_vec(gen.randn(&shape), shape.as_slice(), &self.device)?;
        let z =
            (posterior.sample_with(&post_eps).map_err(vae_err)? * self.scaling_factor)?.detach();
        let n = self.alphas_cumprod.len();
        let t: Vec<usize> = (0..b)
            .map(|_| ((uniform(&mut gen) * n as f64) as usize).min(n - 1))
            .collect();
        let per = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = t
                .iter()
                .map(|&i| f(self.alphas_cumprod[i]) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (b, 1, 1, 1), &self.device)?)
        };
        let a = per(&|ac| ac.sqrt())?;
        let s = per(&|ac| (1.0 - ac).sqrt())?;
        let eps = Tensor::from_vec(gen.randn(&shape), shape.as_slice(), &self.device)?;
        let noisy = (z.broadcast_mul(&a)? + eps.broadcast_mul(&s)?)?;
        let timesteps = Tensor::from_vec(
            t.iter().map(|&i| i as f32).collect::<Vec<f32>>(),
            b,
            &self.device,
        )?;
        let context = self.encode_text(&captions)?;
        let pred = self
            .unet
            .forward(&noisy, &timesteps, &context)
            .map_err(|e| TrainError::Config(format!("unet: {e}")))?;
        Ok((pred - eps)?.sqr()?.mean_all()?)
    }
}
