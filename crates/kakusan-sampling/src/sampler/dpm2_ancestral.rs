//! DPM2 ancestral (k-diffusion `sample_dpm_2_ancestral`): a DPM2 step down to sigma_down,
//! then fresh noise of standard deviation sigma_up.

use super::dpm2::dpm2_step;
use super::euler_ancestral::{ancestral_step, AncestralOptions};
use super::{check_sigmas, euler_step, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DPM2-ancestral sampling from `x` at `sigmas[0]` (`eta`, `s_noise` from `opts`; noise is
/// drawn after every step whose sigma_down is above 0, as k-diffusion does).
pub fn sample_dpm_2_ancestral(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &AncestralOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    for step in 0..total {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, opts.eta);
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        if sigma_down == 0.0 {
            x = euler_step(&x, &denoised, sigma, sigma_down)?;
        } else {
            x = dpm2_step(denoiser, &x, &denoised, sigma, sigma_down)?;
            let eps = noise.noise_between(&x, sigma, sigma_next)?;
            x = (&x + eps.affine(opts.s_noise * sigma_up, 0.0)?)?;
        }
    }
    Ok(x)
}
