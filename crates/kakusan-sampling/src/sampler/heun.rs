//! Heun's method on the probability-flow ODE (k-diffusion `sample_heun`, Karras et al. 2022
//! Algorithm 2): an Euler step, the model again at its end, and the average of the two
//! slopes; the last step (to sigma 0) is a plain Euler step. Two model calls per step.

use super::euler::EulerOptions;
use super::{check_sigmas, churn, euler_step, to_d, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// Heun sampling from `x` at `sigmas[0]`, with optional churn (same options as Euler).
pub fn sample_heun(
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
        if sigma_next == 0.0 {
            x = euler_step(&x, &denoised, sigma_hat, sigma_next)?;
        } else {
            let d = to_d(&x, &denoised, sigma_hat)?;
            let dt = sigma_next - sigma_hat;
            let x_2 = (&x + d.affine(dt, 0.0)?)?;
            let denoised_2 = denoiser.denoise(&x_2, sigma_next)?;
            let d_2 = to_d(&x_2, &denoised_2, sigma_next)?;
            let d_prime = ((d + d_2)? / 2.0)?;
            x = (&x + d_prime.affine(dt, 0.0)?)?;
        }
    }
    Ok(x)
}
