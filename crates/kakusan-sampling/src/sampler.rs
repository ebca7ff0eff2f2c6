//! The sampler names users type (A1111's and ComfyUI's) and dispatch to the sampler
//! functions.

use candle_core::Tensor;

use crate::denoiser::Denoiser;
use crate::error::{Result, SamplingError};
use crate::noise::NoiseSource;
use crate::samplers;

/// What a sampler reports after each step.
pub struct StepInfo<'a> {
    pub step: usize,
    pub total: usize,
    pub sigma: f64,
    pub sigma_next: f64,
    pub x: &'a Tensor,
    pub denoised: &'a Tensor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    Euler,
    EulerAncestral,
    Ddim,
}

impl Sampler {
    pub const NAMES: &'static str = "Euler (euler), Euler a (euler_ancestral), DDIM (ddim)";

    /// The A1111 display name.
    pub fn a1111_name(self) -> &'static str {
        match self {
            Self::Euler => "Euler",
            Self::EulerAncestral => "Euler a",
            Self::Ddim => "DDIM",
        }
    }

    /// DDIM-family samplers use integer timesteps under the model's own schedule.
    pub fn integer_timesteps(self) -> bool {
        matches!(self, Self::Ddim)
    }

    pub fn sample(
        self,
        denoiser: &dyn Denoiser,
        x: Tensor,
        sigmas: &[f64],
        noise: &mut dyn NoiseSource,
        callback: &mut dyn FnMut(&StepInfo),
    ) -> Result<Tensor> {
        match self {
            Self::Euler | Self::Ddim => {
                samplers::euler::sample_euler(denoiser, x, sigmas, callback)
            }
            Self::EulerAncestral => samplers::euler_ancestral::sample_euler_ancestral(
                denoiser, x, sigmas, noise, 1.0, callback,
            ),
        }
    }
}

impl std::str::FromStr for Sampler {
    type Err = SamplingError;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        match key.as_str() {
            "euler" => Ok(Self::Euler),
            "euler_a" | "euler_ancestral" => Ok(Self::EulerAncestral),
            "ddim" => Ok(Self::Ddim),
            _ => Err(SamplingError::UnknownSampler {
                name: s.into(),
                valid: Self::NAMES.into(),
            }),
        }
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.a1111_name())
    }
}
