//! The schedules A1111 (1.9+) and ComfyUI added beside k-diffusion's, over a model's
//! training table, restated from their definitions:
//! - `polyexponential` (k-diffusion's `get_sigmas_polyexponential`, rho = 1: A1111's
//!   "Polyexponential"): `exp(ramp^rho (ln max - ln min) + ln min)`, ramp = linspace(1, 0);
//! - `sgm_uniform` (ComfyUI's `normal_scheduler(sgm=True)`): `steps + 1` timesteps evenly
//!   from t_max to 0, the last dropped, log-sigma interpolation;
//! - `simple` (ComfyUI): every `n / steps`-th training sigma from the top;
//! - `ddim_uniform` (ComfyUI, A1111's "DDIM"): training sigmas at t = 1, 1 + n // steps, ...,
//!   reversed (can give one step more than asked, as ComfyUI does);
//! - `beta` (ComfyUI, Lee et al. 2024): timesteps at the Beta(0.6, 0.6) quantiles of
//!   `1 - linspace(0, 1, steps, endpoint=False)`, rounded, repeats dropped.
//!
//! All end with a final 0 and follow k-diffusion's conventions (log-sigma interpolation,
//! start at `noise * sigmas[0]`).

use super::k_diffusion::{check_steps, f32_value, finish_with_timesteps};
use super::SigmaSchedule;
use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Error, Result};
use crate::reference_numerics::torch_linspace_f32;

/// k-diffusion's `get_sigmas_polyexponential(n, sigma_min, sigma_max, rho)`: `n` levels, then 0.
pub fn polyexponential_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (lmin, lmax) = (sigma_min.ln(), sigma_max.ln());
    let mut sigmas: Vec<f64> = torch_linspace_f32(1.0, 0.0, n)
        .into_iter()
        .map(|r| {
            let ramp = (r as f64).powf(rho) as f32 as f64;
            f32_value((ramp * (lmax - lmin) + lmin).exp())
        })
        .collect();
    sigmas.push(0.0);
    sigmas
}

/// Polyexponential between the table's sigma_min and sigma_max (A1111: rho = 1, which is
/// the exponential schedule).
pub fn polyexponential(table: &DiscreteSchedule, steps: usize, rho: f64) -> Result<SigmaSchedule> {
    polyexponential_between(table, steps, table.sigma_min(), table.sigma_max(), rho)
}

/// Polyexponential between explicit bounds.
pub fn polyexponential_between(
    table: &DiscreteSchedule,
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    if !(sigma_min > 0.0 && sigma_max >= sigma_min && sigma_max.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "need 0 < sigma_min <= sigma_max, got {sigma_min} and {sigma_max}"
        )));
    }
    if !(rho > 0.0 && rho.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "rho must be positive, got {rho}"
        )));
    }
    let mut sigmas = polyexponential_sigmas(steps, sigma_min, sigma_max, rho);
    sigmas.pop();
    Ok(finish_with_timesteps(table, sigmas))
}

/// ComfyUI's `sgm_uniform`.
pub fn sgm_uniform(table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    let mut timesteps: Vec<f64> = torch_linspace_f32(table.t_max(), 0.0, steps + 1)
        .into_iter()
        .map(f64::from)
        .collect();
    timesteps.pop();
    let sigmas = timesteps
        .iter()
        .map(|&t| f32_value(table.t_to_sigma(t, Interpolation::Log)))
        .collect();
    Ok(super::k_diffusion::finish(table, sigmas, timesteps))
}

/// ComfyUI's `simple`: `sigmas[-(1 + floor(i * n / steps))]` for i < steps.
pub fn simple(table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    let n = table.len();
    let ss = n as f64 / steps as f64;
    let timesteps: Vec<f64> = (0..steps)
        .map(|i| (n - 1 - ((i as f64 * ss) as usize).min(n - 1)) as f64)
        .collect();
    let sigmas = timesteps
        .iter()
        .map(|&t| table.sigmas()[t as usize])
        .collect();
    Ok(super::k_diffusion::finish(table, sigmas, timesteps))
}

/// ComfyUI's `ddim_uniform`: t = 1, 1 + n // steps, ... below n, reversed.
pub fn ddim_uniform(table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    let n = table.len();
    let ss = (n / steps).max(1);
    let mut timesteps: Vec<f64> = (1..n).step_by(ss).map(|t| t as f64).collect();
    timesteps.reverse();
    let sigmas = timesteps
        .iter()
        .map(|&t| table.sigmas()[t as usize])
        .collect();
    Ok(super::k_diffusion::finish(table, sigmas, timesteps))
}

/// ComfyUI's defaults for the beta schedule.
pub const BETA_ALPHA: f64 = 0.6;
pub const BETA_BETA: f64 = 0.6;

/// ComfyUI's `beta` schedule with Beta(alpha, beta) quantiles.
pub fn beta(
    table: &DiscreteSchedule,
    steps: usize,
    alpha: f64,
    beta: f64,
) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    if !(alpha > 0.0 && beta > 0.0 && alpha.is_finite() && beta.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "beta schedule parameters must be positive, got {alpha} and {beta}"
        )));
    }
    let total = (table.len() - 1) as f64;
    let mut timesteps = Vec::new();
    let mut last = -1.0;
    for i in 0..steps {
        // numpy.linspace(0, 1, steps, endpoint=False)[i] = i / steps.
        let q = 1.0 - i as f64 / steps as f64;
        let t = round_half_even(beta_ppf(q, alpha, beta) * total);
        if t != last {
            timesteps.push(t);
        }
        last = t;
    }
    let sigmas = timesteps
        .iter()
        .map(|&t| table.sigmas()[t as usize])
        .collect();
    Ok(super::k_diffusion::finish(table, sigmas, timesteps))
}

/// numpy's `rint`: round half to even.
fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

/// ln Gamma by Lanczos (g = 7, n = 9), good to ~1e-15 relative for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..1000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(1.0 - x, b, a) / b
    }
}

/// The Beta(a, b) quantile function (scipy's `beta.ppf`), by bisection to full precision.
pub fn beta_ppf(q: f64, a: f64, b: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if beta_cdf(mid, a, b) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DiscreteSchedule {
        DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap()
    }

    #[test]
    fn beta_quantiles_are_symmetric_and_exact_at_the_middle() {
        assert!((beta_ppf(0.5, 0.6, 0.6) - 0.5).abs() < 1e-12);
        let q = beta_ppf(0.2, 0.6, 0.6);
        assert!((beta_ppf(0.8, 0.6, 0.6) - (1.0 - q)).abs() < 1e-12);
        assert!((beta_cdf(q, 0.6, 0.6) - 0.2).abs() < 1e-12);
        // Beta(1, 1) is uniform.
        assert!((beta_ppf(0.3, 1.0, 1.0) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn schedules_have_the_asked_steps() {
        let t = table();
        for s in [
            sgm_uniform(&t, 10).unwrap(),
            simple(&t, 10).unwrap(),
            ddim_uniform(&t, 10).unwrap(),
            beta(&t, 10, BETA_ALPHA, BETA_BETA).unwrap(),
            polyexponential(&t, 10, 1.0).unwrap(),
        ] {
            s.validate().unwrap();
            assert_eq!(s.steps(), 10);
            assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]), "{:?}", s.sigmas);
            assert_eq!(s.sigmas[10], 0.0);
        }
        assert_eq!(simple(&t, 10).unwrap().timesteps[0], 999.0);
        assert_eq!(ddim_uniform(&t, 10).unwrap().timesteps[0], 901.0);
        // ComfyUI's ddim_uniform gives 31 steps for 30 (1000 // 30 = 33).
        assert_eq!(ddim_uniform(&t, 30).unwrap().steps(), 31);
    }
}
