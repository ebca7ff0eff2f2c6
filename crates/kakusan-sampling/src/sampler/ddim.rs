//! DDIM (Song et al. 2021; diffusers `DDIMScheduler`), written in k-diffusion scaling.
//!
//! With `x = x_ddim * sqrt(1 + sigma^2)` and `sigma^2 = (1 - alpha_cumprod) / alpha_cumprod`,
//! DDIM's update `x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps + std noise` is
//! `x_prev = x0 + sigma_down * eps + sigma_up * noise` with
//! `sigma_up = std * sqrt(1 + sigma_prev^2) = eta * sigma_prev * sqrt(sigma^2 - sigma_prev^2) / sigma`
//! and `sigma_down = sqrt(sigma_prev^2 - sigma_up^2)`: for eta = 0 exactly an Euler step, for
//! eta = 1 an ancestral one. Noise is drawn every step when eta > 0 (diffusers), the last
//! included.
//!
//! diffusers' quirk with non-chaining timesteps (linspace spacing, ...) is honoured through
//! `step_targets`: step i lands on the target level, then the sample is relabelled as being
//! at `sigmas[i + 1]` (diffusers simply feeds `x_ddim` to the next timestep), which in
//! k-diffusion scaling is a rescale by `sqrt(1 + sigma_next^2) / sqrt(1 + target^2)`.

use super::{check_sigmas, euler_step, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DDIM's options.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdimOptions<'a> {
    /// 0 = deterministic DDIM; 1 = DDPM-like ancestral noise.
    pub eta: f64,
    /// The level each step lands on when it is not the next sigma (from
    /// [`SigmaSchedule::step_targets`](crate::schedule::SigmaSchedule::step_targets)).
    pub step_targets: Option<&'a [f64]>,
}

/// DDIM sampling from `x` (k-diffusion scaling) at `sigmas[0]`.
pub fn sample_ddim(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &DdimOptions<'_>,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    if let Some(targets) = opts.step_targets {
        if targets.len() != total {
            return Err(Error::InvalidSchedule(format!(
                "{} DDIM step targets for {total} steps",
                targets.len()
            )));
        }
    }
    if !(opts.eta >= 0.0 && opts.eta.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "DDIM eta must be a non-negative number, got {}",
            opts.eta
        )));
    }
    for step in 0..total {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let target = opts.step_targets.map_or(sigma_next, |t| t[step]);
        let denoised = denoiser.denoise(&x, sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        if opts.eta > 0.0 {
            // No min(): sigma_up <= target holds for eta <= 1, and diffusers does not clamp.
            let up = opts.eta * target * (sigma * sigma - target * target).max(0.0).sqrt() / sigma;
            let down = (target * target - up * up).max(0.0).sqrt();
            x = euler_step(&x, &denoised, sigma, down)?;
            let eps = noise.noise_like(&x)?;
            x = (&x + eps.affine(up, 0.0)?)?;
        } else {
            x = euler_step(&x, &denoised, sigma, target)?;
        }
        if target != sigma_next {
            let relabel = (1.0 + sigma_next * sigma_next).sqrt() / (1.0 + target * target).sqrt();
            x = x.affine(relabel, 0.0)?;
        }
    }
    Ok(x)
}
