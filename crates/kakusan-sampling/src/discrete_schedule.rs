//! The model's discrete noise schedule: the `num_train_timesteps` (usually 1000) training
//! noise levels of a DDPM-trained model, and the maps between a timestep `t` (fractional
//! allowed) and a noise level sigma.
//!
//! A noise level is expressed in k-diffusion's scaling, `x = x0 + sigma * eps`, with
//! `sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])`.
//!
//! Two ways of building the table exist in the reference tools and differ by up to ~1e-5
//! relative in sigma:
//! - diffusers ([`DiscreteSchedule::diffusers`]): float32 betas from `torch.linspace`,
//!   `alphas = 1 - betas` in float32, `torch.cumprod` (accumulated in double on the CPU,
//!   each product stored as float32);
//! - LDM checkpoints / k-diffusion / A1111 ([`DiscreteSchedule::ldm`]): everything in
//!   float64, the cumulative product then stored as float32 (the `alphas_cumprod` buffer).
//!
//! Both then take sigma in float32 arithmetic, as both references do. All values are kept
//! as `f64` holding those float32 numbers.

use crate::error::{Error, Result};
use crate::reference_numerics::{numpy_interp_unit_grid, torch_linspace_f32, torch_linspace_f64};

/// How betas are laid out over the training timesteps (`beta_schedule` of a diffusers
/// scheduler config).
#[derive(Debug, Clone, PartialEq)]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end)`.
    Linear { start: f64, end: f64 },
    /// `linspace(sqrt(beta_start), sqrt(beta_end)) ** 2` (every Stable Diffusion 1.x/2.x).
    ScaledLinear { start: f64, end: f64 },
    /// The cosine schedule (`squaredcos_cap_v2`): betas from
    /// `alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2`, capped at 0.999.
    SquaredCosCapV2,
    /// Explicit betas (`trained_betas`).
    Trained(Vec<f64>),
}

/// How fractional timesteps map to sigmas between the table's integer entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Linear in log sigma (k-diffusion's `DiscreteSchedule`, A1111, ComfyUI).
    Log,
    /// Linear in sigma (`np.interp`, diffusers' Euler schedulers with
    /// `interpolation_type = "linear"`).
    Linear,
}

/// The zero-SNR rescale pins the last alpha_cumprod here instead of 0 (diffusers' Euler
/// schedulers do this so the first sigma is finite: sigma = 4096).
const ZERO_SNR_LAST_ALPHA_CUMPROD: f32 = 1.0 / 16_777_216.0;

/// The training noise levels of a discrete-time diffusion model.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteSchedule {
    alphas_cumprod: Vec<f64>,
    /// sigma for t = 0, 1, ..., n-1 (ascending).
    sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
}

impl DiscreteSchedule {
    /// A schedule from explicit `alphas_cumprod` (e.g. a checkpoint's buffer). Each value is
    /// rounded to float32, as the references hold it. Values must lie in (0, 1) and
    /// decrease.
    pub fn from_alphas_cumprod(alphas_cumprod: &[f64]) -> Result<Self> {
        let ac: Vec<f32> = alphas_cumprod.iter().map(|&a| a as f32).collect();
        Self::from_f32(&ac)
    }

    fn from_f32(ac: &[f32]) -> Result<Self> {
        if ac.len() < 2 {
            return Err(Error::InvalidSchedule(format!(
                "a discrete schedule needs at least 2 training timesteps, got {}",
                ac.len()
            )));
        }
        if let Some((i, a)) = ac.iter().enumerate().find(|(_, &a)| !(a > 0.0 && a < 1.0)) {
            return Err(Error::InvalidSchedule(format!(
                "alphas_cumprod[{i}] = {a} is outside (0, 1); the betas or the zero-SNR setting do not describe a usable schedule"
            )));
        }
        if ac.windows(2).any(|w| w[1] >= w[0]) {
            return Err(Error::InvalidSchedule(
                "alphas_cumprod must decrease strictly with t (betas must be positive)".into(),
            ));
        }
        // torch: ((1 - ac) / ac) ** 0.5 on float32 tensors (pow 0.5 is a square root).
        let sigmas: Vec<f64> = ac
            .iter()
            .map(|&a| ((1.0f32 - a) / a).sqrt() as f64)
            .collect();
        Ok(Self {
            alphas_cumprod: ac.iter().map(|&a| a as f64).collect(),
            log_sigmas: sigmas.iter().map(|s| s.ln()).collect(),
            sigmas,
        })
    }

    /// The table a diffusers scheduler builds from its config (float32 arithmetic, see the
    /// module docs). `rescale_zero_snr` applies diffusers' `rescale_zero_terminal_snr`
    /// and then, like its Euler schedulers, sets the last alpha_cumprod to 2^-24.
    pub fn diffusers(
        betas: &BetaSchedule,
        num_train_timesteps: usize,
        rescale_zero_snr: bool,
    ) -> Result<Self> {
        let mut betas = diffusers_betas_f32(betas, num_train_timesteps)?;
        if rescale_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|&b| 1.0f32 - b).collect();
        let mut ac = cumprod_f32_double_accumulator(&alphas);
        if rescale_zero_snr {
            if let Some(last) = ac.last_mut() {
                *last = ZERO_SNR_LAST_ALPHA_CUMPROD;
            }
        }
        Self::from_f32(&ac)
    }

    /// The table of an LDM checkpoint (what k-diffusion, A1111 and ComfyUI sample with):
    /// betas = `linspace(sqrt(beta_start), sqrt(beta_end), n) ** 2` in float64, cumulative
    /// product in float64, stored as float32. SD 1.x/2.x use (0.00085, 0.012, 1000).
    pub fn ldm(beta_start: f64, beta_end: f64, num_train_timesteps: usize) -> Result<Self> {
        let betas = torch_linspace_f64(beta_start.sqrt(), beta_end.sqrt(), num_train_timesteps);
        let mut product = 1.0f64;
        let ac: Vec<f32> = betas
            .iter()
            .map(|b| {
                product *= 1.0 - b * b;
                product as f32
            })
            .collect();
        Self::from_f32(&ac)
    }

    /// ComfyUI's table (`ModelSamplingDiscrete`): betas, cumulative product *and sigma* in
    /// float64, sigma and log sigma then stored as float32. Near t = 0 it differs from
    /// [`ldm`](Self::ldm)'s (sigma from float32 alphas_cumprod, where `1 - ac` cancels) by up
    /// to ~1.3e-5 relative; elsewhere by float32 rounding.
    pub fn comfy(beta_start: f64, beta_end: f64, num_train_timesteps: usize) -> Result<Self> {
        let betas = torch_linspace_f64(beta_start.sqrt(), beta_end.sqrt(), num_train_timesteps);
        let mut product = 1.0f64;
        let ac: Vec<f64> = betas
            .iter()
            .map(|b| {
                product *= 1.0 - b * b;
                product
            })
            .collect();
        let checked = Self::from_f32(&ac.iter().map(|&a| a as f32).collect::<Vec<_>>())?;
        let sigmas64: Vec<f64> = ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect();
        Ok(Self {
            alphas_cumprod: checked.alphas_cumprod,
            log_sigmas: sigmas64.iter().map(|s| s.ln() as f32 as f64).collect(),
            sigmas: sigmas64.iter().map(|&s| s as f32 as f64).collect(),
        })
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// Always false for a built schedule (at least 2 timesteps); present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// `alphas_cumprod[t]` for t = 0..n (float32 values).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// sigma for each integer timestep t = 0..n (ascending).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The smallest training sigma (t = 0).
    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    /// The largest training sigma (t = n - 1).
    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The largest valid timestep, `n - 1`.
    pub fn t_max(&self) -> f64 {
        (self.sigmas.len() - 1) as f64
    }

    /// sigma at a (possibly fractional) timestep; t is clamped to [0, n - 1].
    pub fn t_to_sigma(&self, t: f64, interpolation: Interpolation) -> f64 {
        let t = t.clamp(0.0, self.t_max());
        match interpolation {
            Interpolation::Linear => numpy_interp_unit_grid(t, &self.sigmas),
            Interpolation::Log => {
                let low = t.floor() as usize;
                let high = t.ceil() as usize;
                let w = t - low as f64;
                ((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
            }
        }
    }

    /// [`t_to_sigma`](Self::t_to_sigma) with log interpolation as k-diffusion and ComfyUI
    /// compute it on float32 tensors (`log_sigmas` in float32, `(1 - w) a + w b` rounded
    /// after each operation, then exp), so that schedules built from it carry the
    /// references' float32 values (the SDE samplers' Brownian tree resolves time to 1e-6,
    /// about one float32 ulp at sigma ~ 10, so an ulp can change its noise).
    pub fn t_to_sigma_f32(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.t_max()) as f32;
        let low = t.floor();
        let high = t.ceil();
        let w = t - low;
        let ls = |i: f32| self.sigmas[i as usize].ln() as f32;
        let log_sigma = (1.0 - w) * ls(low) + w * ls(high);
        (log_sigma as f64).exp() as f32 as f64
    }

    /// The (fractional) timestep of a sigma: the inverse of [`t_to_sigma`](Self::t_to_sigma)
    /// with the same interpolation, clamped to [0, n - 1] outside the table. Exact at table
    /// entries (sigma of integer t gives back t).
    pub fn sigma_to_t(&self, sigma: f64, interpolation: Interpolation) -> f64 {
        let (table, value) = match interpolation {
            Interpolation::Log => (&self.log_sigmas, sigma.max(1e-10).ln()),
            Interpolation::Linear => (&self.sigmas, sigma),
        };
        // Index of the last entry <= value, kept so that low + 1 is valid (k-diffusion's
        // rule: low = count(entries <= value) - 1, clamped to [0, n - 2]).
        let count = table.partition_point(|&entry| entry <= value);
        let low = count.saturating_sub(1).min(table.len() - 2);
        let (a, b) = (table[low], table[low + 1]);
        let w = ((a - value) / (a - b)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * (low + 1) as f64
    }
}

/// Betas as a diffusers scheduler holds them (float32).
fn diffusers_betas_f32(schedule: &BetaSchedule, n: usize) -> Result<Vec<f32>> {
    let betas = match schedule {
        BetaSchedule::Linear { start, end } => torch_linspace_f32(*start, *end, n),
        BetaSchedule::ScaledLinear { start, end } => {
            torch_linspace_f32(start.sqrt(), end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect()
        }
        BetaSchedule::SquaredCosCapV2 => {
            let alpha_bar = |t: f64| {
                ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                    .cos()
                    .powi(2)
            };
            (0..n)
                .map(|i| {
                    let t1 = i as f64 / n as f64;
                    let t2 = (i + 1) as f64 / n as f64;
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect()
        }
        BetaSchedule::Trained(betas) => {
            if betas.len() != n {
                return Err(Error::InvalidSchedule(format!(
                    "trained_betas has {} values but num_train_timesteps is {n}",
                    betas.len()
                )));
            }
            betas.iter().map(|&b| b as f32).collect()
        }
    };
    Ok(betas)
}

/// `torch.cumprod` of a float32 tensor on the CPU: the running product is kept in double
/// and each output rounded to float32.
fn cumprod_f32_double_accumulator(values: &[f32]) -> Vec<f32> {
    let mut product = 1.0f64;
    values
        .iter()
        .map(|&v| {
            product *= v as f64;
            product as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` on float32 betas (Lin et al. 2023, Algorithm 1):
/// shifts sqrt(alphas_cumprod) so the last is 0 and rescales so the first is unchanged.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|&b| 1.0f32 - b).collect();
    let ac = cumprod_f32_double_accumulator(&alphas);
    let sqrt_ac: Vec<f32> = ac.iter().map(|a| a.sqrt()).collect();
    let first = sqrt_ac[0];
    let last = sqrt_ac[sqrt_ac.len() - 1];
    let scale = first / (first - last);
    let rescaled_ac: Vec<f32> = sqrt_ac
        .iter()
        .map(|&s| {
            let s = (s - last) * scale;
            s * s
        })
        .collect();
    let mut out = Vec::with_capacity(betas.len());
    out.push(1.0f32 - rescaled_ac[0]);
    for w in rescaled_ac.windows(2) {
        out.push(1.0f32 - w[1] / w[0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> DiscreteSchedule {
        DiscreteSchedule::diffusers(
            &BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012,
            },
            1000,
            false,
        )
        .unwrap()
    }

    #[test]
    fn sd_sigma_range_is_the_known_one() {
        let s = sd();
        assert_eq!(s.len(), 1000);
        // Known SD values: sigma_min 0.0292, sigma_max 14.6146.
        assert!((s.sigma_min() - 0.029_167_5).abs() < 1e-6);
        assert!((s.sigma_max() - 14.614_642).abs() < 1e-4);
    }

    #[test]
    fn sigma_to_t_inverts_t_to_sigma_in_both_modes() {
        let s = sd();
        for interpolation in [Interpolation::Log, Interpolation::Linear] {
            for &t in &[0.0, 0.5, 1.0, 417.25, 946.421_05, 998.9, 999.0] {
                let sigma = s.t_to_sigma(t, interpolation);
                let back = s.sigma_to_t(sigma, interpolation);
                assert!(
                    (back - t).abs() < 1e-9,
                    "{interpolation:?} t={t} back={back}"
                );
            }
            // Integer timesteps come back exactly.
            for t in [0usize, 1, 51, 951, 999] {
                assert_eq!(s.sigma_to_t(s.sigmas()[t], interpolation), t as f64);
            }
        }
    }

    #[test]
    fn sigma_to_t_clamps_outside_the_table() {
        let s = sd();
        assert_eq!(s.sigma_to_t(100.0, Interpolation::Log), 999.0);
        assert_eq!(s.sigma_to_t(1e-5, Interpolation::Log), 0.0);
        assert_eq!(s.sigma_to_t(0.0, Interpolation::Linear), 0.0);
    }

    #[test]
    fn log_and_linear_interpolation_differ_between_entries() {
        let s = sd();
        let a = s.t_to_sigma(500.5, Interpolation::Log);
        let b = s.t_to_sigma(500.5, Interpolation::Linear);
        assert!(a < b, "log interpolation lies below the chord");
        assert_eq!(s.t_to_sigma(500.0, Interpolation::Log), s.sigmas()[500]);
    }

    #[test]
    fn zero_snr_gives_a_finite_huge_first_sigma() {
        let s = DiscreteSchedule::diffusers(
            &BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012,
            },
            1000,
            true,
        )
        .unwrap();
        assert!((s.sigma_max() - 4096.0).abs() < 1.0);
    }

    #[test]
    fn other_beta_schedules_match_diffusers() {
        // sigma at t = 0, 1, 500, 998, 999 from diffusers 0.42.1's EulerDiscreteScheduler
        // (alphas_cumprod as the scheduler holds it, sigma in float64 from those).
        let cases: [(BetaSchedule, bool, [f64; 5]); 3] = [
            (
                BetaSchedule::Linear {
                    start: 0.0001,
                    end: 0.02,
                },
                false,
                [
                    0.010001329705119133,
                    0.014832044020295143,
                    3.442967414855957,
                    155.82518005371094,
                    157.4072723388672,
                ],
            ),
            (
                BetaSchedule::SquaredCosCapV2,
                false,
                [
                    0.006427108775824308,
                    0.009351345710456371,
                    1.0155508518218994,
                    641.6624145507812,
                    20291.302734375,
                ],
            ),
            (
                BetaSchedule::ScaledLinear {
                    start: 0.00085,
                    end: 0.012,
                },
                true,
                [
                    0.029167532920837402,
                    0.04206695780158043,
                    1.774558186531067,
                    2254.19482421875,
                    4095.999755859375,
                ],
            ),
        ];
        for (betas, zero_snr, expected) in cases {
            let s = DiscreteSchedule::diffusers(&betas, 1000, zero_snr).unwrap();
            for (t, want) in [0usize, 1, 500, 998, 999].into_iter().zip(expected) {
                let got = s.sigmas()[t];
                // Ours is the float32 sigma of the same float32 alphas_cumprod: 1e-6.
                assert!(
                    (got / want - 1.0).abs() < 1e-6,
                    "{betas:?} t={t}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(DiscreteSchedule::from_alphas_cumprod(&[0.9]).is_err());
        assert!(DiscreteSchedule::from_alphas_cumprod(&[0.9, 0.95]).is_err());
        assert!(DiscreteSchedule::from_alphas_cumprod(&[1.0, 0.5]).is_err());
        assert!(
            DiscreteSchedule::diffusers(&BetaSchedule::Trained(vec![0.1; 3]), 4, false).is_err()
        );
    }
}
