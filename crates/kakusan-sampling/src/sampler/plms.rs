//! PLMS (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models", LDM's and
//! A1111's `plms`): DDIM steps driven by an Adams-Bashforth combination of the last four
//! noise predictions; the first step is a pseudo improved-Euler step (one extra model call).
//!
//! Written in k-diffusion scaling: with `e = (x - denoised) / sigma`, LDM's DDIM transfer
//! `x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) e` (x0 = `(x - sqrt(1 - a) e) / sqrt(a)`, in
//! the unscaled space) is `x_prev = x + (sigma_prev - sigma) e` here, so PLMS becomes a
//! linear multistep method on e in sigma.

use super::{check_sigmas, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use candle_core::Tensor;

fn eps(denoiser: &dyn Denoiser, x: &Tensor, sigma: f64) -> Result<(Tensor, Tensor)> {
    let denoised = denoiser.denoise(x, sigma)?;
    let e = ((x - &denoised)? / sigma)?;
    Ok((e, denoised))
}

/// PLMS sampling from `x` at `sigmas[0]`.
pub fn sample_plms(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let mut old_eps: Vec<Tensor> = Vec::with_capacity(4);
    for step in 0..total {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let (e_t, denoised) = eps(denoiser, &x, sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        let e_prime = match old_eps.len() {
            0 => {
                // Pseudo improved Euler: the model again at the end of a DDIM step.
                let x_prev = lin(&x, 1.0, &e_t, sigma_next - sigma)?;
                if sigma_next > 0.0 {
                    let (e_next, _) = eps(denoiser, &x_prev, sigma_next)?;
                    lin(&e_t, 0.5, &e_next, 0.5)?
                } else {
                    e_t.clone()
                }
            }
            1 => lin(&e_t, 1.5, &old_eps[0], -0.5)?,
            2 => {
                (lin(&e_t, 23.0 / 12.0, &old_eps[1], -16.0 / 12.0)?
                    + old_eps[0].affine(5.0 / 12.0, 0.0)?)?
            }
            _ => {
                let n = old_eps.len();
                ((lin(&e_t, 55.0 / 24.0, &old_eps[n - 1], -59.0 / 24.0)?
                    + old_eps[n - 2].affine(37.0 / 24.0, 0.0)?)?
                    + old_eps[n - 3].affine(-9.0 / 24.0, 0.0)?)?
            }
        };
        x = lin(&x, 1.0, &e_prime, sigma_next - sigma)?;
        old_eps.push(e_t);
        if old_eps.len() > 3 {
            old_eps.remove(0);
        }
    }
    Ok(x)
}
