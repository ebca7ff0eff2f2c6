//! Samplers as plain functions, one file per family, and the [`Sampler`] enum that lets a
//! pipeline pick one by name without knowing the families.
//!
//! Every sampler works in k-diffusion's scaling (`x = x0 + sigma * eps`), takes the
//! sigmas to walk (`steps + 1` values ending with the final level), a [`Denoiser`], a
//! [`NoiseSource`] for its randomness, and calls `callback` once per step after the
//! denoiser ran.

pub mod ddim;
pub mod euler;
pub mod euler_ancestral;

use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::noise::NoiseSource;
use crate::schedule::SigmaSchedule;
use crate::scheduler_config::DiffusersScheduler;
use candle_core::Tensor;
use std::fmt;
use std::str::FromStr;

/// What a sampler reports after each model evaluation.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// 0-based step index.
    pub step: usize,
    /// Number of steps of this run.
    pub total: usize,
    /// The noise level the denoiser was called at (sigma_hat when churn raised it).
    pub sigma: f64,
    /// The level the step moves to.
    pub sigma_next: f64,
    /// The sample the denoiser saw.
    pub x: &'a Tensor,
    /// The denoiser's x0 estimate (a natural preview).
    pub denoised: &'a Tensor,
}

/// The per-step callback type.
pub type Callback<'c> = dyn FnMut(&StepInfo<'_>) + 'c;

/// Checks a sigma list: at least two values, finite, non-negative, the running levels > 0.
pub(crate) fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    if sigmas.len() < 2 {
        return Err(Error::InvalidSchedule(format!(
            "a sampler needs at least two sigmas (one step), got {}",
            sigmas.len()
        )));
    }
    if sigmas.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(Error::InvalidSchedule(
            "sigmas must be finite and non-negative".into(),
        ));
    }
    if sigmas[..sigmas.len() - 1].contains(&0.0) {
        return Err(Error::InvalidSchedule(
            "only the last sigma may be 0 (a step cannot start at noise level 0)".into(),
        ));
    }
    Ok(())
}

/// `x + d * dt` with `d = (x - denoised) / sigma`: the Euler step every first-order sampler
/// here takes (same operation order as diffusers' `step`).
pub(crate) fn euler_step(
    x: &Tensor,
    denoised: &Tensor,
    sigma: f64,
    sigma_to: f64,
) -> Result<Tensor> {
    let derivative = ((x - denoised)? / sigma)?;
    Ok((x + (derivative * (sigma_to - sigma))?)?)
}

/// Options shared by the [`Sampler`] dispatch; each family reads what applies to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerOptions {
    /// Ancestral noise amount: `None` = the family's default (1 for Euler a, 0 for DDIM).
    pub eta: Option<f64>,
    /// Scale of the drawn noise (k-diffusion's s_noise), default 1.
    pub s_noise: f64,
    /// Euler churn (Karras et al.), default 0 (off).
    pub s_churn: f64,
    /// Churn only for sigma in [s_tmin, s_tmax].
    pub s_tmin: f64,
    pub s_tmax: f64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            eta: None,
            s_noise: 1.0,
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
        }
    }
}

/// The samplers kakusan offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sampler {
    /// Euler (Karras et al. Algorithm 2; deterministic without churn).
    Euler,
    /// Euler ancestral: Euler down to sigma_down, then fresh noise up to sigma_next.
    EulerAncestral,
    /// DDIM (deterministic for eta = 0, where it equals Euler).
    Ddim,
}

impl Sampler {
    /// Every sampler, in display order.
    pub const ALL: [Sampler; 3] = [Self::Euler, Self::EulerAncestral, Self::Ddim];

    /// The A1111 name ("Euler", "Euler a", "DDIM"), used in PNG metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Euler => "Euler",
            Self::EulerAncestral => "Euler a",
            Self::Ddim => "DDIM",
        }
    }

    /// The k-diffusion / ComfyUI name ("euler", "euler_ancestral", "ddim").
    pub fn id(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_ancestral",
            Self::Ddim => "ddim",
        }
    }

    /// The diffusers scheduler class this sampler corresponds to (for the `model` schedule).
    pub fn diffusers_scheduler(self) -> DiffusersScheduler {
        match self {
            Self::Euler => DiffusersScheduler::Euler,
            Self::EulerAncestral => DiffusersScheduler::EulerAncestral,
            Self::Ddim => DiffusersScheduler::Ddim,
        }
    }

    /// Runs this sampler over `schedule` from `x` (already at `schedule.sigmas[0]`, see
    /// [`SigmaSchedule::initial_latents`] / [`SigmaSchedule::img2img_latents`]). Returns
    /// the sampler's final x in k-diffusion scaling; apply
    /// [`SigmaSchedule::final_latents`] to get the reference's latents.
    pub fn sample(
        self,
        denoiser: &dyn Denoiser,
        x: Tensor,
        schedule: &SigmaSchedule,
        noise: &mut dyn NoiseSource,
        options: &SamplerOptions,
        callback: &mut Callback<'_>,
    ) -> Result<Tensor> {
        schedule.validate()?;
        let sigmas = &schedule.sigmas;
        match self {
            Self::Euler => {
                let opts = euler::EulerOptions {
                    s_churn: options.s_churn,
                    s_tmin: options.s_tmin,
                    s_tmax: options.s_tmax,
                    s_noise: options.s_noise,
                };
                euler::sample_euler(denoiser, x, sigmas, noise, &opts, callback)
            }
            Self::EulerAncestral => {
                let opts = euler_ancestral::AncestralOptions {
                    eta: options.eta.unwrap_or(1.0),
                    s_noise: options.s_noise,
                    convention: schedule.convention,
                };
                euler_ancestral::sample_euler_ancestral(denoiser, x, sigmas, noise, &opts, callback)
            }
            Self::Ddim => {
                let opts = ddim::DdimOptions {
                    eta: options.eta.unwrap_or(0.0),
                    step_targets: schedule.step_targets.as_deref(),
                };
                ddim::sample_ddim(denoiser, x, sigmas, noise, &opts, callback)
            }
        }
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Sampler {
    type Err = Error;

    /// Accepts the A1111 and the k-diffusion names, ignoring case and surrounding spaces
    /// ("Euler a", "euler_ancestral", "DDIM", "ddim", ...).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name().to_ascii_lowercase() == wanted || k.id() == wanted)
            .ok_or_else(|| Error::UnknownSampler {
                name: s.to_string(),
                valid: Self::ALL
                    .iter()
                    .map(|k| format!("\"{}\" / \"{}\"", k.name(), k.id()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for s in Sampler::ALL {
            assert_eq!(s.name().parse::<Sampler>().unwrap(), s);
            assert_eq!(s.id().parse::<Sampler>().unwrap(), s);
        }
        assert_eq!(
            " euler A ".parse::<Sampler>().unwrap(),
            Sampler::EulerAncestral
        );
        let err = "heun".parse::<Sampler>().unwrap_err().to_string();
        assert!(err.contains("\"Euler a\" / \"euler_ancestral\""), "{err}");
        assert!(err.contains("heun"), "{err}");
    }

    #[test]
    fn sigma_checks() {
        assert!(check_sigmas(&[1.0]).is_err());
        assert!(check_sigmas(&[1.0, 0.0, 0.0]).is_err());
        assert!(check_sigmas(&[1.0, f64::NAN]).is_err());
        assert!(check_sigmas(&[2.0, 1.0, 0.0]).is_ok());
    }
}
