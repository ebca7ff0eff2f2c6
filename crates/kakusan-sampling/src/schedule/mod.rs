//! Sigma schedules: the noise levels a sampler walks down, and everything a pipeline needs
//! to start and finish a run the way the reference tool does.
//!
//! - [`k_diffusion`]: `normal` (k-diffusion's / A1111's / ComfyUI's default), `karras`,
//!   `exponential`, over a model's [`DiscreteSchedule`].
//! - [`comfy`]: `polyexponential`, `sgm_uniform`, `simple`, `ddim_uniform`, `beta` (A1111
//!   1.9+ / ComfyUI).
//! - [`diffusers`]: `model`, what a diffusers scheduler class does with the folder's
//!   `scheduler_config.json`.
//! - [`img2img`]: cutting a schedule for a denoising strength.

pub mod comfy;
pub mod diffusers;
pub mod img2img;
pub mod k_diffusion;

use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Error, Result};
use crate::sampler::Sampler;
use crate::scheduler_config::SchedulerConfig;
use candle_core::Tensor;
use std::fmt;
use std::str::FromStr;

/// Whose habits of drawing random numbers a run follows. Samplers with randomness draw
/// exactly when the reference does, because the per-image streams continue across steps
/// and a skipped or extra draw changes every later number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseConvention {
    /// diffusers' schedulers: Euler draws only when churn is active; Euler-ancestral draws
    /// after every step, the last included (where it is multiplied by sigma_up = 0); DDIM
    /// with eta > 0 draws every step.
    Diffusers,
    /// k-diffusion (A1111, ComfyUI): `sample_euler_ancestral` draws only when the next sigma
    /// is above 0 (not after the last step).
    KDiffusion,
}

/// A schedule ready to sample: the noise levels plus the conventions of the tool it
/// reproduces.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaSchedule {
    /// `steps + 1` noise levels, non-increasing, ending with the final level (0 for every
    /// schedule except diffusers' DDIM without `set_alpha_to_one` and Euler with
    /// `final_sigmas_type = "sigma_min"`). float32-representable values.
    pub sigmas: Vec<f64>,
    /// The model timestep the reference feeds the network at each of the `steps` steps
    /// (for metadata, progress and tests; the denoiser derives it from sigma with
    /// `interpolation`, which gives these values back).
    pub timesteps: Vec<f64>,
    /// How the denoiser must map sigma to the model timestep.
    pub interpolation: Interpolation,
    /// txt2img starts from `noise * init_noise_scale` in k-diffusion scaling: `sigmas[0]` for
    /// k-diffusion schedules; diffusers' `init_noise_sigma` for Euler-family `model`
    /// schedules (sqrt(sigma_max^2 + 1) with leading spacing!); sqrt(1 + sigma_max^2) for
    /// DDIM (it starts from unit-variance noise in the unscaled space).
    pub init_noise_scale: f64,
    /// The sampler's final x times this is the reference's final latents: 1 except for
    /// DDIM, whose result is in the unscaled space, `x / sqrt(1 + sigma_final^2)`.
    pub output_scale: f64,
    /// When to draw per-step noise.
    pub convention: NoiseConvention,
    /// diffusers DDIM only, when its steps do not chain (linspace spacing, or trailing
    /// spacing with N % steps != 0): the level step i actually lands on (`t_i - N // steps`),
    /// after which the sample is relabelled as being at `sigmas[i + 1]`. `None` when every
    /// step lands on the next sigma.
    pub step_targets: Option<Vec<f64>>,
    /// The training schedule the sigmas come from; build the denoiser over this one.
    pub table: DiscreteSchedule,
}

impl SigmaSchedule {
    /// Number of sampling steps (model evaluations for first-order samplers).
    pub fn steps(&self) -> usize {
        self.sigmas.len().saturating_sub(1)
    }

    /// The first (largest) noise level.
    pub fn sigma_start(&self) -> f64 {
        self.sigmas.first().copied().unwrap_or(0.0)
    }

    /// The final noise level.
    pub fn sigma_final(&self) -> f64 {
        self.sigmas.last().copied().unwrap_or(0.0)
    }

    /// txt2img's starting sample: `noise * init_noise_scale`.
    pub fn initial_latents(&self, noise: &Tensor) -> Result<Tensor> {
        Ok(noise.affine(self.init_noise_scale, 0.0)?)
    }

    /// img2img's starting sample: `init + noise * sigmas[0]` (of the cut schedule). This is
    /// diffusers' `add_noise` for Euler (sigma at the begin index) and, rewritten in
    /// k-diffusion scaling, for DDIM (`sqrt(ac) init + sqrt(1 - ac) noise`), and A1111's
    /// `x + noise * sigma_sched[0]`.
    pub fn img2img_latents(&self, init: &Tensor, noise: &Tensor) -> Result<Tensor> {
        Ok((init + noise.affine(self.sigma_start(), 0.0)?)?)
    }

    /// The sampler's output turned into the reference's final latents (`x * output_scale`).
    pub fn final_latents(&self, x: &Tensor) -> Result<Tensor> {
        if self.output_scale == 1.0 {
            Ok(x.clone())
        } else {
            Ok(x.affine(self.output_scale, 0.0)?)
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.sigmas.len() < 2 {
            return Err(Error::InvalidSchedule(format!(
                "a schedule needs at least one step (two sigmas), got {} sigmas",
                self.sigmas.len()
            )));
        }
        if self.timesteps.len() != self.steps() {
            return Err(Error::InvalidSchedule(format!(
                "{} timesteps for {} steps",
                self.timesteps.len(),
                self.steps()
            )));
        }
        if let Some(targets) = &self.step_targets {
            if targets.len() != self.steps() {
                return Err(Error::InvalidSchedule(format!(
                    "{} step targets for {} steps",
                    targets.len(),
                    self.steps()
                )));
            }
        }
        Ok(())
    }
}

/// The schedules a user can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// k-diffusion's discretisation: t = linspace(t_max, 0, n), log-sigma interpolation,
    /// then 0 (A1111 / ComfyUI "normal"). The default.
    Normal,
    /// Karras et al. (rho = 7) between the model's sigma_min and sigma_max, then 0.
    Karras,
    /// Evenly spaced in log sigma between the model's sigma_min and sigma_max, then 0.
    Exponential,
    /// k-diffusion's polyexponential with rho = 1 (A1111's "Polyexponential").
    Polyexponential,
    /// ComfyUI's `sgm_uniform`: `steps + 1` even timesteps, the last (t = 0) dropped.
    SgmUniform,
    /// ComfyUI's `simple`: every `n / steps`-th training sigma from the top.
    Simple,
    /// ComfyUI's `ddim_uniform` (A1111's "DDIM"): t = 1 + k (n // steps), reversed.
    DdimUniform,
    /// ComfyUI's `beta`: timesteps at Beta(0.6, 0.6) quantiles.
    Beta,
    /// What the diffusers scheduler class of the sampler does with the model folder's
    /// `scheduler_config.json`.
    Model,
}

impl ScheduleKind {
    /// Every kind, in display order.
    pub const ALL: [ScheduleKind; 9] = [
        Self::Normal,
        Self::Karras,
        Self::Exponential,
        Self::Polyexponential,
        Self::SgmUniform,
        Self::Simple,
        Self::DdimUniform,
        Self::Beta,
        Self::Model,
    ];

    /// The name used on the command line and in metadata (ComfyUI's scheduler names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Karras => "karras",
            Self::Exponential => "exponential",
            Self::Polyexponential => "polyexponential",
            Self::SgmUniform => "sgm_uniform",
            Self::Simple => "simple",
            Self::DdimUniform => "ddim_uniform",
            Self::Beta => "beta",
            Self::Model => "model",
        }
    }

    /// A1111's label in its "Schedule type" menu (1.9+).
    pub fn a1111_label(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Karras => "Karras",
            Self::Exponential => "Exponential",
            Self::Polyexponential => "Polyexponential",
            Self::SgmUniform => "SGM Uniform",
            Self::Simple => "Simple",
            Self::DdimUniform => "DDIM",
            Self::Beta => "Beta",
            Self::Model => "Model",
        }
    }

    /// One line for `kakusan samplers`.
    pub fn description(self) -> &'static str {
        match self {
            Self::Normal => "t = linspace(t_max, 0): A1111/ComfyUI default",
            Self::Karras => "Karras et al. rho = 7: dense near the end",
            Self::Exponential => "even steps in log sigma",
            Self::Polyexponential => "k-diffusion polyexponential, rho = 1",
            Self::SgmUniform => "steps + 1 even timesteps, the last dropped",
            Self::Simple => "every n/steps-th training sigma from the top",
            Self::DdimUniform => "t = 1 + k (n // steps) (may add a step)",
            Self::Beta => "timesteps at Beta(0.6, 0.6) quantiles",
            Self::Model => "the model folder's diffusers scheduler config",
        }
    }

    /// Other accepted spellings (A1111's labels, with spaces or dashes).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Normal => &["uniform", "automatic"],
            Self::SgmUniform => &["sgm uniform", "sgm-uniform"],
            Self::DdimUniform => &["ddim", "ddim uniform", "ddim-uniform"],
            _ => &[],
        }
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScheduleKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted || k.aliases().contains(&wanted.as_str()))
            .ok_or_else(|| Error::UnknownSchedule {
                name: s.to_string(),
                valid: Self::ALL.map(|k| k.name()).join(", "),
            })
    }
}

/// Builds the schedule of `kind` for a run of `sampler` with `steps` steps.
///
/// `config` is the model's scheduler config (betas, spacing, ...). The k-diffusion kinds
/// sample over `table` when given (e.g. a checkpoint's `alphas_cumprod`), else over
/// [`SchedulerConfig::k_diffusion_table`]; `model` always uses the table diffusers builds
/// from `config`, with the defaults of the sampler's diffusers class.
pub fn build_schedule(
    kind: ScheduleKind,
    sampler: Sampler,
    steps: usize,
    config: &SchedulerConfig,
    table: Option<&DiscreteSchedule>,
) -> Result<SigmaSchedule> {
    build_schedule_with(
        kind,
        sampler,
        steps,
        config,
        table,
        &ScheduleOptions::default(),
    )
}

/// Overrides of the bounds (and rho) of the schedules that take them: karras, exponential
/// and polyexponential (A1111's "sigma min / sigma max / rho" settings, ComfyUI's
/// KarrasScheduler / ExponentialScheduler / PolyexponentialScheduler nodes). `None`: the
/// model's sigma_min / sigma_max, rho 7 (karras) or 1 (polyexponential).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScheduleOptions {
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub rho: Option<f64>,
}

impl ScheduleOptions {
    /// Whether anything is overridden.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// [`build_schedule`] with bound overrides (see [`ScheduleOptions`]); an override given for
/// a schedule that has no bounds is an error rather than silently ignored.
pub fn build_schedule_with(
    kind: ScheduleKind,
    sampler: Sampler,
    steps: usize,
    config: &SchedulerConfig,
    table: Option<&DiscreteSchedule>,
    options: &ScheduleOptions,
) -> Result<SigmaSchedule> {
    let bounded = matches!(
        kind,
        ScheduleKind::Karras | ScheduleKind::Exponential | ScheduleKind::Polyexponential
    );
    if !bounded && !options.is_default() {
        return Err(Error::InvalidSchedule(format!(
            "sigma min/max and rho apply to the karras, exponential and polyexponential schedules, not {kind}"
        )));
    }
    if options.rho.is_some() && kind == ScheduleKind::Exponential {
        return Err(Error::InvalidSchedule(
            "the exponential schedule has no rho (use karras or polyexponential)".into(),
        ));
    }
    let k_table = || match table {
        Some(t) => Ok(t.clone()),
        None => config.k_diffusion_table(),
    };
    // A1111 and ComfyUI build DPM2's schedules one step longer and drop the next-to-last
    // sigma (not for diffusers' own `model` timesteps).
    let discard = sampler.discards_penultimate_sigma() && kind != ScheduleKind::Model;
    let k_steps = if discard { steps + 1 } else { steps };
    let mut schedule = match kind {
        ScheduleKind::Normal => k_diffusion::normal(&k_table()?, k_steps)?,
        ScheduleKind::Karras => {
            let t = k_table()?;
            let (lo, hi) = bounds(&t, options);
            let rho = options.rho.unwrap_or(k_diffusion::KARRAS_RHO);
            k_diffusion::karras_between(&t, k_steps, lo, hi, rho)?
        }
        ScheduleKind::Exponential => {
            let t = k_table()?;
            let (lo, hi) = bounds(&t, options);
            k_diffusion::exponential_between(&t, k_steps, lo, hi)?
        }
        ScheduleKind::Polyexponential => {
            let t = k_table()?;
            let (lo, hi) = bounds(&t, options);
            comfy::polyexponential_between(&t, k_steps, lo, hi, options.rho.unwrap_or(1.0))?
        }
        ScheduleKind::SgmUniform => comfy::sgm_uniform(&k_table()?, k_steps)?,
        ScheduleKind::Simple => comfy::simple(&k_table()?, k_steps)?,
        ScheduleKind::DdimUniform => comfy::ddim_uniform(&k_table()?, k_steps)?,
        ScheduleKind::Beta => {
            comfy::beta(&k_table()?, k_steps, comfy::BETA_ALPHA, comfy::BETA_BETA)?
        }
        ScheduleKind::Model => {
            diffusers::model_schedule(config, sampler.diffusers_scheduler(), steps)?
        }
    };
    if discard && schedule.sigmas.len() >= 3 {
        let n = schedule.sigmas.len();
        schedule.sigmas.remove(n - 2);
        schedule.timesteps.remove(n - 2);
    }
    schedule.validate()?;
    Ok(schedule)
}

fn bounds(table: &DiscreteSchedule, options: &ScheduleOptions) -> (f64, f64) {
    (
        options.sigma_min.unwrap_or(table.sigma_min()),
        options.sigma_max.unwrap_or(table.sigma_max()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_can_be_overridden() {
        let config = SchedulerConfig::from_json(r#"{"beta_schedule": "scaled_linear"}"#).unwrap();
        let options = ScheduleOptions {
            sigma_min: Some(0.1),
            sigma_max: Some(10.0),
            rho: None,
        };
        let build = |kind, o: &ScheduleOptions| {
            build_schedule_with(kind, Sampler::Euler, 8, &config, None, o)
        };
        for kind in [
            ScheduleKind::Karras,
            ScheduleKind::Exponential,
            ScheduleKind::Polyexponential,
        ] {
            let s = build(kind, &options).unwrap();
            assert!((s.sigmas[0] - 10.0).abs() < 1e-5, "{kind}: {:?}", s.sigmas);
            assert!((s.sigmas[7] - 0.1).abs() < 1e-6, "{kind}: {:?}", s.sigmas);
        }
        // rho changes karras' spacing but not its ends.
        let rho3 = ScheduleOptions {
            rho: Some(3.0),
            ..options
        };
        let a = build(ScheduleKind::Karras, &options).unwrap();
        let b = build(ScheduleKind::Karras, &rho3).unwrap();
        assert!((a.sigmas[4] - b.sigmas[4]).abs() > 0.1);
        assert!(build(ScheduleKind::Normal, &options).is_err());
        assert!(build(ScheduleKind::Exponential, &rho3).is_err());
    }

    #[test]
    fn build_dispatches_on_kind() {
        let config = SchedulerConfig::from_json(
            r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "steps_offset": 1, "timestep_spacing": "leading"}"#,
        )
        .unwrap();
        let normal =
            build_schedule(ScheduleKind::Normal, Sampler::Euler, 20, &config, None).unwrap();
        assert_eq!(normal.timesteps[0], 999.0);
        assert_eq!(normal.convention, NoiseConvention::KDiffusion);
        assert_eq!(
            normal.table,
            DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap()
        );
        let model = build_schedule(ScheduleKind::Model, Sampler::Ddim, 20, &config, None).unwrap();
        assert_eq!(model.timesteps[0], 951.0);
        assert_eq!(model.convention, NoiseConvention::Diffusers);
        assert_ne!(
            model.table, normal.table,
            "diffusers' float32 table differs from LDM's"
        );
        let karras = build_schedule(
            ScheduleKind::Karras,
            Sampler::EulerAncestral,
            10,
            &config,
            Some(&model.table),
        )
        .unwrap();
        assert_eq!(karras.table, model.table);
        assert_eq!(karras.sigmas.len(), 11);
    }

    #[test]
    fn dpm2_drops_the_next_to_last_sigma() {
        let config = SchedulerConfig::from_json(r#"{"beta_schedule": "scaled_linear"}"#).unwrap();
        let table = DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap();
        for kind in [ScheduleKind::Normal, ScheduleKind::Karras] {
            let dpm2 = build_schedule(kind, Sampler::Dpm2, 10, &config, Some(&table)).unwrap();
            let euler = build_schedule(kind, Sampler::Euler, 11, &config, Some(&table)).unwrap();
            assert_eq!(dpm2.steps(), 10);
            let mut expected = euler.sigmas.clone();
            expected.remove(10);
            assert_eq!(dpm2.sigmas, expected);
            assert_eq!(dpm2.timesteps[..], euler.timesteps[..10]);
        }
    }

    #[test]
    fn schedule_names_round_trip() {
        for k in ScheduleKind::ALL {
            assert_eq!(k.name().parse::<ScheduleKind>().unwrap(), k);
        }
        assert_eq!(
            "Karras".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::Karras
        );
        let err = "cosine".parse::<ScheduleKind>().unwrap_err().to_string();
        assert!(
            err.contains("normal, karras, exponential, polyexponential, sgm_uniform"),
            "{err}"
        );
        assert_eq!(
            "SGM Uniform".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::SgmUniform
        );
        assert_eq!(
            "DDIM".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::DdimUniform
        );
    }
}
