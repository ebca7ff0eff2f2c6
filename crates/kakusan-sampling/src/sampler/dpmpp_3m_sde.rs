//! DPM-Solver++(3M) SDE (k-diffusion `sample_dpmpp_3m_sde`): the stochastic third-order
//! multistep solver (first, then second order while history builds up). One model call per
//! step; the last step lands on the model's estimate.

use super::{check_sigmas, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use candle_core::Tensor;

/// DPM++ 3M SDE's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpmpp3mSdeOptions {
    /// Amount of noise (1: SDE; 0: deterministic).
    pub eta: f64,
    /// Scale of the noise.
    pub s_noise: f64,
}

impl Default for Dpmpp3mSdeOptions {
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
        }
    }
}

/// DPM++ 3M SDE sampling from `x` at `sigmas[0]`.
pub fn sample_dpmpp_3m_sde(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    opts: &Dpmpp3mSdeOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let (mut denoised_1, mut denoised_2): (Option<Tensor>, Option<Tensor>) = (None, None);
    let (mut h_1, mut h_2): (Option<f64>, Option<f64>) = (None, None);
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
        // k-diffusion shifts h even on the last step, where it is inf (never used after).
        let h = sigma.ln() - sigma_next.ln();
        if sigma_next == 0.0 {
            x = denoised.clone();
        } else {
            let h_eta = h * (opts.eta + 1.0);
            x = lin(&x, (-h_eta).exp(), &denoised, -(-h_eta).exp_m1())?;
            let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
            match (&denoised_1, &denoised_2, h_1, h_2) {
                (Some(d_1), Some(d_2), Some(h_1), Some(h_2)) => {
                    let r0 = h_1 / h;
                    let r1 = h_2 / h;
                    let d1_0 = (&denoised - d_1)?.affine(1.0 / r0, 0.0)?;
                    let d1_1 = (d_1 - d_2)?.affine(1.0 / r1, 0.0)?;
                    let diff = (&d1_0 - &d1_1)?;
                    let d1 = (&d1_0 + diff.affine(r0 / (r0 + r1), 0.0)?)?;
                    let d2 = diff.affine(1.0 / (r0 + r1), 0.0)?;
                    let phi_3 = phi_2 / h_eta - 0.5;
                    x = (&x + lin(&d1, phi_2, &d2, -phi_3)?)?;
                }
                (Some(d_1), _, Some(h_1), _) => {
                    let r = h_1 / h;
                    let d = (&denoised - d_1)?.affine(1.0 / r, 0.0)?;
                    x = (&x + d.affine(phi_2, 0.0)?)?;
                }
                _ => {}
            }
            if opts.eta != 0.0 {
                let eps = noise.noise_between(&x, sigma, sigma_next)?;
                let amount = sigma_next * (-(-2.0 * h * opts.eta).exp_m1()).sqrt() * opts.s_noise;
                x = (&x + eps.affine(amount, 0.0)?)?;
            }
        }
        denoised_2 = denoised_1.take();
        denoised_1 = Some(denoised);
        h_2 = h_1;
        h_1 = Some(h);
    }
    Ok(x)
}
