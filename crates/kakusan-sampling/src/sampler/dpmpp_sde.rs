//! DPM-Solver++ SDE (k-diffusion `sample_dpmpp_sde`): a stochastic single-step
//! second-order solver; each step takes an ancestral sub-step to an intermediate level
//! (ratio `r` of the way in log sigma), calls the model there, then an ancestral step to
//! sigma_next with the blended estimate. Noise comes from
//! [`NoiseSource::noise_between`] (a Brownian tree in the references). Two model calls per
//! step, Euler for the last step.

use super::euler_ancestral::ancestral_step;
use super::{check_sigmas, euler_step, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DPM++ SDE's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmppSdeOptions {
    /// Amount of noise (1: full SDE; 0: deterministic DPM-Solver++(2S)).
    pub eta: f64,
    /// Scale of the noise.
    pub s_noise: f64,
    /// Where the intermediate level lies, as a fraction of the step in log sigma.
    pub r: f64,
}

impl Default for DpmppSdeOptions {
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            r: 0.5,
        }
    }
}

/// `(sigma_fn(t), sigma_fn(s), sigma_fn(t_next))` as k-diffusion computes them in float32
/// tensors: `t = -ln sigma`, `s = t + r (t_next - t)`, `sigma_fn(u) = exp(-u)`.
fn f32_levels(sigma: f64, sigma_next: f64, r: f64) -> (f64, f64, f64) {
    let t = -(sigma as f32).ln();
    let t_next = -(sigma_next as f32).ln();
    let h = t_next - t;
    let s = t + h * r as f32;
    ((-t).exp() as f64, (-s).exp() as f64, (-t_next).exp() as f64)
}

/// DPM++ SDE sampling from `x` at `sigmas[0]`.
pub fn sample_dpmpp_sde(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &DpmppSdeOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let sigma_fn = |t: f64| (-t).exp();
    let t_fn = |sigma: f64| -sigma.ln();
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
        if sigma_next == 0.0 {
            x = euler_step(&x, &denoised, sigma, sigma_next)?;
            continue;
        }
        let (t, t_next) = (t_fn(sigma), t_fn(sigma_next));
        let h = t_next - t;
        let s = t + h * opts.r;
        let fac = 1.0 / (2.0 * opts.r);

        // Step 1: ancestral sub-step to sigma_fn(s).
        let (sd, su) = ancestral_step(sigma_fn(t), sigma_fn(s), opts.eta);
        let s_ = t_fn(sd);
        let x_2 = lin(
            &x,
            sigma_fn(s_) / sigma_fn(t),
            &denoised,
            -(t - s_).exp_m1(),
        )?;
        // The references compute these levels in float32, and a Brownian tree resolves
        // time to 1e-6, so the query uses the float32 value (see `f32_levels`).
        let (q_t, q_s, q_next) = f32_levels(sigma, sigma_next, opts.r);
        let eps = noise.noise_between(&x, q_t, q_s)?;
        let x_2 = (x_2 + eps.affine(opts.s_noise * su, 0.0)?)?;
        let denoised_2 = denoiser.denoise(&x_2, sigma_fn(s))?;

        // Step 2: ancestral step to sigma_next with the blended estimate.
        let (sd, su) = ancestral_step(sigma_fn(t), sigma_fn(t_next), opts.eta);
        let t_next_ = t_fn(sd);
        let denoised_d = lin(&denoised, 1.0 - fac, &denoised_2, fac)?;
        x = lin(
            &x,
            sigma_fn(t_next_) / sigma_fn(t),
            &denoised_d,
            -(t - t_next_).exp_m1(),
        )?;
        let eps = noise.noise_between(&x, q_t, q_next)?;
        x = (&x + eps.affine(opts.s_noise * su, 0.0)?)?;
    }
    Ok(x)
}
