//! DDPM ancestral sampling (ComfyUI's `sample_ddpm`): the posterior step of Ho et al.
//! between two levels of the variance-preserving process, written over k-diffusion's
//! sigmas (`alpha_cumprod = 1 / (1 + sigma^2)`), in the unscaled space and scaled back.

use super::{check_sigmas, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DDPM sampling from `x` at `sigmas[0]`; noise is drawn on every step except the last.
pub fn sample_ddpm(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    for step in 0..total {
        let (sigma, sigma_prev) = (sigmas[step], sigmas[step + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next: sigma_prev,
            x: &x,
            denoised: &denoised,
        });
        let eps = ((&x - &denoised)? / sigma)?;
        let x_unscaled = (&x / (1.0 + sigma * sigma).sqrt())?;
        let ac = 1.0 / (sigma * sigma + 1.0);
        let ac_prev = 1.0 / (sigma_prev * sigma_prev + 1.0);
        let alpha = ac / ac_prev;
        let mu_eps = (1.0 - alpha) / (1.0 - ac).sqrt();
        let mut mu = ((x_unscaled - eps.affine(mu_eps, 0.0)?)? * (1.0 / alpha).sqrt())?;
        if sigma_prev > 0.0 {
            let std = ((1.0 - alpha) * (1.0 - ac_prev) / (1.0 - ac)).sqrt();
            let z = noise.noise_between(&mu, sigma, sigma_prev)?;
            mu = (mu + z.affine(std, 0.0)?)?;
            x = mu.affine((1.0 + sigma_prev * sigma_prev).sqrt(), 0.0)?;
        } else {
            x = mu;
        }
    }
    Ok(x)
}
