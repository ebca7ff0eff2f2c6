//! Euler's method on the probability-flow ODE dx/dsigma = (x - x0(x, sigma)) / sigma.
//! With the model's own integer timesteps this is also DDIM with eta = 0: DDIM's update
//! written in k-diffusion scaling is exactly this step.

use candle_core::Tensor;

use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::sampler::StepInfo;

pub fn sample_euler(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    callback: &mut dyn FnMut(&StepInfo),
) -> Result<Tensor> {
    let total = sigmas.len().saturating_sub(1);
    for i in 0..total {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let d = ((&x - &denoised)? / sigma)?;
        x = (&x + (d * (next - sigma))?)?;
        callback(&StepInfo {
            step: i,
            total,
            sigma,
            sigma_next: next,
            x: &x,
            denoised: &denoised,
        });
    }
    Ok(x)
}
