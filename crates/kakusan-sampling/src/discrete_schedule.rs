//! The model's discrete training schedule: betas, cumulative alphas and the sigma of each
//! of the (usually 1000) training timesteps, and the maps between sigma and timestep.
//!
//! alphas_cumprod is computed in f32 as torch computes it (diffusers' betas are an f32
//! `linspace(sqrt(start), sqrt(end))**2` and `cumprod` runs in f32), so sigmas equal the
//! references' to the last bit of f32; everything after is f64.

use crate::error::{Result, SamplingError};
use crate::scheduler_config::SchedulerConfig;

/// How a fractional timestep maps to a sigma between two training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Linear in log(sigma): k-diffusion, AUTOMATIC1111, ComfyUI.
    Log,
    /// Linear in sigma: diffusers' `np.interp` in its Euler-family schedulers.
    Linear,
}

#[derive(Debug, Clone)]
pub struct DiscreteSchedule {
    pub alphas_cumprod: Vec<f64>,
    pub sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
}

impl DiscreteSchedule {
    pub fn from_config(cfg: &SchedulerConfig) -> Result<Self> {
        cfg.check()?;
        let n = cfg.num_train_timesteps;
        let betas: Vec<f32> = match cfg.beta_schedule.as_str() {
            "scaled_linear" => {
                linspace_f32(cfg.beta_start.sqrt() as f32, cfg.beta_end.sqrt() as f32, n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            "linear" => linspace_f32(cfg.beta_start as f32, cfg.beta_end as f32, n),
            other => {
                return Err(SamplingError::Config(format!(
                    "beta_schedule {other:?} is not supported (scaled_linear, linear)"
                )))
            }
        };
        let mut acc = 1.0f32;
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc as f64
            })
            .collect();
        // diffusers: ((1 - a) / a) ** 0.5 on the f32 tensor.
        let sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&a| {
                let a = a as f32;
                (((1.0 - a) / a).sqrt()) as f64
            })
            .collect();
        let log_sigmas = sigmas.iter().map(|s| s.ln()).collect();
        Ok(Self {
            alphas_cumprod,
            sigmas,
            log_sigmas,
        })
    }

    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The sigma at a (possibly fractional) timestep.
    pub fn t_to_sigma(&self, t: f64, interp: Interpolation) -> f64 {
        let last = (self.len() - 1) as f64;
        let t = t.clamp(0.0, last);
        let lo = t.floor() as usize;
        let hi = (lo + 1).min(self.len() - 1);
        let w = t - lo as f64;
        match interp {
            Interpolation::Log => ((1.0 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp(),
            Interpolation::Linear => (1.0 - w) * self.sigmas[lo] + w * self.sigmas[hi],
        }
    }

    /// The (fractional) timestep whose sigma is `sigma`: the inverse of `t_to_sigma`.
    pub fn sigma_to_t(&self, sigma: f64, interp: Interpolation) -> f64 {
        let table = match interp {
            Interpolation::Log => &self.log_sigmas,
            Interpolation::Linear => &self.sigmas,
        };
        let v = match interp {
            Interpolation::Log => sigma.ln(),
            Interpolation::Linear => sigma,
        };
        // sigmas grow with t; find lo with table[lo] <= v <= table[lo + 1].
        let n = table.len();
        let idx = table.partition_point(|&s| s <= v);
        let lo = idx.saturating_sub(1).min(n - 2);
        let hi = lo + 1;
        let w = ((v - table[lo]) / (table[hi] - table[lo])).clamp(0.0, 1.0);
        lo as f64 + w
    }
}

fn linspace_f32(a: f32, b: f32, n: usize) -> Vec<f32> {
    // torch.linspace in f32: start + i * step, with the second half computed from the end.
    let step = (b - a) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                a + step * i as f32
            } else {
                b - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_sigmas_span_the_known_range() {
        let s = DiscreteSchedule::from_config(&SchedulerConfig::default()).unwrap();
        assert!((s.sigma_min() - 0.0292).abs() < 1e-3, "{}", s.sigma_min());
        assert!((s.sigma_max() - 14.6146).abs() < 1e-3, "{}", s.sigma_max());
    }

    #[test]
    fn sigma_to_t_inverts_t_to_sigma() {
        let s = DiscreteSchedule::from_config(&SchedulerConfig::default()).unwrap();
        for interp in [Interpolation::Log, Interpolation::Linear] {
            for t in [0.0, 1.0, 417.25, 500.0, 998.5, 999.0] {
                let back = s.sigma_to_t(s.t_to_sigma(t, interp), interp);
                assert!((back - t).abs() < 1e-9, "{interp:?} {t} {back}");
            }
        }
    }
}
