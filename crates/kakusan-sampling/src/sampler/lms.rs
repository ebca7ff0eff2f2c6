//! Linear multistep (k-diffusion `sample_lms`, order 4 by default): the slope at the current
//! and up to three earlier levels, combined with the integrals of their Lagrange basis
//! polynomials over the step in sigma.

use super::{check_sigmas, to_d, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use candle_core::Tensor;

/// k-diffusion's default order.
pub const DEFAULT_ORDER: usize = 4;

/// The integral over `[t[i], t[i + 1]]` of the Lagrange basis polynomial of node `t[i - j]`
/// among the nodes `t[i], ..., t[i - order + 1]` (k-diffusion's `linear_multistep_coeff`,
/// which integrates numerically with `scipy.integrate.quad`; the polynomial has degree
/// < 4, so 4-point Gauss-Legendre is exact up to rounding).
pub fn linear_multistep_coeff(order: usize, t: &[f64], i: usize, j: usize) -> Result<f64> {
    if order == 0 || order - 1 > i || i + 1 >= t.len() || j >= order {
        return Err(Error::InvalidSchedule(format!(
            "linear multistep order {order} too high for step {i}"
        )));
    }
    let basis = |tau: f64| {
        (0..order)
            .filter(|&k| k != j)
            .map(|k| (tau - t[i - k]) / (t[i - j] - t[i - k]))
            .product::<f64>()
    };
    // 4-point Gauss-Legendre nodes and weights on [-1, 1].
    const NODES: [f64; 4] = [
        -0.861_136_311_594_052_6,
        -0.339_981_043_584_856_3,
        0.339_981_043_584_856_3,
        0.861_136_311_594_052_6,
    ];
    const WEIGHTS: [f64; 4] = [
        0.347_854_845_137_453_8,
        0.652_145_154_862_546_1,
        0.652_145_154_862_546_1,
        0.347_854_845_137_453_8,
    ];
    let (a, b) = (t[i], t[i + 1]);
    let half = 0.5 * (b - a);
    let mid = 0.5 * (a + b);
    Ok(NODES
        .iter()
        .zip(WEIGHTS)
        .map(|(&x, w)| w * basis(mid + half * x))
        .sum::<f64>()
        * half)
}

/// LMS sampling from `x` at `sigmas[0]` with the given order (k-diffusion: 4).
pub fn sample_lms(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    order: usize,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    if order == 0 {
        return Err(Error::InvalidSchedule(
            "LMS order must be at least 1".into(),
        ));
    }
    // k-diffusion integrates over the float32 sigmas it holds.
    let t: Vec<f64> = sigmas.iter().map(|&s| s as f32 as f64).collect();
    let total = sigmas.len() - 1;
    let mut ds: Vec<Tensor> = Vec::with_capacity(order + 1);
    for step in 0..total {
        let sigma = sigmas[step];
        let denoised = denoiser.denoise(&x, sigma)?;
        ds.push(to_d(&x, &denoised, sigma)?);
        if ds.len() > order {
            ds.remove(0);
        }
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next: sigmas[step + 1],
            x: &x,
            denoised: &denoised,
        });
        let cur_order = (step + 1).min(order);
        let mut update: Option<Tensor> = None;
        for (j, d) in ds.iter().rev().enumerate().take(cur_order) {
            let term = d.affine(linear_multistep_coeff(cur_order, &t, step, j)?, 0.0)?;
            update = Some(match update {
                None => term,
                Some(u) => (u + term)?,
            });
        }
        if let Some(u) = update {
            x = (&x + u)?;
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_order_coefficient_is_the_step() {
        let t = [10.0, 6.0, 3.0, 1.0, 0.0];
        assert!((linear_multistep_coeff(1, &t, 0, 0).unwrap() + 4.0).abs() < 1e-12);
        // Coefficients of any order sum to the step length (they integrate a partition of 1).
        let sum: f64 = (0..3)
            .map(|j| linear_multistep_coeff(3, &t, 3, j).unwrap())
            .sum();
        assert!((sum + 1.0).abs() < 1e-12, "{sum}");
        assert!(linear_multistep_coeff(4, &t, 2, 0).is_err());
    }
}
