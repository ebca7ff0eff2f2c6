//! DPM-Solver++(2M) SDE (k-diffusion `sample_dpmpp_2m_sde`): the stochastic second-order
//! multistep solver, with the "midpoint" (A1111's "DPM++ 2M SDE", the default) or "heun"
//! (A1111's "DPM++ 2M SDE Heun") correction. One model call per step; the last step lands
//! on the model's estimate.

use super::{check_sigmas, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// The second-order correction of DPM++ 2M SDE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolverType {
    /// k-diffusion's default.
    #[default]
    Midpoint,
    /// Heun's correction.
    Heun,
}

/// DPM++ 2M SDE's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpmpp2mSdeOptions {
    /// Amount of noise (1: SDE; 0: deterministic).
    pub eta: f64,
    /// Scale of the noise.
    pub s_noise: f64,
    /// Midpoint or Heun correction.
    pub solver: SolverType,
}

impl Default for Dpmpp2mSdeOptions {
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            solver: SolverType::Midpoint,
        }
    }
}

/// DPM++ 2M SDE sampling from `x` at `sigmas[0]`.
pub fn sample_dpmpp_2m_sde(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &Dpmpp2mSdeOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let mut old_denoised: Option<Tensor> = None;
    let mut h_last: Option<f64> = None;
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
        let mut h = None;
        if sigma_next == 0.0 {
            x = denoised.clone();
        } else {
            let hh = sigma.ln() - sigma_next.ln();
            let eta_h = opts.eta * hh;
            let phi = -(-hh - eta_h).exp_m1();
            x = lin(&x, sigma_next / sigma * (-eta_h).exp(), &denoised, phi)?;
            if let (Some(old), Some(h_last)) = (&old_denoised, h_last) {
                let r = h_last / hh;
                let coeff = match opts.solver {
                    SolverType::Heun => (phi / (-hh - eta_h) + 1.0) * (1.0 / r),
                    SolverType::Midpoint => 0.5 * phi * (1.0 / r),
                };
                x = (&x + (&denoised - old)?.affine(coeff, 0.0)?)?;
            }
            if opts.eta != 0.0 {
                let eps = noise.noise_between(&x, sigma, sigma_next)?;
                let amount = sigma_next * (-(-2.0 * eta_h).exp_m1()).sqrt() * opts.s_noise;
                x = (&x + eps.affine(amount, 0.0)?)?;
            }
            h = Some(hh);
        }
        old_denoised = Some(denoised);
        // k-diffusion keeps h from the last finite step (the final step does not set it).
        if h.is_some() {
            h_last = h;
        }
    }
    Ok(x)
}
