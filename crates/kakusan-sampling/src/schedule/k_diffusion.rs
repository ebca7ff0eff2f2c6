//! k-diffusion's schedules over a model's training table, as A1111 and ComfyUI use them:
//! `normal` (`DiscreteSchedule.get_sigmas(n)`), `karras` and `exponential`. All end with a
//! final 0, start the sample at `noise * sigmas[0]`, map sigma to the model timestep by
//! log-sigma interpolation, and follow k-diffusion's noise-drawing habits.

use super::{NoiseConvention, SigmaSchedule};
use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Error, Result};
use crate::reference_numerics::torch_linspace_f32;

/// Karras et al.'s recommended rho.
pub const KARRAS_RHO: f64 = 7.0;

pub(crate) fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::InvalidSchedule("steps must be at least 1".into()));
    }
    Ok(())
}

/// Rounds to float32 (the references hold sigmas in float32 tensors).
pub(crate) fn f32_value(v: f64) -> f64 {
    v as f32 as f64
}

/// Finishes a schedule whose timesteps follow from its sigmas (log-sigma inverse).
pub(crate) fn finish_with_timesteps(table: &DiscreteSchedule, sigmas: Vec<f64>) -> SigmaSchedule {
    let timesteps = sigmas
        .iter()
        .map(|&s| table.sigma_to_t(s, Interpolation::Log))
        .collect();
    finish(table, sigmas, timesteps)
}

pub(crate) fn finish(
    table: &DiscreteSchedule,
    mut sigmas: Vec<f64>,
    timesteps: Vec<f64>,
) -> SigmaSchedule {
    sigmas.push(0.0);
    SigmaSchedule {
        init_noise_scale: sigmas[0],
        sigmas,
        timesteps,
        interpolation: Interpolation::Log,
        output_scale: 1.0,
        convention: NoiseConvention::KDiffusion,
        step_targets: None,
        table: table.clone(),
    }
}

/// k-diffusion's "normal" discretisation: t = linspace(t_max, 0, steps) (float32, as
/// `torch.linspace`), sigma(t) by log-sigma interpolation, then 0.
pub fn normal(table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    let timesteps: Vec<f64> = torch_linspace_f32(table.t_max(), 0.0, steps)
        .into_iter()
        .map(f64::from)
        .collect();
    let sigmas = timesteps.iter().map(|&t| table.t_to_sigma_f32(t)).collect();
    Ok(finish(table, sigmas, timesteps))
}

/// Karras et al. (2022) between the table's sigma_min and sigma_max (A1111's default since
/// 1.x; its old option used 0.1 .. 10, see [`karras_between`]).
pub fn karras(table: &DiscreteSchedule, steps: usize, rho: f64) -> Result<SigmaSchedule> {
    karras_between(table, steps, table.sigma_min(), table.sigma_max(), rho)
}

/// Karras et al.'s schedule between explicit bounds:
/// `(max^(1/rho) + ramp * (min^(1/rho) - max^(1/rho)))^rho`, ramp = linspace(0, 1, steps).
pub fn karras_between(
    table: &DiscreteSchedule,
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    check_bounds(sigma_min, sigma_max)?;
    if rho <= 0.0 || !rho.is_finite() {
        return Err(Error::InvalidSchedule(format!(
            "rho must be positive, got {rho}"
        )));
    }
    let mut sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho);
    sigmas.pop();
    let timesteps = sigmas
        .iter()
        .map(|&s| table.sigma_to_t(s, Interpolation::Log))
        .collect();
    Ok(finish(table, sigmas, timesteps))
}

/// k-diffusion's `get_sigmas_karras(n, sigma_min, sigma_max, rho)`: `n` float32 levels
/// from sigma_max down to sigma_min, then 0 (`n + 1` values).
pub fn karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    // Python floats for the bounds, float32 tensor arithmetic for the rest (each operation
    // rounded), as k-diffusion computes it.
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    let (base, span) = (max_inv as f32, (min_inv - max_inv) as f32);
    let mut sigmas: Vec<f64> = torch_linspace_f32(0.0, 1.0, n)
        .into_iter()
        .map(|r| f32_value(((base + r * span) as f64).powf(rho)))
        .collect();
    sigmas.push(0.0);
    sigmas
}

/// Evenly spaced in log sigma from the table's sigma_max down to sigma_min, then 0.
pub fn exponential(table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    exponential_between(table, steps, table.sigma_min(), table.sigma_max())
}

/// The exponential schedule between explicit bounds.
pub fn exponential_between(
    table: &DiscreteSchedule,
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
) -> Result<SigmaSchedule> {
    check_steps(steps)?;
    check_bounds(sigma_min, sigma_max)?;
    let sigmas: Vec<f64> = torch_linspace_f32(sigma_max.ln(), sigma_min.ln(), steps)
        .into_iter()
        .map(|l| f32_value((l as f64).exp()))
        .collect();
    let timesteps = sigmas
        .iter()
        .map(|&s| table.sigma_to_t(s, Interpolation::Log))
        .collect();
    Ok(finish(table, sigmas, timesteps))
}

fn check_bounds(sigma_min: f64, sigma_max: f64) -> Result<()> {
    if !(sigma_min > 0.0 && sigma_max >= sigma_min && sigma_max.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "need 0 < sigma_min <= sigma_max, got {sigma_min} and {sigma_max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DiscreteSchedule {
        DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap()
    }

    #[test]
    fn normal_starts_at_sigma_max_and_ends_at_zero() {
        let t = table();
        let s = normal(&t, 20).unwrap();
        s.validate().unwrap();
        assert_eq!(s.steps(), 20);
        assert_eq!(s.timesteps[0], 999.0);
        assert_eq!(s.timesteps[19], 0.0);
        // exp(float32 log(sigma)) comes back within a float32 ulp (k-diffusion gives
        // 14.614643 for the table's 14.614642).
        assert!((s.sigmas[0] / t.sigma_max() - 1.0).abs() < 2e-7);
        assert!((s.sigmas[19] / t.sigma_min() - 1.0).abs() < 2e-7);
        assert_eq!(s.sigmas[20], 0.0);
        assert_eq!(s.init_noise_scale, s.sigmas[0]);
        assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn karras_and_exponential_span_the_table() {
        let t = table();
        for s in [
            karras(&t, 7, KARRAS_RHO).unwrap(),
            exponential(&t, 7).unwrap(),
        ] {
            s.validate().unwrap();
            assert!((s.sigmas[0] / t.sigma_max() - 1.0).abs() < 1e-6);
            assert!((s.sigmas[6] / t.sigma_min() - 1.0).abs() < 1e-6);
            assert!((s.timesteps[0] - 999.0).abs() < 1e-3);
            assert!(s.timesteps[6].abs() < 1e-3);
        }
    }

    #[test]
    fn zero_steps_is_an_error() {
        assert!(normal(&table(), 0).is_err());
        assert!(karras_between(&table(), 5, 1.0, 0.5, 7.0).is_err());
    }
}
