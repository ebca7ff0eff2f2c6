//! Training the KL autoencoder: L1 reconstruction of the picture plus a small KL term that
//! keeps the latent distribution close to N(0, 1) (the LDM objective without its
//! perceptual and adversarial terms, which a procedural data set of flat shapes does not
//! need).

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use kakusan_core::rng::TorchCpuGenerator;
use kakusan_models::vae::{AutoencoderKL, VaeConfig};
use serde::{Deserialize, Serialize};

use super::captioned_images::{batch_for_step, CaptionedImages};
use crate::error::{Result, TrainError};
use crate::named_vars::NamedVars;
use crate::trainer::TrainTask;

/// Settings of the VAE objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeTaskConfig {
    pub batch_size: usize,
    /// Weight of the KL term (mean over latent elements) against the mean L1 error.
    pub kl_weight: f64,
    /// Weight of object pixels (those that differ from the picture's background, its median
    /// colour) in the L1 term, against 1 for background pixels. Small objects on flat
    /// backgrounds are a few percent of the pixels; without this the autoencoder learns the
    /// background first and draws objects faint and washed towards it.
    pub object_weight: f64,
    /// Seed of the posterior-sampling noise (the data has its own seed).
    pub seed: u64,
    /// Train only the decoder (and `post_quant_conv`), the encoder frozen as it was loaded
    /// with `--init`: the latent space stays exactly the same, so a UNet already trained on
    /// it keeps working while the decoder draws sharper pictures (as Stability's ft-MSE
    /// decoder was fine-tuned for SD). The KL term is then constant and left out.
    pub decoder_only: bool,
}

impl Default for VaeTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            kl_weight: 1e-4,
            object_weight: 1.0,
            seed: 0,
            decoder_only: false,
        }
    }
}

pub struct VaeTask {
    pub vae: AutoencoderKL,
    /// The variables the optimiser updates.
    vars: NamedVars,
    /// Every variable of the model (the trained ones and, with `decoder_only`, the frozen
    /// encoder), for exporting a complete VAE.
    all_vars: NamedVars,
    config: VaeTaskConfig,
    data: Box<dyn CaptionedImages>,
    device: Device,
}

impl VaeTask {
    /// A freshly initialised VAE of `vae_config`.
    pub fn new(
        vae_config: &VaeConfig,
        config: VaeTaskConfig,
        data: Box<dyn CaptionedImages>,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        // Fresh variables from the task's seed (`seeded_init.rs`): reproducible runs.
        let vb = crate::seeded_init::seeded_var_builder(&varmap, config.seed, device);
        let vae = AutoencoderKL::new(vb, vae_config)
            .map_err(|e| TrainError::Config(format!("vae config: {e}")))?;
        let all_vars = NamedVars::from_varmap(&varmap);
        crate::init::initialise(&all_vars, config.seed)?;
        let vars = if config.decoder_only {
            all_vars.filtered(is_decoder_var)
        } else {
            all_vars.clone()
        };
        Ok(Self {
            vae,
            vars,
            all_vars,
            config,
            data,
            device: device.clone(),
        })
    }

    /// Every variable of the model, trained or frozen.
    pub fn all_vars(&self) -> &NamedVars {
        &self.all_vars
    }

    /// Reconstruction and KL terms of one batch of pictures (`[B, 3, H, W]` in [-1, 1]),
    /// the L1 term weighted per pixel by `weights` (`[B, 1, H, W]`) when given.
    pub fn losses(
        &self,
        x: &Tensor,
        weights: Option<&Tensor>,
        noise_seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let err = |e: kakusan_models::vae::VaeError| TrainError::Config(e.to_string());
        let posterior = self.vae.encode(x).map_err(err)?;
        let shape = posterior.mean.dims().to_vec();
        let mut gen = TorchCpuGenerator::new(noise_seed);
        let eps = Tensor::from_vec(gen.randn(&shape), shape.as_slice(), &self.device)?;
        let z = posterior.sample_with(&eps).map_err(err)?;
        // A frozen encoder needs no backward pass.
        let z = if self.config.decoder_only {
            z.detach()
        } else {
            z
        };
        let recon = self.vae.decode(&z).map_err(err)?;
        let abs = (recon - x)?.abs()?;
        let rec = match weights {
            None => abs.mean_all()?,
            Some(w) => {
                let total = (w.sum_all()? * x.dim(1)? as f64)?;
                abs.broadcast_mul(w)?.sum_all()?.div(&total)?
            }
        };
        let kl = ((posterior.mean.sqr()? + posterior.logvar.exp()?)? - 1.0)?;
        let kl = ((kl - &posterior.logvar)? * 0.5)?.mean_all()?;
        Ok((rec, kl))
    }
}

/// Whether the variable `name` belongs to the decoder side of the autoencoder.
pub fn is_decoder_var(name: &str) -> bool {
    name.starts_with("decoder.") || name.starts_with("post_quant_conv.")
}

/// Per-pixel weights `[B, 1, H, W]`: `object_weight` on [`object_pixels`], 1 elsewhere.
pub fn object_weights(images: &[image::RgbImage], object_weight: f64) -> Vec<f32> {
    images
        .iter()
        .flat_map(object_pixels)
        .map(|object| if object { object_weight as f32 } else { 1.0 })
        .collect()
}

/// Which pixels of `img` (row-major) belong to an object: those that differ from the
/// picture's background (the per-channel median) by more than 24 levels in some channel.
pub fn object_pixels(img: &image::RgbImage) -> Vec<bool> {
    let mut bg = [0u8; 3];
    for (c, b) in bg.iter_mut().enumerate() {
        let mut v: Vec<u8> = img.pixels().map(|p| p.0[c]).collect();
        let mid = v.len() / 2;
        *b = *v.select_nth_unstable(mid).1;
    }
    img.pixels()
        .map(|p| (0..3).any(|c| p.0[c].abs_diff(bg[c]) > 24))
        .collect()
}

impl TrainTask for VaeTask {
    fn vars(&self) -> &NamedVars {
        &self.vars
    }

    fn loss(&mut self, step: u64) -> Result<Tensor> {
        let batch = batch_for_step(self.data.as_ref(), step, self.config.batch_size);
        let images: Vec<_> = batch.into_iter().map(|(img, _)| img).collect();
        let x = kakusan_core::image_io::images_to_tensor(&images)
            .map_err(|e| TrainError::Config(e.to_string()))?
            .to_device(&self.device)?;
        let weights = if self.config.object_weight != 1.0 {
            let (width, height) = images.first().map(|i| i.dimensions()).unwrap_or((0, 0));
            let values = object_weights(&images, self.config.object_weight);
            Some(Tensor::from_vec(
                values,
                (images.len(), 1, height as usize, width as usize),
                &self.device,
            )?)
        } else {
            None
        };
        let (rec, kl) = self.losses(&x, weights.as_ref(), self.config.seed.wrapping_add(step))?;
        if self.config.decoder_only {
            return Ok(rec);
        }
        Ok((rec + (kl * self.config.kl_weight)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_only_trains_just_the_decoder() {
        let config: VaeConfig = serde_json::from_value(serde_json::json!({
            "block_out_channels": [8, 8],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 4
        }))
        .unwrap();
        let data = crate::tasks::ProceduralImages::new(&crate::tasks::ProceduralDataConfig {
            image_size: 32,
            ..Default::default()
        })
        .unwrap();
        let task_config = VaeTaskConfig {
            batch_size: 2,
            decoder_only: true,
            ..Default::default()
        };
        let mut task = VaeTask::new(&config, task_config, Box::new(data), &Device::Cpu).unwrap();
        assert!(task.vars().len() < task.all_vars().len());
        assert!(task.vars().iter().all(|(n, _)| is_decoder_var(n)));
        assert!(task
            .all_vars()
            .iter()
            .any(|(n, _)| n.starts_with("encoder.")));
        // The loss has gradients for the decoder and none reach the encoder.
        let loss = task.loss(0).unwrap();
        let grads = loss.backward().unwrap();
        let wrong: Vec<&str> = task
            .all_vars()
            .iter()
            .filter(|(name, var)| grads.get(var.as_tensor()).is_some() != is_decoder_var(name))
            .map(|(name, _)| name)
            .collect();
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn object_pixels_get_the_object_weight() {
        let mut img = image::RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 200]));
        for y in 2..4 {
            for x in 5..7 {
                img.put_pixel(x, y, image::Rgb([220, 20, 20]));
            }
        }
        // A slight tint of the background is not an object.
        img.put_pixel(0, 0, image::Rgb([5, 5, 190]));
        let w = object_weights(&[img], 10.0);
        assert_eq!(w.len(), 64);
        assert_eq!(w.iter().filter(|&&v| v == 10.0).count(), 4);
        assert_eq!(w[2 * 8 + 5], 10.0);
        assert_eq!(w[0], 1.0);
    }
}
