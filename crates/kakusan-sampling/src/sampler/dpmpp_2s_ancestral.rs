//! DPM-Solver++(2S) ancestral (k-diffusion `sample_dpmpp_2s_ancestral`): a single-step
//! second-order DPM-Solver++ step (model again at the half-way point in log sigma) down to
//! sigma_down, then fresh noise of standard deviation sigma_up.

use super::euler_ancestral::{ancestral_step, AncestralOptions};
use super::{check_sigmas, euler_step, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DPM++ 2S ancestral sampling from `x` at `sigmas[0]`.
pub fn sample_dpmpp_2s_ancestral(
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
            // t = -ln(sigma); the half-way point s = t + h/2 is sigma_s = exp(-s).
            let (t, t_next) = (-sigma.ln(), -sigma_down.ln());
            let h = t_next - t;
            let s = t + 0.5 * h;
            let sigma_s = (-s).exp();
            let x_2 = lin(&x, sigma_s / sigma, &denoised, -(-0.5 * h).exp_m1())?;
            let denoised_2 = denoiser.denoise(&x_2, sigma_s)?;
            x = lin(&x, (-t_next).exp() / sigma, &denoised_2, -(-h).exp_m1())?;
        }
        if sigma_next > 0.0 {
            let eps = noise.noise_between(&x, sigma, sigma_next)?;
            x = (&x + eps.affine(opts.s_noise * sigma_up, 0.0)?)?;
        }
    }
    Ok(x)
}
