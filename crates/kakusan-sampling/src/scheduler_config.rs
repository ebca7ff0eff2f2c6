//! `SchedulerConfig`: a diffusers `scheduler/scheduler_config.json`, whatever its
//! `_class_name` (PNDM, DDIM, Euler, ...): the betas, prediction type and timestep options are
//! what matter.
//!
//! Absent fields stay `None`: diffusers fills them with the defaults of the scheduler class
//! the config is loaded *into* (`EulerDiscreteScheduler.from_config(pndm_config)` takes
//! Euler's defaults), and those differ between classes (Euler: `timestep_spacing`
//! "linspace"; DDIM and PNDM: "leading"; DDIM `set_alpha_to_one` true, PNDM false). The
//! `*_for` accessors resolve a field for a given [`DiffusersScheduler`].

use crate::discrete_denoiser::Prediction;
use crate::discrete_schedule::{BetaSchedule, DiscreteSchedule};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `beta_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaScheduleKind {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
}

/// `timestep_spacing`: how the inference timesteps are spread over the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// Evenly from t_max down to 0 (fractional for Euler, rounded for DDIM).
    Linspace,
    /// `arange(n) * (N // n) + steps_offset`: SD 1.5's configuration.
    Leading,
    /// `round(arange(N, 0, -N / n)) - 1`: always starts at t_max.
    Trailing,
}

/// `prediction_type` as written in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// `interpolation_type` of diffusers' Euler scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    Linear,
    LogLinear,
}

/// `final_sigmas_type` of diffusers' Euler scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    Zero,
    SigmaMin,
}

/// `timestep_type` of diffusers' Euler scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepType {
    Discrete,
    Continuous,
}

/// The diffusers scheduler classes whose behaviour the `model` schedule reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffusersScheduler {
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
    /// `DDIMScheduler`.
    Ddim,
    /// `DPMSolverMultistepScheduler` (DPM-Solver++ 2M: its timesteps, unscaled-space
    /// start).
    DpmSolverMultistep,
    /// `LCMScheduler`: timesteps picked from `original_inference_steps` evenly spaced ones.
    Lcm,
}

impl DiffusersScheduler {
    /// The Python class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::Lcm => "LCMScheduler",
        }
    }
}

/// A diffusers scheduler config. Unknown fields are ignored; `null` and absent are the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<BetaScheduleKind>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<PredictionType>,
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: Option<usize>,
    pub set_alpha_to_one: Option<bool>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub interpolation_type: Option<InterpolationType>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub final_sigmas_type: Option<FinalSigmasType>,
    pub timestep_type: Option<TimestepType>,
    pub clip_sample: Option<bool>,
    pub thresholding: Option<bool>,
    /// `LCMScheduler`'s training-time step count its timesteps are picked from.
    pub original_inference_steps: Option<usize>,
}

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            path: "<text>".into(),
            reason: e.to_string(),
        })
    }

    /// Reads a `scheduler_config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// `num_train_timesteps` (default 1000).
    pub fn num_train_timesteps(&self) -> usize {
        self.num_train_timesteps.unwrap_or(1000)
    }

    /// The beta schedule (diffusers' defaults: linear 0.0001 .. 0.02).
    pub fn betas(&self) -> BetaSchedule {
        if let Some(betas) = &self.trained_betas {
            return BetaSchedule::Trained(betas.clone());
        }
        let start = self.beta_start.unwrap_or(0.0001);
        let end = self.beta_end.unwrap_or(0.02);
        match self.beta_schedule.unwrap_or(BetaScheduleKind::Linear) {
            BetaScheduleKind::Linear => BetaSchedule::Linear { start, end },
            BetaScheduleKind::ScaledLinear => BetaSchedule::ScaledLinear { start, end },
            BetaScheduleKind::SquaredcosCapV2 => BetaSchedule::SquaredCosCapV2,
        }
    }

    /// The model's training schedule as diffusers builds it from this config.
    pub fn discrete_schedule(&self) -> Result<DiscreteSchedule> {
        DiscreteSchedule::diffusers(
            &self.betas(),
            self.num_train_timesteps(),
            self.rescale_betas_zero_snr.unwrap_or(false),
        )
    }

    /// The training table k-diffusion / A1111 would sample this model with when the
    /// checkpoint carries no `alphas_cumprod` buffer: LDM's float64 computation for the
    /// scaled-linear betas every SD 1.x/2.x uses, otherwise (other beta schedules, trained
    /// betas, zero-SNR) the same table diffusers builds.
    pub fn k_diffusion_table(&self) -> Result<DiscreteSchedule> {
        let plain = self.trained_betas.is_none() && self.rescale_betas_zero_snr != Some(true);
        match self.betas() {
            BetaSchedule::ScaledLinear { start, end } if plain => {
                DiscreteSchedule::ldm(start, end, self.num_train_timesteps())
            }
            _ => self.discrete_schedule(),
        }
    }

    /// What the network predicts (default epsilon). `sample` prediction is refused.
    pub fn prediction(&self) -> Result<Prediction> {
        match self.prediction_type.unwrap_or(PredictionType::Epsilon) {
            PredictionType::Epsilon => Ok(Prediction::Epsilon),
            PredictionType::VPrediction => Ok(Prediction::VPrediction),
            PredictionType::Sample => Err(Error::UnsupportedConfig(
                "prediction_type \"sample\" (x0-predicting models) is not supported; expected \"epsilon\" or \"v_prediction\"".into(),
            )),
        }
    }

    /// `timestep_spacing` as the given class resolves it.
    pub fn timestep_spacing_for(&self, scheduler: DiffusersScheduler) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(match scheduler {
            DiffusersScheduler::Euler | DiffusersScheduler::EulerAncestral => {
                TimestepSpacing::Linspace
            }
            DiffusersScheduler::Ddim | DiffusersScheduler::Lcm => TimestepSpacing::Leading,
            DiffusersScheduler::DpmSolverMultistep => TimestepSpacing::Linspace,
        })
    }

    /// `steps_offset` (default 0 for every class).
    pub fn steps_offset(&self) -> usize {
        self.steps_offset.unwrap_or(0)
    }

    /// DDIM's `set_alpha_to_one` (DDIM's default: true).
    pub fn set_alpha_to_one_for_ddim(&self) -> bool {
        self.set_alpha_to_one.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sd15_pndm_config_and_resolves_defaults_per_class() {
        // The hub's SD 1.5 config has no timestep_spacing: Euler then uses linspace.
        let c = SchedulerConfig::from_json(
            r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
                "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#,
        )
        .unwrap();
        assert_eq!(c.class_name.as_deref(), Some("PNDMScheduler"));
        assert_eq!(
            c.betas(),
            BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012
            }
        );
        assert_eq!(
            c.timestep_spacing_for(DiffusersScheduler::Euler),
            TimestepSpacing::Linspace
        );
        assert_eq!(
            c.timestep_spacing_for(DiffusersScheduler::Ddim),
            TimestepSpacing::Leading
        );
        assert_eq!(c.steps_offset(), 1);
        assert!(!c.set_alpha_to_one_for_ddim());
        assert_eq!(c.prediction().unwrap(), Prediction::Epsilon);
    }

    #[test]
    fn unknown_values_are_reported() {
        let err = SchedulerConfig::from_json(r#"{"timestep_spacing": "sideways"}"#).unwrap_err();
        assert!(err.to_string().contains("sideways"), "{err}");
        let c = SchedulerConfig::from_json(r#"{"prediction_type": "sample"}"#).unwrap();
        assert!(c.prediction().is_err());
    }
}
