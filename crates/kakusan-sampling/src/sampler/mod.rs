//! Samplers as plain functions, one file per family, and the [`Sampler`] enum that lets a
//! pipeline pick one by name without knowing the families.
//!
//! Every sampler works in k-diffusion's scaling (`x = x0 + sigma * eps`), takes the
//! sigmas to walk (`steps + 1` values ending with the final level), a [`Denoiser`], a
//! [`NoiseSource`] for its randomness, and calls `callback` once per step after the
//! denoiser ran.

pub mod ddim;
pub mod ddpm;
pub mod dpm2;
pub mod dpm2_ancestral;
pub mod dpm_solver;
pub mod dpmpp_2m;
pub mod dpmpp_2m_sde;
pub mod dpmpp_2s_ancestral;
pub mod dpmpp_3m_sde;
pub mod dpmpp_sde;
pub mod euler;
pub mod euler_ancestral;
pub mod heun;
pub mod lcm;
pub mod lms;
pub mod plms;
pub mod restart;
pub mod unipc;

use crate::brownian::BrownianTreeNoise;
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::noise::NoiseSource;
use crate::schedule::{NoiseConvention, SigmaSchedule};
use crate::scheduler_config::DiffusersScheduler;
use candle_core::Tensor;
use std::fmt;
use std::str::FromStr;

/// What a sampler reports after each model evaluation.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// 0-based step index.
    pub step: usize,
    /// Number of steps of this run.
    pub total: usize,
    /// The noise level the denoiser was called at (sigma_hat when churn raised it).
    pub sigma: f64,
    /// The level the step moves to.
    pub sigma_next: f64,
    /// The sample the denoiser saw.
    pub x: &'a Tensor,
    /// The denoiser's x0 estimate (a natural preview).
    pub denoised: &'a Tensor,
}

/// The per-step callback type.
pub type Callback<'c> = dyn FnMut(&StepInfo<'_>) + 'c;

/// Checks a sigma list: at least two values, finite, non-negative, the running levels > 0.
pub(crate) fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    if sigmas.len() < 2 {
        return Err(Error::InvalidSchedule(format!(
            "a sampler needs at least two sigmas (one step), got {}",
            sigmas.len()
        )));
    }
    if sigmas.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(Error::InvalidSchedule(
            "sigmas must be finite and non-negative".into(),
        ));
    }
    if sigmas[..sigmas.len() - 1].contains(&0.0) {
        return Err(Error::InvalidSchedule(
            "only the last sigma may be 0 (a step cannot start at noise level 0)".into(),
        ));
    }
    Ok(())
}

/// `x + d * dt` with `d = (x - denoised) / sigma`: the Euler step every first-order sampler
/// here takes (same operation order as diffusers' `step`).
pub(crate) fn euler_step(
    x: &Tensor,
    denoised: &Tensor,
    sigma: f64,
    sigma_to: f64,
) -> Result<Tensor> {
    let derivative = ((x - denoised)? / sigma)?;
    Ok((x + (derivative * (sigma_to - sigma))?)?)
}

/// Karras et al.'s ODE derivative `(x - denoised) / sigma` (k-diffusion's `to_d`).
pub(crate) fn to_d(x: &Tensor, denoised: &Tensor, sigma: f64) -> Result<Tensor> {
    Ok(((x - denoised)? / sigma)?)
}

/// `p a + q b`: the linear combination the exponential-integrator samplers take.
pub(crate) fn lin(a: &Tensor, p: f64, b: &Tensor, q: f64) -> Result<Tensor> {
    Ok((a.affine(p, 0.0)? + b.affine(q, 0.0)?)?)
}

/// Karras et al.'s churn before step `step`: `(sigma_hat, x_hat)`. With gamma =
/// `min(s_churn / steps, sqrt 2 - 1)` for sigma in [s_tmin, s_tmax] (else 0),
/// `sigma_hat = sigma (1 + gamma)` and x gets `s_noise sqrt(sigma_hat^2 - sigma^2)` of
/// fresh noise. Noise is drawn when gamma > 0, or on every step with
/// `draw_every_step` (see [`euler::sample_euler`]).
pub(crate) fn churn(
    x: &Tensor,
    sigmas: &[f64],
    step: usize,
    noise: &mut dyn NoiseSource,
    opts: &euler::EulerOptions,
) -> Result<(f64, Tensor)> {
    let total = sigmas.len() - 1;
    let sigma = sigmas[step];
    let gamma = if opts.s_tmin <= sigma && sigma <= opts.s_tmax {
        (opts.s_churn / total as f64).min(std::f64::consts::SQRT_2 - 1.0)
    } else {
        0.0
    };
    let sigma_hat = sigma * (gamma + 1.0);
    let eps = if gamma > 0.0 || opts.draw_every_step {
        Some(noise.noise_like(x)?)
    } else {
        None
    };
    if let (true, Some(eps)) = (gamma > 0.0, eps) {
        let amount = (sigma_hat * sigma_hat - sigma * sigma).sqrt() * opts.s_noise;
        Ok((sigma_hat, (x + eps.affine(amount, 0.0)?)?))
    } else {
        Ok((sigma, x.clone()))
    }
}

/// Options shared by the [`Sampler`] dispatch; each family reads what applies to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerOptions {
    /// Ancestral noise amount: `None` = the family's default (1 for Euler a, 0 for DDIM).
    pub eta: Option<f64>,
    /// Scale of the drawn noise (k-diffusion's s_noise), default 1.
    pub s_noise: f64,
    /// Euler churn (Karras et al.), default 0 (off).
    pub s_churn: f64,
    /// Churn only for sigma in [s_tmin, s_tmax].
    pub s_tmin: f64,
    pub s_tmax: f64,
    /// The SDE samplers (DPM++ SDE, 2M SDE, 3M SDE) draw from a Brownian tree seeded with
    /// each image's seed (A1111, k-diffusion's `BrownianTreeNoiseSampler`) when the noise
    /// source knows its seeds; `false` makes them use the plain per-image streams (A1111's
    /// "no_dpmpp_sde_batch_determinism").
    pub brownian_noise: bool,
    /// The noise levels the Brownian tree spans, `(sigma_min, sigma_max)`; `None`: the
    /// sampled sigmas' own range. A1111's img2img builds the tree over the whole schedule,
    /// not the part it runs (set it to the uncut schedule's range there).
    pub brownian_range: Option<(f64, f64)>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            eta: None,
            s_noise: 1.0,
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            brownian_noise: true,
            brownian_range: None,
        }
    }
}

/// The samplers kakusan offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sampler {
    /// Euler (Karras et al. Algorithm 2; deterministic without churn).
    Euler,
    /// Euler ancestral: Euler down to sigma_down, then fresh noise up to sigma_next.
    EulerAncestral,
    /// Heun (second order, two model calls per step).
    Heun,
    /// DPM2 (second order at the log-midpoint).
    Dpm2,
    /// DPM2 ancestral.
    Dpm2Ancestral,
    /// DPM-Solver++(2S) ancestral.
    Dpmpp2sAncestral,
    /// DPM-Solver++(2M).
    Dpmpp2m,
    /// DPM-Solver++ SDE (Brownian noise).
    DpmppSde,
    /// DPM-Solver++(2M) SDE, midpoint correction (Brownian noise).
    Dpmpp2mSde,
    /// DPM-Solver++(2M) SDE, Heun correction (Brownian noise).
    Dpmpp2mSdeHeun,
    /// DPM-Solver++(3M) SDE (Brownian noise).
    Dpmpp3mSde,
    /// Linear multistep, order 4.
    Lms,
    /// DPM-Solver fast (fixed steps of order 3).
    DpmFast,
    /// DPM-Solver adaptive (error-controlled steps; ignores the step count).
    DpmAdaptive,
    /// Restart sampling (A1111's plan).
    Restart,
    /// DDIM (deterministic for eta = 0, where it equals Euler).
    Ddim,
    /// LCM (jump to the estimate, re-noise).
    Lcm,
    /// DDPM ancestral.
    Ddpm,
    /// PLMS (LDM's pseudo linear multistep on eps).
    Plms,
    /// UniPC, B(h) = h, order 3 (A1111's and ComfyUI's "uni_pc").
    UniPc,
    /// UniPC, B(h) = e^h - 1, order 3 (ComfyUI's "uni_pc_bh2").
    UniPcBh2,
}

impl Sampler {
    /// Every sampler, in display order.
    pub const ALL: [Sampler; 21] = [
        Self::Euler,
        Self::EulerAncestral,
        Self::Heun,
        Self::Dpm2,
        Self::Dpm2Ancestral,
        Self::Dpmpp2sAncestral,
        Self::Dpmpp2m,
        Self::DpmppSde,
        Self::Dpmpp2mSde,
        Self::Dpmpp2mSdeHeun,
        Self::Dpmpp3mSde,
        Self::Lms,
        Self::DpmFast,
        Self::DpmAdaptive,
        Self::Restart,
        Self::Ddim,
        Self::Lcm,
        Self::Ddpm,
        Self::Plms,
        Self::UniPc,
        Self::UniPcBh2,
    ];

    /// The A1111 name ("Euler", "Euler a", "DPM++ 2M", ...), used in PNG metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Euler => "Euler",
            Self::EulerAncestral => "Euler a",
            Self::Heun => "Heun",
            Self::Dpm2 => "DPM2",
            Self::Dpm2Ancestral => "DPM2 a",
            Self::Dpmpp2sAncestral => "DPM++ 2S a",
            Self::Dpmpp2m => "DPM++ 2M",
            Self::DpmppSde => "DPM++ SDE",
            Self::Dpmpp2mSde => "DPM++ 2M SDE",
            Self::Dpmpp2mSdeHeun => "DPM++ 2M SDE Heun",
            Self::Dpmpp3mSde => "DPM++ 3M SDE",
            Self::Lms => "LMS",
            Self::DpmFast => "DPM fast",
            Self::DpmAdaptive => "DPM adaptive",
            Self::Restart => "Restart",
            Self::Ddim => "DDIM",
            Self::Lcm => "LCM",
            Self::Ddpm => "DDPM",
            Self::Plms => "PLMS",
            Self::UniPc => "UniPC",
            Self::UniPcBh2 => "UniPC BH2",
        }
    }

    /// The k-diffusion / ComfyUI name ("euler", "dpmpp_2m", ...).
    pub fn id(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_ancestral",
            Self::Heun => "heun",
            Self::Dpm2 => "dpm_2",
            Self::Dpm2Ancestral => "dpm_2_ancestral",
            Self::Dpmpp2sAncestral => "dpmpp_2s_ancestral",
            Self::Dpmpp2m => "dpmpp_2m",
            Self::DpmppSde => "dpmpp_sde",
            Self::Dpmpp2mSde => "dpmpp_2m_sde",
            Self::Dpmpp2mSdeHeun => "dpmpp_2m_sde_heun",
            Self::Dpmpp3mSde => "dpmpp_3m_sde",
            Self::Lms => "lms",
            Self::DpmFast => "dpm_fast",
            Self::DpmAdaptive => "dpm_adaptive",
            Self::Restart => "restart",
            Self::Ddim => "ddim",
            Self::Lcm => "lcm",
            Self::Ddpm => "ddpm",
            Self::Plms => "plms",
            Self::UniPc => "uni_pc",
            Self::UniPcBh2 => "uni_pc_bh2",
        }
    }

    /// One line for `kakusan samplers`: what it does and what it costs.
    pub fn description(self) -> &'static str {
        match self {
            Self::Euler => "first-order ODE steps; deterministic, 1 model call per step",
            Self::EulerAncestral => "Euler steps plus fresh noise each step; 1 call per step",
            Self::Heun => "second-order ODE (Heun); deterministic, 2 calls per step",
            Self::Dpm2 => "second order at the log-midpoint; deterministic, 2 calls per step",
            Self::Dpm2Ancestral => "DPM2 steps plus fresh noise; 2 calls per step",
            Self::Dpmpp2sAncestral => "DPM-Solver++(2S) plus fresh noise; 2 calls per step",
            Self::Dpmpp2m => "DPM-Solver++(2M) multistep; deterministic, 1 call per step",
            Self::DpmppSde => "stochastic DPM-Solver++, Brownian noise; 2 calls per step",
            Self::Dpmpp2mSde => "stochastic 2M (midpoint), Brownian noise; 1 call per step",
            Self::Dpmpp2mSdeHeun => "stochastic 2M (Heun), Brownian noise; 1 call per step",
            Self::Dpmpp3mSde => "stochastic 3rd-order multistep, Brownian noise; 1 call per step",
            Self::Lms => "linear multistep, order 4; deterministic, 1 call per step",
            Self::DpmFast => "DPM-Solver, fixed order-3 steps; exactly `steps` calls",
            Self::DpmAdaptive => "DPM-Solver with error control; ignores --steps",
            Self::Restart => "Heun steps with A1111's restarts (re-noise, redo); ~2 calls per step",
            Self::Ddim => "DDIM; deterministic at eta 0 (= Euler), 1 call per step",
            Self::Lcm => "jump to the estimate, re-noise (for LCM models); 1 call per step",
            Self::Ddpm => "DDPM ancestral posterior steps; 1 call per step",
            Self::Plms => "LDM's PLMS (Adams-Bashforth on eps); deterministic, 1 call per step + 1",
            Self::UniPc => "UniPC predictor-corrector, B(h) = h, order 3 (2 on --schedule model); 1 call per step",
            Self::UniPcBh2 => "UniPC predictor-corrector, B(h) = e^h - 1, order 3 (2 on --schedule model); 1 call per step",
        }
    }

    /// Other accepted spellings: A1111's old `k_` aliases and ComfyUI's `_gpu` variants
    /// (whose Brownian tree lives on the GPU; here it is always the CPU one).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Euler => &["k_euler"],
            Self::EulerAncestral => &["k_euler_a", "k_euler_ancestral", "euler a"],
            Self::Heun => &["k_heun"],
            Self::Dpm2 => &["k_dpm_2"],
            Self::Dpm2Ancestral => &["k_dpm_2_a"],
            Self::Dpmpp2sAncestral => &["k_dpmpp_2s_a"],
            Self::Dpmpp2m => &["k_dpmpp_2m"],
            Self::DpmppSde => &["k_dpmpp_sde", "dpmpp_sde_gpu"],
            Self::Dpmpp2mSde => &["k_dpmpp_2m_sde", "dpmpp_2m_sde_gpu"],
            Self::Dpmpp2mSdeHeun => &["dpmpp_2m_sde_heun_gpu"],
            Self::Dpmpp3mSde => &["k_dpmpp_3m_sde", "dpmpp_3m_sde_gpu"],
            Self::Lms => &["k_lms"],
            Self::DpmFast => &["k_dpm_fast"],
            Self::DpmAdaptive => &["k_dpm_ad"],
            Self::Restart => &[],
            Self::Ddim => &[],
            Self::Lcm => &[],
            Self::Ddpm => &[],
            Self::Plms => &[],
            Self::UniPc => &["unipc"],
            Self::UniPcBh2 => &["unipc_bh2"],
        }
    }

    /// Samplers whose schedule A1111 and ComfyUI build one step longer and then drop the
    /// next-to-last sigma ("discard_next_to_last_sigma"): DPM2 and DPM2 a (and, in ComfyUI,
    /// UniPC).
    pub fn discards_penultimate_sigma(self) -> bool {
        matches!(
            self,
            Self::Dpm2 | Self::Dpm2Ancestral | Self::UniPc | Self::UniPcBh2
        )
    }

    /// The steps A1111 builds the prompt schedule over (`SamplerData.total_steps`): twice
    /// `steps` for the samplers it marks "second_order" (Heun, DPM2, DPM2 a, DPM++ 2S a,
    /// DPM++ SDE, Restart), `steps` for the others. Its denoiser counts model calls, not
    /// steps, so `[cat:dog:10]` at 20 steps of Heun switches after the 10th model call
    /// (about the 5th step), while fractions keep their meaning.
    pub fn prompt_schedule_steps(self, steps: usize) -> usize {
        match self {
            Self::Heun
            | Self::Dpm2
            | Self::Dpm2Ancestral
            | Self::Dpmpp2sAncestral
            | Self::DpmppSde
            | Self::Restart => 2 * steps,
            _ => steps,
        }
    }

    /// Model calls for a run of `steps` steps (`None` for DPM adaptive, whose count depends
    /// on the model). Second-order samplers call the model once for their last step.
    pub fn model_calls(self, steps: usize) -> Option<usize> {
        Some(match self {
            Self::Heun
            | Self::Dpm2
            | Self::Dpm2Ancestral
            | Self::Dpmpp2sAncestral
            | Self::DpmppSde => (2 * steps).saturating_sub(1),
            Self::DpmAdaptive => return None,
            Self::Plms => steps + usize::from(steps > 1),
            Self::Restart => {
                // The plan's length depends only on the step count (SD-like levels here).
                let sigmas = crate::schedule::k_diffusion::karras_sigmas(steps, 0.03, 14.6, 7.0);
                let plan = restart::restart_plan(&sigmas);
                (2 * plan.len()).saturating_sub(1)
            }
            _ => steps,
        })
    }

    /// The diffusers scheduler class whose timesteps the `model` schedule uses for this
    /// sampler: its own for Euler, Euler a, DDIM and DPM++ 2M (`DPMSolverMultistepScheduler`);
    /// `EulerDiscreteScheduler`'s for the others (the k-diffusion samplers then walk
    /// diffusers' sigmas, which is what diffusers' Heun and LMS schedulers do).
    pub fn diffusers_scheduler(self) -> DiffusersScheduler {
        match self {
            Self::EulerAncestral => DiffusersScheduler::EulerAncestral,
            // PNDMScheduler (PLMS) takes DDIM's timesteps and final alpha.
            Self::Ddim | Self::Plms => DiffusersScheduler::Ddim,
            // UniPCMultistepScheduler sets its timesteps and sigmas as DPMSolverMultistep does.
            Self::Dpmpp2m | Self::UniPc | Self::UniPcBh2 => DiffusersScheduler::DpmSolverMultistep,
            Self::Lcm => DiffusersScheduler::Lcm,
            _ => DiffusersScheduler::Euler,
        }
    }

    /// Runs this sampler over `schedule` from `x` (already at `schedule.sigmas[0]`, see
    /// [`SigmaSchedule::initial_latents`] / [`SigmaSchedule::img2img_latents`]). Returns
    /// the sampler's final x in k-diffusion scaling; apply
    /// [`SigmaSchedule::final_latents`] to get the reference's latents.
    pub fn sample(
        self,
        denoiser: &dyn Denoiser,
        x: Tensor,
        schedule: &SigmaSchedule,
        noise: &mut dyn NoiseSource,
        options: &SamplerOptions,
        callback: &mut Callback<'_>,
    ) -> Result<Tensor> {
        schedule.validate()?;
        self.sample_sigmas(
            denoiser,
            x,
            &schedule.sigmas,
            schedule.convention,
            schedule.step_targets.as_deref(),
            noise,
            options,
            callback,
        )
    }

    /// Runs this sampler over explicit sigmas (k-diffusion's noise habits), e.g. a schedule
    /// cut for img2img.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_sigmas(
        self,
        denoiser: &dyn Denoiser,
        x: Tensor,
        sigmas: &[f64],
        convention: NoiseConvention,
        step_targets: Option<&[f64]>,
        noise: &mut dyn NoiseSource,
        options: &SamplerOptions,
        callback: &mut Callback<'_>,
    ) -> Result<Tensor> {
        check_sigmas(sigmas)?;
        let churn = euler::EulerOptions {
            s_churn: options.s_churn,
            s_tmin: options.s_tmin,
            s_tmax: options.s_tmax,
            s_noise: options.s_noise,
            // A1111 runs k-diffusion 0.1.1, which draws on every step; it only shows when
            // churn is on, so the streams stay untouched without it.
            draw_every_step: convention == NoiseConvention::KDiffusion && options.s_churn > 0.0,
        };
        let ancestral = |convention| euler_ancestral::AncestralOptions {
            eta: options.eta.unwrap_or(1.0),
            s_noise: options.s_noise,
            convention,
        };
        let positive = sigmas.iter().copied().filter(|s| *s > 0.0);
        let sigma_min = positive.clone().fold(f64::INFINITY, f64::min);
        let sigma_max = positive.fold(0.0, f64::max);
        // The SDE samplers' Brownian tree, seeded with the images' seeds.
        let (tree_min, tree_max) = options.brownian_range.unwrap_or((sigma_min, sigma_max));
        let mut tree = match (
            self.uses_brownian_noise(),
            options.brownian_noise,
            noise.seeds(),
        ) {
            (true, true, Some(seeds)) if tree_max > tree_min => Some(BrownianTreeNoise::new(
                x.dims(),
                tree_min,
                tree_max,
                &seeds,
            )?),
            _ => None,
        };
        let sde_noise: &mut dyn NoiseSource = match tree.as_mut() {
            Some(t) => t,
            None => noise,
        };
        match self {
            Self::Euler => euler::sample_euler(denoiser, x, sigmas, sde_noise, &churn, callback),
            Self::EulerAncestral => euler_ancestral::sample_euler_ancestral(
                denoiser,
                x,
                sigmas,
                sde_noise,
                &ancestral(convention),
                callback,
            ),
            Self::Heun => heun::sample_heun(denoiser, x, sigmas, sde_noise, &churn, callback),
            Self::Dpm2 => dpm2::sample_dpm_2(denoiser, x, sigmas, sde_noise, &churn, callback),
            Self::Dpm2Ancestral => dpm2_ancestral::sample_dpm_2_ancestral(
                denoiser,
                x,
                sigmas,
                sde_noise,
                &ancestral(NoiseConvention::KDiffusion),
                callback,
            ),
            Self::Dpmpp2sAncestral => dpmpp_2s_ancestral::sample_dpmpp_2s_ancestral(
                denoiser,
                x,
                sigmas,
                sde_noise,
                &ancestral(NoiseConvention::KDiffusion),
                callback,
            ),
            Self::Dpmpp2m => dpmpp_2m::sample_dpmpp_2m(denoiser, x, sigmas, callback),
            Self::DpmppSde => {
                let opts = dpmpp_sde::DpmppSdeOptions {
                    eta: options.eta.unwrap_or(1.0),
                    s_noise: options.s_noise,
                    ..Default::default()
                };
                dpmpp_sde::sample_dpmpp_sde(denoiser, x, sigmas, sde_noise, &opts, callback)
            }
            Self::Dpmpp2mSde | Self::Dpmpp2mSdeHeun => {
                let opts = dpmpp_2m_sde::Dpmpp2mSdeOptions {
                    eta: options.eta.unwrap_or(1.0),
                    s_noise: options.s_noise,
                    solver: if self == Self::Dpmpp2mSdeHeun {
                        dpmpp_2m_sde::SolverType::Heun
                    } else {
                        dpmpp_2m_sde::SolverType::Midpoint
                    },
                };
                dpmpp_2m_sde::sample_dpmpp_2m_sde(denoiser, x, sigmas, sde_noise, &opts, callback)
            }
            Self::Dpmpp3mSde => {
                let opts = dpmpp_3m_sde::Dpmpp3mSdeOptions {
                    eta: options.eta.unwrap_or(1.0),
                    s_noise: options.s_noise,
                };
                dpmpp_3m_sde::sample_dpmpp_3m_sde(denoiser, x, sigmas, sde_noise, &opts, callback)
            }
            Self::Lms => lms::sample_lms(denoiser, x, sigmas, lms::DEFAULT_ORDER, callback),
            Self::DpmFast | Self::DpmAdaptive => {
                let opts = dpm_solver::DpmSolverOptions {
                    eta: options.eta.unwrap_or(0.0),
                    s_noise: options.s_noise,
                };
                if self == Self::DpmFast {
                    dpm_solver::sample_dpm_fast(
                        denoiser,
                        x,
                        sigma_min,
                        sigma_max,
                        sigmas.len() - 1,
                        sde_noise,
                        &opts,
                        callback,
                    )
                } else {
                    dpm_solver::sample_dpm_adaptive(
                        denoiser,
                        x,
                        sigma_min,
                        sigma_max,
                        sde_noise,
                        &opts,
                        &dpm_solver::AdaptiveOptions::default(),
                        callback,
                    )
                    .map(|(x, _)| x)
                }
            }
            Self::Restart => {
                restart::sample_restart(denoiser, x, sigmas, sde_noise, options.s_noise, callback)
            }
            Self::Ddim => {
                let opts = ddim::DdimOptions {
                    eta: options.eta.unwrap_or(0.0),
                    step_targets,
                };
                ddim::sample_ddim(denoiser, x, sigmas, sde_noise, &opts, callback)
            }
            Self::Lcm => lcm::sample_lcm(denoiser, x, sigmas, sde_noise, callback),
            Self::Ddpm => ddpm::sample_ddpm(denoiser, x, sigmas, sde_noise, callback),
            Self::Plms => plms::sample_plms(denoiser, x, sigmas, callback),
            Self::UniPc | Self::UniPcBh2 => {
                let opts = unipc::UniPcOptions {
                    // A1111 and ComfyUI run order 3; on a diffusers `model` schedule,
                    // UniPCMultistepScheduler's default `solver_order` 2.
                    order: if convention == NoiseConvention::Diffusers {
                        2
                    } else {
                        3
                    },
                    variant: if self == Self::UniPc {
                        unipc::UniPcVariant::Bh1
                    } else {
                        unipc::UniPcVariant::Bh2
                    },
                    lower_order_final: true,
                };
                unipc::sample_unipc(denoiser, x, sigmas, &opts, callback)
            }
        }
    }

    /// Whether the sampler draws its noise from a Brownian tree (A1111's "brownian_noise").
    pub fn uses_brownian_noise(self) -> bool {
        matches!(
            self,
            Self::DpmppSde | Self::Dpmpp2mSde | Self::Dpmpp2mSdeHeun | Self::Dpmpp3mSde
        )
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Sampler {
    type Err = Error;

    /// Accepts the A1111 and the k-diffusion names, ignoring case and surrounding spaces
    /// ("Euler a", "euler_ancestral", "DDIM", "ddim", ...).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| {
                k.name().to_ascii_lowercase() == wanted
                    || k.id() == wanted
                    || k.aliases().contains(&wanted.as_str())
            })
            .ok_or_else(|| Error::UnknownSampler {
                name: s.to_string(),
                valid: Self::ALL
                    .iter()
                    .map(|k| format!("\"{}\" / \"{}\"", k.name(), k.id()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for s in Sampler::ALL {
            assert_eq!(s.name().parse::<Sampler>().unwrap(), s);
            assert_eq!(s.id().parse::<Sampler>().unwrap(), s);
        }
        assert_eq!(
            " euler A ".parse::<Sampler>().unwrap(),
            Sampler::EulerAncestral
        );
        let err = "heunn".parse::<Sampler>().unwrap_err().to_string();
        assert!(err.contains("\"Euler a\" / \"euler_ancestral\""), "{err}");
        assert!(err.contains("heunn"), "{err}");
        assert_eq!("DPM++ 2M".parse::<Sampler>().unwrap(), Sampler::Dpmpp2m);
        assert_eq!(
            "dpmpp_2m_sde_gpu".parse::<Sampler>().unwrap(),
            Sampler::Dpmpp2mSde
        );
    }

    /// A1111's "second_order" list (modules/sd_samplers_kdiffusion.py, 1.7+): the prompt
    /// schedule spans twice the steps for exactly these.
    #[test]
    fn prompt_schedules_of_second_order_samplers_span_twice_the_steps() {
        let doubled: Vec<&str> = Sampler::ALL
            .iter()
            .filter(|s| s.prompt_schedule_steps(20) == 40)
            .map(|s| s.name())
            .collect();
        assert_eq!(
            doubled,
            [
                "Heun",
                "DPM2",
                "DPM2 a",
                "DPM++ 2S a",
                "DPM++ SDE",
                "Restart"
            ]
        );
        assert!(Sampler::ALL
            .iter()
            .all(|s| matches!(s.prompt_schedule_steps(20), 20 | 40)));
    }

    #[test]
    fn sigma_checks() {
        assert!(check_sigmas(&[1.0]).is_err());
        assert!(check_sigmas(&[1.0, 0.0, 0.0]).is_err());
        assert!(check_sigmas(&[1.0, f64::NAN]).is_err());
        assert!(check_sigmas(&[2.0, 1.0, 0.0]).is_ok());
    }
}
