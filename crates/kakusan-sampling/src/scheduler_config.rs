//! The fields of a diffusers `scheduler/scheduler_config.json` that decide the noise schedule
//! and timesteps. The class name varies (PNDM, DDIM, Euler, ...); these fields are what matter.

use serde::Deserialize;

use crate::denoiser::Prediction;
use crate::error::{Result, SamplingError};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub prediction_type: String,
    pub timestep_spacing: String,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
    pub rescale_betas_zero_snr: bool,
}

impl Default for SchedulerConfig {
    /// Stable Diffusion 1.x's own scheduler config.
    fn default() -> Self {
        Self {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            prediction_type: "epsilon".into(),
            timestep_spacing: "leading".into(),
            steps_offset: 1,
            set_alpha_to_one: false,
            rescale_betas_zero_snr: false,
        }
    }
}

impl SchedulerConfig {
    pub fn prediction(&self) -> Result<Prediction> {
        self.prediction_type.parse()
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.num_train_timesteps < 2 {
            return Err(SamplingError::Config(format!(
                "num_train_timesteps must be at least 2, got {}",
                self.num_train_timesteps
            )));
        }
        if self.rescale_betas_zero_snr {
            return Err(SamplingError::Config(
                "rescale_betas_zero_snr is not supported yet".into(),
            ));
        }
        Ok(())
    }
}
