//! Euler's method on the probability-flow ODE (k-diffusion `sample_euler`, diffusers
//! `EulerDiscreteScheduler`), with optional churn (Karras et al. 2022, Algorithm 2).

use super::{check_sigmas, churn, euler_step, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// Euler's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EulerOptions {
    /// Churn; 0 (default) makes the sampler deterministic.
    pub s_churn: f64,
    /// Churn applies to sigma in [s_tmin, s_tmax].
    pub s_tmin: f64,
    pub s_tmax: f64,
    /// Scale of the churn noise.
    pub s_noise: f64,
    /// Draw a noise tensor on every step, used or not (k-diffusion 0.1.1 under A1111, whose
    /// per-image streams then advance on steps outside [s_tmin, s_tmax] too); `false` draws
    /// only on steps where churn is active (diffusers, ComfyUI).
    pub draw_every_step: bool,
}

impl Default for EulerOptions {
    fn default() -> Self {
        Self {
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            s_noise: 1.0,
            draw_every_step: false,
        }
    }
}

/// Euler sampling from `x` at `sigmas[0]` down to the last sigma. With churn, the model is
/// evaluated at `sigma_hat = sigma * (1 + gamma)` after adding noise (k-diffusion's form;
/// diffusers' churn mixes sigma and sigma_hat and is not reproduced). Noise is drawn only on
/// steps where churn is active (diffusers, current k-diffusion, ComfyUI; k-diffusion 0.1.1
/// drew an unused tensor every step from the global torch generator, which leaves the
/// per-image streams untouched).
pub fn sample_euler(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &EulerOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    for step in 0..total {
        let (sigma_hat, x_hat) = churn(&x, sigmas, step, noise, opts)?;
        x = x_hat;
        let sigma_next = sigmas[step + 1];
        let denoised = denoiser.denoise(&x, sigma_hat)?;
        callback(&StepInfo {
            step,
            total,
            sigma: sigma_hat,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        x = euler_step(&x, &denoised, sigma_hat, sigma_next)?;
    }
    Ok(x)
}
