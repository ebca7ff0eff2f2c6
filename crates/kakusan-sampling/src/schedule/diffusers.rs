//! The `model` schedule: what diffusers' schedulers do with a folder's
//! `scheduler_config.json` (loaded with `Class.from_config(config)`, so absent fields take
//! the *target class's* defaults). Euler, Heun, LMS and DPM++ SDE run on the Euler-family
//! timesteps (`HeunDiscreteScheduler`, `LMSDiscreteScheduler` and `DPMSolverSDEScheduler`
//! set them the same way), DDIM and PLMS (`PNDMScheduler`) on DDIM's, DPM++ 2M and UniPC
//! (`UniPCMultistepScheduler`) on DPMSolverMultistep's, LCM on `LCMScheduler`'s; every
//! family is checked by one whole generation against diffusers
//! (kakusan-pipeline's `scheduler_families` test).
//!
//! Euler family: timesteps by `timestep_spacing` (float32; "linspace" gives fractional
//! ones), sigma = `np.interp(t, arange(N), sigma_table)` (linear in sigma), a final 0 (or
//! sigma_min), and `init_noise_sigma` = sigma_max for "linspace"/"trailing" but
//! `sqrt(sigma_max^2 + 1)` for "leading". Euler's `use_karras_sigmas` /
//! `use_exponential_sigmas` replace the sigmas and take timesteps by log-sigma inversion.
//!
//! DDIM: integer timesteps by spacing; step i goes from t_i to `t_i - N // steps` (the
//! final alpha below 0: `alphas_cumprod[0]` unless `set_alpha_to_one`, then 1, i.e. sigma
//! 0). DDIM's sample lives in the unscaled space (`x_ddim = x / sqrt(1 + sigma^2)` of
//! k-diffusion's x): it starts from unit-variance noise and returns unscaled latents,
//! which [`SigmaSchedule::init_noise_scale`] and [`SigmaSchedule::output_scale`] express.

use super::{NoiseConvention, SigmaSchedule};
use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Error, Result};
use crate::reference_numerics::{numpy_arange, numpy_interp_unit_grid, numpy_linspace};
use crate::scheduler_config::{
    DiffusersScheduler, FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig,
    TimestepSpacing, TimestepType,
};

/// Builds the schedule the given diffusers scheduler class would run for `steps` inference
/// steps with `config`.
pub fn model_schedule(
    config: &SchedulerConfig,
    scheduler: DiffusersScheduler,
    steps: usize,
) -> Result<SigmaSchedule> {
    let n_train = config.num_train_timesteps();
    if steps == 0 {
        return Err(Error::InvalidSchedule("steps must be at least 1".into()));
    }
    if steps > n_train {
        return Err(Error::InvalidSchedule(format!(
            "{steps} steps is more than the model's {n_train} training timesteps"
        )));
    }
    if config.thresholding == Some(true) {
        return Err(Error::UnsupportedConfig(
            "thresholding (dynamic thresholding of x0) is not supported".into(),
        ));
    }
    let table = config.discrete_schedule()?;
    if config.rescale_betas_zero_snr == Some(true) && scheduler == DiffusersScheduler::Ddim {
        tracing::warn!(
            "zero-SNR DDIM: the last alphas_cumprod is taken as 2^-24 (diffusers uses 0); results differ slightly at t = {}",
            n_train - 1
        );
    }
    let spacing = config.timestep_spacing_for(scheduler);
    let schedule = match scheduler {
        DiffusersScheduler::Euler | DiffusersScheduler::EulerAncestral => {
            euler_family(config, scheduler, &table, spacing, steps)?
        }
        DiffusersScheduler::Ddim => ddim(config, &table, spacing, steps)?,
        DiffusersScheduler::DpmSolverMultistep => {
            dpm_solver_multistep(config, &table, spacing, steps)?
        }
        DiffusersScheduler::Lcm => lcm(config, &table, steps)?,
    };
    schedule.validate()?;
    Ok(schedule)
}

/// Rounds to float32 (diffusers stores sigmas and timesteps as float32 tensors).
fn f32_value(v: f64) -> f64 {
    v as f32 as f64
}

/// Euler-family timesteps (float values, float32-rounded), largest first.
fn euler_timesteps(
    n_train: usize,
    steps: usize,
    spacing: TimestepSpacing,
    offset: usize,
) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => numpy_linspace(0.0, (n_train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(f32_value)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = n_train / steps;
            (0..steps)
                .rev()
                .map(|i| f32_value((i * ratio) as f64) + offset as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            numpy_arange(n_train as f64, 0.0, -(n_train as f64 / steps as f64))
                .into_iter()
                .map(|t| f32_value(t.round_ties_even()) - 1.0)
                .collect()
        }
    }
}

/// DDIM timesteps (integers), largest first.
fn ddim_timesteps(
    n_train: usize,
    steps: usize,
    spacing: TimestepSpacing,
    offset: usize,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => numpy_linspace(0.0, (n_train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| t.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = n_train / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + offset) as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            numpy_arange(n_train as f64, 0.0, -(n_train as f64 / steps as f64))
                .into_iter()
                .map(|t| t.round_ties_even() as i64 - 1)
                .collect()
        }
    }
}

fn check_timesteps(timesteps: &[f64], n_train: usize) -> Result<()> {
    if let Some(t) = timesteps
        .iter()
        .find(|&&t| !(0.0..=(n_train - 1) as f64).contains(&t))
    {
        return Err(Error::InvalidSchedule(format!(
            "timestep {t} falls outside 0..{} (steps_offset too large for this many steps?)",
            n_train - 1
        )));
    }
    Ok(())
}

/// `DPMSolverMultistepScheduler`'s schedule: integer timesteps from `steps + 1` points
/// (linspace: `linspace(0, n - 1, steps + 1).round()` reversed without its last; leading:
/// `arange(steps + 1) * (n // (steps + 1))` reversed without its last, plus the offset;
/// trailing as Euler's), sigmas from the table at those timesteps, then 0 (or the table's
/// sigma_min with `final_sigmas_type = "sigma_min"`). The scheduler starts from unit-variance
/// noise in the unscaled space (`init_noise_sigma = 1`), which in k-diffusion scaling is
/// `noise * sqrt(1 + sigma_0^2)`, and ends there too (`x / sqrt(1 + sigma_last^2)`).
/// Only the `karras`-free default sigmas are reproduced.
fn dpm_solver_multistep(
    config: &SchedulerConfig,
    table: &DiscreteSchedule,
    spacing: TimestepSpacing,
    steps: usize,
) -> Result<SigmaSchedule> {
    if config.use_karras_sigmas == Some(true) || config.use_exponential_sigmas == Some(true) {
        return Err(Error::UnsupportedConfig(
            "DPMSolverMultistepScheduler with karras/exponential sigmas is not reproduced; use --schedule karras".into(),
        ));
    }
    let n_train = config.num_train_timesteps();
    let offset = config.steps_offset() as f64;
    let mut timesteps: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => numpy_linspace(0.0, (n_train - 1) as f64, steps + 1)
            .into_iter()
            .rev()
            .take(steps)
            .map(f64::round_ties_even)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = n_train / (steps + 1);
            (0..=steps)
                .rev()
                .take(steps)
                .map(|i| (i * ratio) as f64 + offset)
                .collect()
        }
        TimestepSpacing::Trailing => {
            numpy_arange(n_train as f64, 0.0, -(n_train as f64 / steps as f64))
                .into_iter()
                .map(|t| t.round_ties_even() - 1.0)
                .collect()
        }
    };
    timesteps.truncate(steps);
    check_timesteps(&timesteps, n_train)?;
    let mut sigmas: Vec<f64> = timesteps
        .iter()
        .map(|&t| f32_value(numpy_interp_unit_grid(t, table.sigmas())))
        .collect();
    let last = match config.final_sigmas_type {
        Some(FinalSigmasType::SigmaMin) => table.sigmas()[0],
        _ => 0.0,
    };
    sigmas.push(last);
    Ok(unscaled_space_schedule(sigmas, timesteps, table))
}

/// A schedule of a diffusers scheduler that starts from unit-variance noise in the unscaled
/// space (`init_noise_sigma = 1`, i.e. `noise * sqrt(1 + sigma_0^2)` in k-diffusion scaling)
/// and returns its last sample unscaled (`x / sqrt(1 + sigma_last^2)`).
fn unscaled_space_schedule(
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    table: &DiscreteSchedule,
) -> SigmaSchedule {
    let (first, last) = (sigmas[0], sigmas[sigmas.len() - 1]);
    SigmaSchedule {
        init_noise_scale: (1.0 + first * first).sqrt(),
        output_scale: 1.0 / (1.0 + last * last).sqrt(),
        sigmas,
        timesteps,
        interpolation: Interpolation::Linear,
        convention: NoiseConvention::Diffusers,
        step_targets: None,
        table: table.clone(),
    }
}

fn euler_family(
    config: &SchedulerConfig,
    scheduler: DiffusersScheduler,
    table: &DiscreteSchedule,
    spacing: TimestepSpacing,
    steps: usize,
) -> Result<SigmaSchedule> {
    let n_train = config.num_train_timesteps();
    let mut timesteps = euler_timesteps(n_train, steps, spacing, config.steps_offset());
    check_timesteps(&timesteps, n_train)?;
    let mut sigmas: Vec<f64> = timesteps
        .iter()
        .map(|&t| numpy_interp_unit_grid(t, table.sigmas()))
        .collect();
    let mut interpolation = Interpolation::Linear;
    let mut final_sigma = 0.0;

    // Only EulerDiscreteScheduler has these options; the ancestral class ignores them.
    if scheduler == DiffusersScheduler::Euler {
        if config.interpolation_type == Some(InterpolationType::LogLinear) {
            return Err(Error::UnsupportedConfig(
                "interpolation_type \"log_linear\" is not supported; use \"linear\"".into(),
            ));
        }
        if config.use_beta_sigmas == Some(true) {
            return Err(Error::UnsupportedConfig(
                "use_beta_sigmas is not supported".into(),
            ));
        }
        if config.timestep_type == Some(TimestepType::Continuous)
            && config.prediction_type == Some(PredictionType::VPrediction)
        {
            return Err(Error::UnsupportedConfig(
                "timestep_type \"continuous\" with v-prediction (EDM-style models) is not supported".into(),
            ));
        }
        let karras = config.use_karras_sigmas == Some(true);
        let exponential = config.use_exponential_sigmas == Some(true);
        if karras && exponential {
            return Err(Error::UnsupportedConfig(
                "use_karras_sigmas and use_exponential_sigmas are both set; choose one".into(),
            ));
        }
        if karras || exponential {
            let low = config.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let high = config.sigma_max.unwrap_or(sigmas[0]);
            let ramp = numpy_linspace(0.0, 1.0, steps);
            sigmas = if karras {
                let rho = 7.0;
                let (min_inv, max_inv) = (low.powf(1.0 / rho), high.powf(1.0 / rho));
                ramp.iter()
                    .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
                    .collect()
            } else {
                numpy_linspace(high.ln(), low.ln(), steps)
                    .into_iter()
                    .map(f64::exp)
                    .collect()
            };
            timesteps = sigmas
                .iter()
                .map(|&s| f32_value(table.sigma_to_t(s, Interpolation::Log)))
                .collect();
            interpolation = Interpolation::Log;
        }
        if config.final_sigmas_type == Some(FinalSigmasType::SigmaMin) {
            final_sigma = table.sigma_min();
        }
    }

    let mut sigmas: Vec<f64> = sigmas.into_iter().map(f32_value).collect();
    sigmas.push(final_sigma);
    let sigma_max = sigmas.iter().copied().fold(0.0, f64::max);
    let init_noise_scale = match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => sigma_max,
        TimestepSpacing::Leading => (sigma_max * sigma_max + 1.0).sqrt(),
    };
    Ok(SigmaSchedule {
        sigmas,
        timesteps,
        interpolation,
        init_noise_scale,
        output_scale: 1.0,
        convention: NoiseConvention::Diffusers,
        step_targets: None,
        table: table.clone(),
    })
}

/// `LCMScheduler`'s schedule: of the `original_inference_steps` (default 50) timesteps
/// `k (n // original) - 1`, k = 1..original, taken from the top at the indices
/// `floor(linspace(0, original, steps, endpoint=False))` (its timestep spacing and offset
/// are not used); sigmas from the table there, then 0. It starts from unit-variance noise in
/// the unscaled space (`init_noise_sigma = 1`). Its boundary-condition scalings (`c_skip`,
/// `c_out` with `timestep_scaling` 10) are left out: at the timesteps it uses (>= 19) they
/// move the estimate by < 1e-6 of its size.
fn lcm(config: &SchedulerConfig, table: &DiscreteSchedule, steps: usize) -> Result<SigmaSchedule> {
    let n_train = config.num_train_timesteps();
    let original = config.original_inference_steps.unwrap_or(50);
    if original == 0 || original > n_train || steps > original {
        return Err(Error::InvalidSchedule(format!(
            "LCM: {steps} steps from original_inference_steps = {original} of {n_train} timesteps"
        )));
    }
    let k = n_train / original;
    let origin: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
    // numpy's `linspace(0, original, steps, endpoint=False)`: i * (original / steps).
    let stride = original as f64 / steps as f64;
    let timesteps: Vec<f64> = (0..steps)
        .map(|i| {
            let index = (i as f64 * stride).floor() as usize;
            origin[index.min(original - 1)] as f64
        })
        .collect();
    check_timesteps(&timesteps, n_train)?;
    let mut sigmas: Vec<f64> = timesteps
        .iter()
        .map(|&t| table.sigmas()[t as usize])
        .collect();
    sigmas.push(0.0);
    Ok(unscaled_space_schedule(sigmas, timesteps, table))
}

fn ddim(
    config: &SchedulerConfig,
    table: &DiscreteSchedule,
    spacing: TimestepSpacing,
    steps: usize,
) -> Result<SigmaSchedule> {
    let n_train = config.num_train_timesteps();
    let timesteps = ddim_timesteps(n_train, steps, spacing, config.steps_offset());
    let as_f64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
    check_timesteps(&as_f64, n_train)?;
    let final_sigma = if config.set_alpha_to_one_for_ddim() {
        0.0
    } else {
        table.sigma_min()
    };
    let stride = (n_train / steps) as i64;
    let sigma_of = |t: i64| table.sigmas()[t as usize];
    let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| sigma_of(t)).collect();
    sigmas.push(final_sigma);
    let targets: Vec<f64> = timesteps
        .iter()
        .map(|&t| {
            if t - stride >= 0 {
                sigma_of(t - stride)
            } else {
                final_sigma
            }
        })
        .collect();
    let chained = targets.iter().zip(&sigmas[1..]).all(|(a, b)| a == b);
    Ok(SigmaSchedule {
        init_noise_scale: (1.0 + sigmas[0] * sigmas[0]).sqrt(),
        output_scale: 1.0 / (1.0 + final_sigma * final_sigma).sqrt(),
        sigmas,
        timesteps: as_f64,
        interpolation: Interpolation::Linear,
        convention: NoiseConvention::Diffusers,
        step_targets: (!chained).then_some(targets),
        table: table.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15(spacing: Option<&str>) -> SchedulerConfig {
        let spacing = spacing
            .map(|s| format!(r#", "timestep_spacing": "{s}""#))
            .unwrap_or_default();
        SchedulerConfig::from_json(&format!(
            r#"{{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "steps_offset": 1, "set_alpha_to_one": false{spacing}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn leading_euler_matches_diffusers_layout() {
        let s = model_schedule(&sd15(Some("leading")), DiffusersScheduler::Euler, 20).unwrap();
        assert_eq!(s.timesteps[0], 951.0);
        assert_eq!(s.timesteps[19], 1.0);
        assert_eq!(s.sigmas[0], s.table.sigmas()[951]);
        assert_eq!(s.sigmas[20], 0.0);
        assert!((s.init_noise_scale - (s.sigmas[0].powi(2) + 1.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.interpolation, Interpolation::Linear);
        for (t, &sigma) in s.timesteps.iter().zip(&s.sigmas) {
            assert_eq!(s.table.sigma_to_t(sigma, s.interpolation), *t);
        }
    }

    #[test]
    fn absent_spacing_means_linspace_for_euler_and_leading_for_ddim() {
        let euler = model_schedule(&sd15(None), DiffusersScheduler::EulerAncestral, 20).unwrap();
        assert_eq!(euler.timesteps[0], 999.0);
        assert_eq!(euler.init_noise_scale, euler.sigmas[0]);
        let ddim = model_schedule(&sd15(None), DiffusersScheduler::Ddim, 20).unwrap();
        assert_eq!(ddim.timesteps[0], 951.0);
        assert!(ddim.step_targets.is_none());
    }

    #[test]
    fn ddim_final_alpha_and_scales() {
        let s = model_schedule(&sd15(Some("leading")), DiffusersScheduler::Ddim, 20).unwrap();
        assert_eq!(s.sigma_final(), s.table.sigma_min());
        assert!((s.output_scale - 1.0 / (1.0 + s.table.sigma_min().powi(2)).sqrt()).abs() < 1e-15);
        assert!((s.init_noise_scale - (1.0 + s.sigmas[0].powi(2)).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn ddim_linspace_steps_do_not_chain() {
        let s = model_schedule(&sd15(Some("linspace")), DiffusersScheduler::Ddim, 20).unwrap();
        // timesteps 999, 946, ...; step 0 lands on t = 949, not 946.
        assert_eq!(&s.timesteps[..2], &[999.0, 946.0]);
        let targets = s.step_targets.as_ref().unwrap();
        assert_eq!(targets[0], s.table.sigmas()[949]);
        assert_eq!(s.sigmas[1], s.table.sigmas()[946]);
    }

    #[test]
    fn trailing_starts_at_t_max() {
        let s = model_schedule(&sd15(Some("trailing")), DiffusersScheduler::Euler, 30).unwrap();
        assert_eq!(s.timesteps.len(), 30);
        assert_eq!(s.timesteps[0], 999.0);
        assert_eq!(s.init_noise_scale, s.sigmas[0]);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(model_schedule(&sd15(None), DiffusersScheduler::Euler, 0).is_err());
        assert!(model_schedule(&sd15(None), DiffusersScheduler::Euler, 1001).is_err());
        let mut c = sd15(None);
        c.interpolation_type = Some(InterpolationType::LogLinear);
        assert!(model_schedule(&c, DiffusersScheduler::Euler, 20).is_err());
        // The ancestral class has no interpolation_type: diffusers ignores it.
        assert!(model_schedule(&c, DiffusersScheduler::EulerAncestral, 20).is_ok());
    }
}
