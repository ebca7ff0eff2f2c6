//! Training the KL autoencoder: L1 reconstruction of the picture plus a small KL term that
//! keeps the latent distribution close to N(0, 1) (the LDM objective without its
//! perceptual and adversarial terms, which a procedural data set of flat shapes does not
//! need).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
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
    /// Seed of the posterior-sampling noise (the data has its own seed).
    pub seed: u64,
}

impl Default for VaeTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            kl_weight: 1e-4,
            seed: 0,
        }
    }
}

pub struct VaeTask {
    pub vae: AutoencoderKL,
    pub varmap: VarMap,
    vars: NamedVars,
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
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let vae = AutoencoderKL::new(vb, vae_config)
            .map_err(|e| TrainError::Config(format!("vae config: {e}")))?;
        let vars = NamedVars::from_varmap(&varmap);
        crate::init::initialise(&vars)?;
        Ok(Self {
            vae,
            varmap,
            vars,
            config,
            data,
            device: device.clone(),
        })
    }

    /// Reconstruction and KL terms of one batch of pictures (`[B, 3, H, W]` in [-1, 1]).
    pub fn losses(&self, x: &Tensor, noise_seed: u64) -> Result<(Tensor, Tensor)> {
        let err = |e: kakusan_models::vae::VaeError| TrainError::Config(e.to_string());
        let posterior = self.vae.encode(x).map_err(err)?;
        let shape = posterior.mean.dims().to_vec();
        let mut gen = TorchCpuGenerator::new(noise_seed);
        let eps = Tensor::from_vec(gen.randn(&shape), shape.as_slice(), &self.device)?;
        let z = posterior.sample_with(&eps).map_err(err)?;
        let recon = self.vae.decode(&z).map_err(err)?;
        let rec = (recon - x)?.abs()?.mean_all()?;
        let kl = ((posterior.mean.sqr()? + posterior.logvar.exp()?)? - 1.0)?;
        let kl = ((kl - &posterior.logvar)? * 0.5)?.mean_all()?;
        Ok((rec, kl))
    }
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
        let (rec, kl) = self.losses(&x, self.config.seed.wrapping_add(step))?;
        Ok((rec + (kl * self.config.kl_weight)?)?)
    }
}
