//! Sigma schedules: which noise levels a run of n steps visits.
//!
//! - `Normal`: k-diffusion's discretisation (AUTOMATIC1111, ComfyUI): t = linspace(999, 0, n)
//!   mapped to sigmas by log-sigma interpolation, then a final 0; the initial noise is
//!   scaled by the first sigma.
//! - `Model`: what diffusers does with the model folder's scheduler config (timestep spacing
//!   leading / linspace / trailing, steps offset), with its quirks: Euler-family schedulers
//!   interpolate sigma linearly and scale the initial noise by sqrt(sigma_max^2 + 1) under
//!   "leading" spacing (by sigma_max otherwise); DDIM uses integer timesteps, starts from
//!   unit-variance latents (sqrt(sigma_max^2 + 1) in our scaling) and ends at
//!   alphas_cumprod[0] unless `set_alpha_to_one`.

use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Result, SamplingError};
use crate::scheduler_config::SchedulerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleKind {
    #[default]
    Normal,
    Model,
}

impl ScheduleKind {
    pub const NAMES: &'static str = "normal, model";
}

impl std::str::FromStr for ScheduleKind {
    type Err = SamplingError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "normal" | "automatic" => Ok(Self::Normal),
            "model" | "diffusers" => Ok(Self::Model),
            other => Err(SamplingError::UnknownSchedule {
                name: other.into(),
                valid: Self::NAMES.into(),
            }),
        }
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal",
            Self::Model => "model",
        })
    }
}

/// The sigmas of one run (n + 1 values, the last usually 0) and how to start and map them.
#[derive(Debug, Clone)]
pub struct SigmaSchedule {
    pub sigmas: Vec<f64>,
    /// Initial noise for txt2img is `randn * init_noise_scale`.
    pub init_noise_scale: f64,
    /// How the denoiser maps sigma back to the model timestep.
    pub interpolation: Interpolation,
    pub kind: ScheduleKind,
}

impl SigmaSchedule {
    pub fn normal(ds: &DiscreteSchedule, steps: usize) -> Self {
        let t_max = (ds.len() - 1) as f64;
        let mut sigmas: Vec<f64> = (0..steps)
            .map(|i| {
                let t = if steps == 1 {
                    t_max
                } else {
                    t_max * (1.0 - i as f64 / (steps - 1) as f64)
                };
                ds.t_to_sigma(t, Interpolation::Log)
            })
            .collect();
        sigmas.push(0.0);
        Self {
            init_noise_scale: sigmas[0],
            sigmas,
            interpolation: Interpolation::Log,
            kind: ScheduleKind::Normal,
        }
    }

    /// diffusers' schedule for `steps` steps. `integer_timesteps` is true for DDIM-family
    /// schedulers (rounded timesteps, final alpha from the config).
    pub fn model(
        ds: &DiscreteSchedule,
        cfg: &SchedulerConfig,
        steps: usize,
        integer_timesteps: bool,
    ) -> Result<Self> {
        let n_train = ds.len();
        if steps > n_train {
            return Err(SamplingError::Config(format!(
                "{steps} steps exceed the model's {n_train} training timesteps"
            )));
        }
        let mut ts: Vec<f64> = match cfg.timestep_spacing.as_str() {
            "leading" => {
                let ratio = n_train / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + cfg.steps_offset) as f64)
                    .collect()
            }
            "trailing" => {
                let ratio = n_train as f64 / steps as f64;
                (0..steps)
                    .map(|i| (n_train as f64 - i as f64 * ratio).round() - 1.0)
                    .collect()
            }
            "linspace" => {
                let last = (n_train - 1) as f64;
                (0..steps)
                    .rev()
                    .map(|i| {
                        if steps == 1 {
                            0.0
                        } else {
                            last * i as f64 / (steps - 1) as f64
                        }
                    })
                    .collect()
            }
            other => {
                return Err(SamplingError::Config(format!(
                    "timestep_spacing {other:?} is not supported"
                )))
            }
        };
        if integer_timesteps {
            for t in &mut ts {
                *t = t.round();
            }
        }
        let mut sigmas: Vec<f64> = ts
            .iter()
            .map(|&t| ds.t_to_sigma(t, Interpolation::Linear))
            .collect();
        let sigma_max = sigmas[0];
        let init_noise_scale = if integer_timesteps {
            sigmas.push(if cfg.set_alpha_to_one {
                0.0
            } else {
                ds.sigmas[0]
            });
            (sigma_max * sigma_max + 1.0).sqrt()
        } else {
            sigmas.push(0.0);
            if matches!(cfg.timestep_spacing.as_str(), "linspace" | "trailing") {
                sigma_max
            } else {
                (sigma_max * sigma_max + 1.0).sqrt()
            }
        };
        Ok(Self {
            sigmas,
            init_noise_scale,
            interpolation: Interpolation::Linear,
            kind: ScheduleKind::Model,
        })
    }

    /// The part of the schedule img2img runs at denoising `strength`: diffusers' convention
    /// for `Model` (the last int(n * strength) steps), A1111's for `Normal` (the last
    /// int(min(strength, 0.999) * n) + 1 steps).
    pub fn for_strength(&self, strength: f64) -> Vec<f64> {
        let n = self.sigmas.len() - 1;
        let start = match self.kind {
            ScheduleKind::Model => n - ((n as f64 * strength) as usize).min(n),
            ScheduleKind::Normal => {
                let t_enc = (strength.min(0.999) * n as f64) as usize;
                n - t_enc - 1
            }
        };
        self.sigmas[start.min(n)..].to_vec()
    }
}
