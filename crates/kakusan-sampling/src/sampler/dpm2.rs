//! DPM2 (k-diffusion `sample_dpm_2`): a second-order step that evaluates the model at the
//! log-midpoint `sqrt(sigma * sigma_next)` and takes the whole step with that slope
//! (inspired by DPM-Solver-2 and Karras et al.'s Algorithm 2); Euler for the last step.
//! A1111 and ComfyUI drop the next-to-last sigma of the schedule for it (see
//! [`Sampler::discards_penultimate_sigma`](super::Sampler::discards_penultimate_sigma)).

use super::euler::EulerOptions;
use super::{check_sigmas, churn, euler_step, to_d, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// `exp(lerp(ln a, ln b, 1/2))`: the log-midpoint of two noise levels.
pub(crate) fn log_midpoint(a: f64, b: f64) -> f64 {
    (a.ln() + 0.5 * (b.ln() - a.ln())).exp()
}

/// One DPM-Solver-2 step of `x` (with model estimate `denoised` at `sigma`) to `sigma_to`.
pub(crate) fn dpm2_step(
    denoiser: &dyn Denoiser,
    x: &Tensor,
    denoised: &Tensor,
    sigma: f64,
    sigma_to: f64,
) -> Result<Tensor> {
    let d = to_d(x, denoised, sigma)?;
    let sigma_mid = log_midpoint(sigma, sigma_to);
    let x_2 = (x + d.affine(sigma_mid - sigma, 0.0)?)?;
    let denoised_2 = denoiser.denoise(&x_2, sigma_mid)?;
    let d_2 = to_d(&x_2, &denoised_2, sigma_mid)?;
    Ok((x + d_2.affine(sigma_to - sigma, 0.0)?)?)
}

/// DPM2 sampling from `x` at `sigmas[0]`, with optional churn (same options as Euler).
pub fn sample_dpm_2(
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
        x = if sigma_next == 0.0 {
            euler_step(&x, &denoised, sigma_hat, sigma_next)?
        } else {
            dpm2_step(denoiser, &x, &denoised, sigma_hat, sigma_next)?
        };
    }
    Ok(x)
}
