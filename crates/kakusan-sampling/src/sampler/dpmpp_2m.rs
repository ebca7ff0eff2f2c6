//! DPM-Solver++(2M) (k-diffusion `sample_dpmpp_2m`): the deterministic second-order
//! multistep solver in log sigma, one model call per step; the first and the last step are
//! first order.

use super::{check_sigmas, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use candle_core::Tensor;

/// DPM++ 2M sampling from `x` at `sigmas[0]`.
pub fn sample_dpmpp_2m(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let mut old_denoised: Option<Tensor> = None;
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
        // In log sigma (t = -ln sigma); sigma_next = 0 gives h = inf, exp(-h) - 1 = -1 and a
        // ratio of 0: the step lands on denoised. `lin(a, p, b, q)` is `p a + q b`.
        let t = -sigma.ln();
        let t_next = -sigma_next.ln();
        let h = t_next - t;
        let ratio = sigma_next / sigma;
        let coeff = -(-h).exp_m1();
        x = match &old_denoised {
            Some(old) if sigma_next > 0.0 => {
                let h_last = t + sigmas[step - 1].ln();
                let r = h_last / h;
                let denoised_d = lin(&denoised, 1.0 + 1.0 / (2.0 * r), old, -1.0 / (2.0 * r))?;
                lin(&x, ratio, &denoised_d, coeff)?
            }
            _ => lin(&x, ratio, &denoised, coeff)?,
        };
        old_denoised = Some(denoised);
    }
    Ok(x)
}
