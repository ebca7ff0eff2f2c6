//! Euler ancestral (k-diffusion `sample_euler_ancestral`, diffusers
//! `EulerAncestralDiscreteScheduler`): an Euler step down to sigma_down, then fresh noise
//! of standard deviation sigma_up, so the sample lands at sigma_next with new randomness.

use super::{check_sigmas, euler_step, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::schedule::NoiseConvention;
use candle_core::Tensor;

/// Euler-ancestral's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AncestralOptions {
    /// 1 = full ancestral step (diffusers' only value); 0 = plain Euler.
    pub eta: f64,
    /// Scale of the drawn noise.
    pub s_noise: f64,
    /// diffusers draws noise after every step (the last too, times sigma_up = 0);
    /// k-diffusion only when sigma_next > 0.
    pub convention: NoiseConvention,
}

impl Default for AncestralOptions {
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            convention: NoiseConvention::Diffusers,
        }
    }
}

/// `(sigma_down, sigma_up)` of an ancestral step from `sigma_from` to `sigma_to`:
/// `sigma_up = min(sigma_to, eta * sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2))`,
/// `sigma_down = sqrt(sigma_to^2 - sigma_up^2)` (k-diffusion's `get_ancestral_step`).
pub fn ancestral_step(sigma_from: f64, sigma_to: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 {
        return (sigma_to, 0.0);
    }
    let up = (eta
        * (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .max(0.0)
            .sqrt())
    .min(sigma_to);
    let down = (sigma_to * sigma_to - up * up).max(0.0).sqrt();
    (down, up)
}

/// Euler-ancestral sampling from `x` at `sigmas[0]`.
pub fn sample_euler_ancestral(
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
        x = euler_step(&x, &denoised, sigma, sigma_down)?;
        let draw = match opts.convention {
            NoiseConvention::Diffusers => true,
            NoiseConvention::KDiffusion => sigma_next > 0.0,
        };
        if draw {
            let eps = noise.noise_like(&x)?;
            x = (&x + eps.affine(opts.s_noise * sigma_up, 0.0)?)?;
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestral_step_splits_the_variance() {
        let (down, up) = ancestral_step(10.0, 5.0, 1.0);
        assert!((down * down + up * up - 25.0).abs() < 1e-12);
        assert!((up - (25.0f64 * 75.0 / 100.0).sqrt()).abs() < 1e-12);
        assert_eq!(ancestral_step(10.0, 0.0, 1.0), (0.0, 0.0));
        assert_eq!(ancestral_step(10.0, 5.0, 0.0), (5.0, 0.0));
    }
}
