//! DPM-Solver (Lu et al. 2022) as k-diffusion's `DPMSolver` runs it: "DPM fast" (fixed
//! steps of orders 3, ..., 3, 2/1 spending exactly `n` model calls, `sample_dpm_fast`) and
//! "DPM adaptive" (embedded 2/3-order pairs with a PID step-size controller,
//! `sample_dpm_adaptive`). Both work in t = -ln(sigma) between sigma_max and sigma_min and
//! ignore the schedule's other levels; the final sample stays at sigma_min (no final step
//! to 0), as in the references.
//!
//! The time grid and the step sizes are float32 (k-diffusion holds t in float32 tensors).

use super::euler_ancestral::ancestral_step;
use super::{lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::noise::NoiseSource;
use crate::reference_numerics::torch_linspace_f32;
use candle_core::Tensor;

/// Options of both DPM-Solver samplers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmSolverOptions {
    /// Ancestral noise amount (k-diffusion default 0).
    pub eta: f64,
    /// Scale of the noise.
    pub s_noise: f64,
}

impl Default for DpmSolverOptions {
    fn default() -> Self {
        Self {
            eta: 0.0,
            s_noise: 1.0,
        }
    }
}

/// The adaptive sampler's controller settings (k-diffusion's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveOptions {
    /// 2 (DPM-Solver-12) or 3 (DPM-Solver-23).
    pub order: usize,
    pub rtol: f64,
    pub atol: f64,
    pub h_init: f64,
    pub pcoeff: f64,
    pub icoeff: f64,
    pub dcoeff: f64,
    pub accept_safety: f64,
}

impl Default for AdaptiveOptions {
    fn default() -> Self {
        Self {
            order: 3,
            rtol: 0.05,
            atol: 0.0078,
            h_init: 0.05,
            pcoeff: 0.0,
            icoeff: 1.0,
            dcoeff: 0.0,
            accept_safety: 0.81,
        }
    }
}

fn sigma_of(t: f64) -> f64 {
    (-t).exp()
}

/// The solver: the denoiser as an eps model in t = -ln(sigma), counting model calls.
struct Solver<'a> {
    denoiser: &'a dyn Denoiser,
    calls: usize,
}

impl Solver<'_> {
    fn eps(&mut self, x: &Tensor, t: f64) -> Result<Tensor> {
        let sigma = sigma_of(t);
        let denoised = self.denoiser.denoise(x, sigma)?;
        self.calls += 1;
        Ok(((x - denoised)? / sigma)?)
    }

    fn step_1(&mut self, x: &Tensor, eps: &Tensor, t: f64, t_next: f64) -> Result<Tensor> {
        let h = t_next - t;
        lin(x, 1.0, eps, -sigma_of(t_next) * h.exp_m1())
    }

    /// The eps at `t + r1 h` (k-diffusion's cached "eps_r1": DPM adaptive's order-2 and
    /// order-3 steps share it, both at r1 = 1/3).
    fn eps_r1(&mut self, x: &Tensor, eps: &Tensor, t: f64, h: f64, r1: f64) -> Result<Tensor> {
        let s1 = t + r1 * h;
        let u1 = lin(x, 1.0, eps, -sigma_of(s1) * (r1 * h).exp_m1())?;
        self.eps(&u1, s1)
    }

    fn step_2(
        &mut self,
        x: &Tensor,
        eps: &Tensor,
        t: f64,
        t_next: f64,
        r1: f64,
    ) -> Result<(Tensor, Tensor)> {
        let h = t_next - t;
        let eps_r1 = self.eps_r1(x, eps, t, h, r1)?;
        let sn = sigma_of(t_next);
        let x_2 = lin(x, 1.0, eps, -sn * h.exp_m1())?;
        let x_2 = lin(&x_2, 1.0, &(&eps_r1 - eps)?, -sn / (2.0 * r1) * h.exp_m1())?;
        Ok((x_2, eps_r1))
    }

    fn step_3(
        &mut self,
        x: &Tensor,
        eps: &Tensor,
        t: f64,
        t_next: f64,
        cached_eps_r1: Option<Tensor>,
    ) -> Result<Tensor> {
        let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
        let h = t_next - t;
        let s2 = t + r2 * h;
        let eps_r1 = match cached_eps_r1 {
            Some(e) => e,
            None => self.eps_r1(x, eps, t, h, r1)?,
        };
        let u2 = lin(x, 1.0, eps, -sigma_of(s2) * (r2 * h).exp_m1())?;
        let u2 = lin(
            &u2,
            1.0,
            &(eps_r1 - eps)?,
            -sigma_of(s2) * (r2 / r1) * ((r2 * h).exp_m1() / (r2 * h) - 1.0),
        )?;
        let eps_r2 = self.eps(&u2, s2)?;
        let sn = sigma_of(t_next);
        let x_3 = lin(x, 1.0, eps, -sn * h.exp_m1())?;
        lin(
            &x_3,
            1.0,
            &(eps_r2 - eps)?,
            -sn / r2 * (h.exp_m1() / h - 1.0),
        )
    }

    /// The ancestral split of a step from t to t_next: (t_next_, su).
    fn ancestral(&self, t: f64, t_next: f64, t_end: f64, eta: f64) -> (f64, f64) {
        if eta == 0.0 {
            return (t_next, 0.0);
        }
        let (sd, _) = ancestral_step(sigma_of(t), sigma_of(t_next), eta);
        let t_next_ = t_end.min(-sd.ln());
        let su = (sigma_of(t_next).powi(2) - sigma_of(t_next_).powi(2))
            .max(0.0)
            .sqrt();
        (t_next_, su)
    }
}

fn check_range(sigma_min: f64, sigma_max: f64) -> Result<()> {
    if !(sigma_min > 0.0 && sigma_max > sigma_min && sigma_max.is_finite()) {
        return Err(Error::InvalidSchedule(format!(
            "DPM-Solver needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}"
        )));
    }
    Ok(())
}

/// DPM fast: `n` model calls in fixed steps from sigma_max to sigma_min. Noise (times
/// `su`, 0 without eta) is drawn after every step, as k-diffusion does.
#[allow(clippy::too_many_arguments)]
pub fn sample_dpm_fast(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigma_min: f64,
    sigma_max: f64,
    n: usize,
    noise: &mut dyn NoiseSource,
    opts: &DpmSolverOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_range(sigma_min, sigma_max)?;
    if n == 0 {
        return Err(Error::InvalidSchedule(
            "DPM fast needs at least one step".into(),
        ));
    }
    let t_start = (-(sigma_max as f32).ln()) as f64;
    let t_end = (-(sigma_min as f32).ln()) as f64;
    let m = n / 3 + 1;
    let ts: Vec<f64> = torch_linspace_f32(t_start, t_end, m + 1)
        .into_iter()
        .map(f64::from)
        .collect();
    let orders: Vec<usize> = if n.is_multiple_of(3) {
        let mut o = vec![3; m.saturating_sub(2)];
        o.extend([2, 1]);
        o
    } else {
        let mut o = vec![3; m - 1];
        o.push(n % 3);
        o
    };
    let mut solver = Solver { denoiser, calls: 0 };
    let total = orders.len();
    for (i, &order) in orders.iter().enumerate() {
        let (t, t_next) = (ts[i], ts[i + 1]);
        let (t_next_, su) = solver.ancestral(t, t_next, t_end, opts.eta);
        let eps = solver.eps(&x, t)?;
        let denoised = lin(&x, 1.0, &eps, -sigma_of(t))?;
        callback(&StepInfo {
            step: i,
            total,
            sigma: sigma_of(t),
            sigma_next: sigma_of(t_next),
            x: &x,
            denoised: &denoised,
        });
        x = match order {
            1 => solver.step_1(&x, &eps, t, t_next_)?,
            2 => solver.step_2(&x, &eps, t, t_next_, 0.5)?.0,
            _ => solver.step_3(&x, &eps, t, t_next_, None)?,
        };
        let z = noise.noise_between(&x, sigma_of(t), sigma_of(t_next))?;
        x = (&x + z.affine(su * opts.s_noise, 0.0)?)?;
    }
    Ok(x)
}

/// What the adaptive sampler did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdaptiveInfo {
    pub steps: usize,
    pub nfe: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// Safety bound on attempted steps (the reference has none; a pathological model could
/// otherwise loop for ever).
const MAX_ADAPTIVE_STEPS: usize = 100_000;

/// DPM adaptive: error-controlled steps from sigma_max to sigma_min. The callback's `step`
/// counts attempts and `total` is 0 (unknown in advance).
#[allow(clippy::too_many_arguments)]
pub fn sample_dpm_adaptive(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigma_min: f64,
    sigma_max: f64,
    noise: &mut dyn NoiseSource,
    opts: &DpmSolverOptions,
    adaptive: &AdaptiveOptions,
    callback: &mut Callback<'_>,
) -> Result<(Tensor, AdaptiveInfo)> {
    check_range(sigma_min, sigma_max)?;
    if !matches!(adaptive.order, 2 | 3) {
        return Err(Error::InvalidSchedule(
            "DPM adaptive order must be 2 or 3".into(),
        ));
    }
    let t_start = -(sigma_max as f32).ln();
    let t_end = -(sigma_min as f32).ln();
    let mut solver = Solver { denoiser, calls: 0 };
    // PID controller (k-diffusion's PIDStepSizeController).
    let order = if opts.eta != 0.0 {
        1.5
    } else {
        adaptive.order as f64
    };
    let b1 = (adaptive.pcoeff + adaptive.icoeff + adaptive.dcoeff) / order;
    let b2 = -(adaptive.pcoeff + 2.0 * adaptive.dcoeff) / order;
    let b3 = adaptive.dcoeff / order;
    let mut h = adaptive.h_init.abs();
    let mut errs: Vec<f64> = Vec::new();

    let mut s = t_start;
    let mut x_prev = x.clone();
    let mut info = AdaptiveInfo::default();
    let numel = x.elem_count() as f64;
    while (s as f64) < t_end as f64 - 1e-5 {
        if info.steps >= MAX_ADAPTIVE_STEPS {
            return Err(Error::InvalidSchedule(
                "DPM adaptive did not converge (too many steps)".into(),
            ));
        }
        let t = t_end.min(s + h as f32);
        let (s64, t64) = (s as f64, t as f64);
        let (t_, su) = solver.ancestral(s64, t64, t_end as f64, opts.eta);
        let eps = solver.eps(&x, s64)?;
        let denoised = lin(&x, 1.0, &eps, -sigma_of(s64))?;
        let (x_low, x_high) = if adaptive.order == 2 {
            let low = solver.step_1(&x, &eps, s64, t_)?;
            let (high, _) = solver.step_2(&x, &eps, s64, t_, 0.5)?;
            (low, high)
        } else {
            let (low, eps_r1) = solver.step_2(&x, &eps, s64, t_, 1.0 / 3.0)?;
            let high = solver.step_3(&x, &eps, s64, t_, Some(eps_r1))?;
            (low, high)
        };
        // delta = max(atol, rtol * max(|x_low|, |x_prev|)); error = ||(low - high) / delta|| / sqrt(n)
        let delta = x_low
            .abs()?
            .maximum(&x_prev.abs()?)?
            .affine(adaptive.rtol, 0.0)?
            .maximum(adaptive.atol)?;
        let ratio = ((&x_low - &x_high)? / delta)?;
        let error = (ratio
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?)
        .sqrt()
            / numel.sqrt();
        // propose_step
        let inv_error = 1.0 / (error + 1e-8);
        if errs.is_empty() {
            errs = vec![inv_error; 3];
        }
        errs[0] = inv_error;
        let factor = errs[0].powf(b1) * errs[1].powf(b2) * errs[2].powf(b3);
        let factor = 1.0 + (factor - 1.0).atan();
        let accept = factor >= adaptive.accept_safety;
        if accept {
            errs[2] = errs[1];
            errs[1] = errs[0];
        }
        h *= factor;
        if accept {
            x_prev = x_low;
            let z = noise.noise_between(&x_high, sigma_of(s64), sigma_of(t64))?;
            x = (&x_high + z.affine(su * opts.s_noise, 0.0)?)?;
            s = t;
            info.accepted += 1;
        } else {
            info.rejected += 1;
        }
        info.nfe += adaptive.order;
        info.steps += 1;
        callback(&StepInfo {
            step: info.steps - 1,
            total: 0,
            sigma: sigma_of(s as f64),
            sigma_next: sigma_of(s as f64),
            x: &x,
            denoised: &denoised,
        });
    }
    Ok((x, info))
}
