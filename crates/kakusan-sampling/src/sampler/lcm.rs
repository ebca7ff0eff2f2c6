//! LCM sampling (A1111's and ComfyUI's `sample_lcm`): jump to the model's estimate, then
//! re-noise it to the next level with fresh noise. Meant for latent consistency models
//! (few steps); with any model it is the most stochastic sampler.

use super::{check_sigmas, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// LCM sampling from `x` at `sigmas[0]`: `x = denoised + sigma_next * noise`, no noise
/// after the last step.
pub fn sample_lcm(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    for step in 0..total {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        x = denoised;
        if sigma_next > 0.0 {
            let eps = noise.noise_between(&x, sigma, sigma_next)?;
            x = (&x + eps.affine(sigma_next, 0.0)?)?;
        }
    }
    Ok(x)
}
