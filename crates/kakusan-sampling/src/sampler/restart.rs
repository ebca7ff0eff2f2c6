//! Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative
//! Processes") as A1111 runs it: Heun steps down a Karras schedule; once the sample reaches
//! the level nearest 0.1, it is pushed back up to the level nearest 2 with fresh noise and
//! walked down again (Heun steps on a short Karras schedule), once or twice.
//!
//! A1111's automatic plan, for `n = steps` (the schedule's length minus one):
//! - `n < 20`: no restarts (plain Heun steps over the given schedule);
//! - `20 <= n < 36`: the schedule is replaced by a Karras schedule of `n - 9` levels between
//!   the given schedule's smallest non-zero and largest sigma, and one restart of 9 steps;
//! - `n >= 36`: `n - 2 (n / 4)` levels and two restarts of `n / 4` steps.
//!
//! Every Heun step calls the model twice (once for a step to 0), so the model is called
//! about twice per planned step.

use super::{check_sigmas, euler_step, to_d, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::schedule::k_diffusion::karras_sigmas;
use candle_core::Tensor;

/// Index of the sigma nearest `target` (the first one on ties, as `torch.argmin`).
fn nearest(sigmas: &[f64], target: f64) -> usize {
    let mut best = 0;
    for (i, s) in sigmas.iter().enumerate() {
        // float32, as the reference's tensor arithmetic.
        let d = ((*s as f32) - target as f32).abs();
        let b = ((sigmas[best] as f32) - target as f32).abs();
        if d < b {
            best = i;
        }
    }
    best
}

/// The (from, to) pairs A1111's restart sampler walks for `sigmas`.
pub fn restart_plan(sigmas: &[f64]) -> Vec<(f64, f64)> {
    let steps = sigmas.len().saturating_sub(1);
    let mut sigmas = sigmas.to_vec();
    // (index of the restart's lowest level, steps + 1, times, upper level)
    let mut restart: Option<(usize, usize, usize, f64)> = None;
    if steps >= 20 && sigmas.len() >= 2 {
        let (mut restart_steps, mut restart_times) = (9, 1);
        if steps >= 36 {
            restart_steps = steps / 4;
            restart_times = 2;
        }
        sigmas = karras_sigmas(
            steps - restart_steps * restart_times,
            sigmas[sigmas.len() - 2],
            sigmas[0],
            7.0,
        );
        restart = Some((nearest(&sigmas, 0.1), restart_steps + 1, restart_times, 2.0));
    }
    let mut plan = Vec::new();
    for i in 0..sigmas.len().saturating_sub(1) {
        plan.push((sigmas[i], sigmas[i + 1]));
        if let Some((min_idx, restart_steps, times, restart_max)) = restart {
            if i + 1 == min_idx {
                let max_idx = nearest(&sigmas, restart_max);
                if max_idx < min_idx {
                    let mut levels =
                        karras_sigmas(restart_steps, sigmas[min_idx], sigmas[max_idx], 7.0);
                    levels.pop();
                    for _ in 0..times {
                        plan.extend(levels.windows(2).map(|w| (w[0], w[1])));
                    }
                }
            }
        }
    }
    plan
}

/// Restart sampling from `x` at `sigmas[0]` (see the module docs for the plan). The
/// callback's `total` is the number of planned Heun steps.
pub fn sample_restart(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    s_noise: f64,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    let plan = restart_plan(sigmas);
    let total = plan.len();
    let mut last_sigma: Option<f64> = None;
    for (step, &(old_sigma, new_sigma)) in plan.iter().enumerate() {
        match last_sigma {
            Some(last) if last < old_sigma => {
                let eps = noise.noise_like(&x)?;
                let (o, l) = (old_sigma as f32, last as f32);
                let amount = ((o * o - l * l) as f64).sqrt() * s_noise;
                x = (&x + eps.affine(amount, 0.0)?)?;
            }
            _ => {}
        }
        let denoised = denoiser.denoise(&x, old_sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma: old_sigma,
            sigma_next: new_sigma,
            x: &x,
            denoised: &denoised,
        });
        if new_sigma == 0.0 {
            x = euler_step(&x, &denoised, old_sigma, new_sigma)?;
        } else {
            let d = to_d(&x, &denoised, old_sigma)?;
            let dt = new_sigma - old_sigma;
            let x_2 = (&x + d.affine(dt, 0.0)?)?;
            let denoised_2 = denoiser.denoise(&x_2, new_sigma)?;
            let d_2 = to_d(&x_2, &denoised_2, new_sigma)?;
            x = (&x + ((d + d_2)? / 2.0)?.affine(dt, 0.0)?)?;
        }
        last_sigma = Some(new_sigma);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_a1111() {
        let short: Vec<f64> = (0..11).map(|i| 10.0 - i as f64).collect();
        assert_eq!(restart_plan(&short).len(), 10, "no restart below 20 steps");
        let mut sigmas: Vec<f64> = (0..20).map(|i| 14.6 * 0.7f64.powi(i)).collect();
        sigmas.push(0.0);
        let plan = restart_plan(&sigmas);
        // 11 levels + 0 -> 11 steps, then one restart of 9 steps.
        assert_eq!(plan.len(), 11 + 9);
        let jump = plan.windows(2).position(|w| w[1].0 > w[0].1).unwrap();
        assert!(plan[jump + 1].0 > 1.0 && plan[jump].1 < 0.5, "{plan:?}");
    }
}
