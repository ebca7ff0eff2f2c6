//! `DiscreteDenoiser`: turns a network trained on discrete DDPM timesteps (a Stable
//! Diffusion UNet, with classifier-free guidance applied by the caller's [`ModelFn`]) into a
//! [`Denoiser`], as k-diffusion's `CompVisDenoiser` (epsilon) and `CompVisVDenoiser`
//! (v-prediction) do.
//!
//! For a noise level sigma (k-diffusion scaling `x = x0 + sigma * eps`):
//! - the network sees `x * c_in` with `c_in = 1 / sqrt(sigma^2 + 1)` (this is the
//!   "variance-preserving" sample `sqrt(alpha_cumprod) * (x0 + sigma eps)` it was trained
//!   on) and the timestep `t` whose training sigma is `sigma` (fractional; see
//!   [`Interpolation`]);
//! - epsilon prediction: `x0 = x - sigma * out`;
//! - v prediction: `x0 = c_skip * x + c_out * out`, `c_skip = 1 / (sigma^2 + 1)`,
//!   `c_out = -sigma / sqrt(sigma^2 + 1)`.
//!
//! These are exactly what diffusers' Euler, Euler-ancestral and DDIM schedulers compute
//! (`scale_model_input` and their `pred_original_sample`), written in one place.

use crate::denoiser::Denoiser;
use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::Result;
use candle_core::Tensor;

/// What a network outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise eps (SD 1.x, SD 2.x base 512).
    Epsilon,
    /// The velocity v = sqrt(alpha_cumprod) eps - sqrt(1 - alpha_cumprod) x0 (SD 2.x 768).
    VPrediction,
}

impl std::str::FromStr for Prediction {
    type Err = crate::error::Error;

    /// Accepts "eps" / "epsilon" and "v" / "v_prediction" / "v-prediction", ignoring case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "epsilon" | "eps" => Ok(Self::Epsilon),
            "v_prediction" | "v" | "v-prediction" => Ok(Self::VPrediction),
            other => Err(crate::error::Error::UnsupportedConfig(format!(
                "unknown prediction type {other:?}; valid: eps, v"
            ))),
        }
    }
}

/// One raw network evaluation, guidance included.
pub trait ModelFn {
    /// The network output for `x_in` (already multiplied by `c_in`) at model timestep `t`
    /// (fractional allowed; the same for the whole batch).
    fn predict(&self, x_in: &Tensor, t: f64) -> Result<Tensor>;
}

impl<F> ModelFn for F
where
    F: Fn(&Tensor, f64) -> Result<Tensor>,
{
    fn predict(&self, x_in: &Tensor, t: f64) -> Result<Tensor> {
        self(x_in, t)
    }
}

/// A [`Denoiser`] over a discrete-timestep network.
#[derive(Debug, Clone)]
pub struct DiscreteDenoiser<M> {
    model: M,
    schedule: DiscreteSchedule,
    prediction: Prediction,
    interpolation: Interpolation,
}

impl<M: ModelFn> DiscreteDenoiser<M> {
    /// Wraps `model`; sigma -> t uses `interpolation` (take it from the
    /// [`SigmaSchedule`](crate::schedule::SigmaSchedule) being sampled, so t is the timestep
    /// the reference feeds the network).
    pub fn new(
        model: M,
        schedule: DiscreteSchedule,
        prediction: Prediction,
        interpolation: Interpolation,
    ) -> Self {
        Self {
            model,
            schedule,
            prediction,
            interpolation,
        }
    }

    /// Wraps `model` for sampling `schedule`: its training table and its sigma -> t rule.
    pub fn for_schedule(
        model: M,
        schedule: &crate::schedule::SigmaSchedule,
        prediction: Prediction,
    ) -> Self {
        Self::new(
            model,
            schedule.table.clone(),
            prediction,
            schedule.interpolation,
        )
    }

    /// The model timestep used for a given sigma.
    pub fn timestep(&self, sigma: f64) -> f64 {
        self.schedule.sigma_to_t(sigma, self.interpolation)
    }

    /// The training schedule.
    pub fn schedule(&self) -> &DiscreteSchedule {
        &self.schedule
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The prediction type.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }
}

impl<M: ModelFn> Denoiser for DiscreteDenoiser<M> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let var = sigma * sigma + 1.0;
        let c_in = 1.0 / var.sqrt();
        let out = self
            .model
            .predict(&x.affine(c_in, 0.0)?, self.timestep(sigma))?;
        let denoised = match self.prediction {
            Prediction::Epsilon => (x - out.affine(sigma, 0.0)?)?,
            Prediction::VPrediction => {
                let c_skip = 1.0 / var;
                let c_out = -sigma / var.sqrt();
                (out.affine(c_out, 0.0)? + x.affine(c_skip, 0.0)?)?
            }
        };
        Ok(denoised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete_schedule::BetaSchedule;
    use candle_core::Device;

    fn schedule() -> DiscreteSchedule {
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
    fn an_exact_eps_model_recovers_x0_for_both_predictions() {
        // x0 = 0.3, eps = -1.2 everywhere; a model that knows them answers exactly.
        let (x0, eps) = (0.3f64, -1.2f64);
        let sched = schedule();
        for &t in &[10.0, 500.0, 951.0] {
            let sigma = sched.t_to_sigma(t, Interpolation::Linear);
            let x = Tensor::full((x0 + sigma * eps) as f32, (1, 2, 2, 2), &Device::Cpu).unwrap();
            let eps_model = |x_in: &Tensor, t_in: f64| -> Result<Tensor> {
                assert!((t_in - t).abs() < 1e-9, "timestep {t_in} vs {t}");
                Ok(x_in.ones_like()?.affine(eps, 0.0)?)
            };
            let d = DiscreteDenoiser::new(
                eps_model,
                sched.clone(),
                Prediction::Epsilon,
                Interpolation::Linear,
            );
            let got: Vec<f32> = d
                .denoise(&x, sigma)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(got.iter().all(|v| (*v as f64 - x0).abs() < 1e-5), "{got:?}");

            // v = alpha eps - sqrt(1 - alpha^2) x0 with alpha = 1 / sqrt(sigma^2 + 1).
            let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
            let v = alpha * eps - (1.0 - alpha * alpha).sqrt() * x0;
            let v_model = move |x_in: &Tensor, _t: f64| -> Result<Tensor> {
                Ok(x_in.ones_like()?.affine(v, 0.0)?)
            };
            let d = DiscreteDenoiser::new(
                v_model,
                sched.clone(),
                Prediction::VPrediction,
                Interpolation::Log,
            );
            let got: Vec<f32> = d
                .denoise(&x, sigma)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                got.iter()
                    .all(|v| (*v as f64 - x0).abs() < 1e-4 * sigma.max(1.0)),
                "{got:?}"
            );
        }
    }

    #[test]
    fn the_network_sees_the_variance_preserving_input() {
        let sched = schedule();
        let sigma = 3.0;
        let x = Tensor::full(5.0f32, (1, 1, 1, 1), &Device::Cpu).unwrap();
        let probe = |x_in: &Tensor, _t: f64| -> Result<Tensor> {
            let v: Vec<f32> = x_in.flatten_all()?.to_vec1()?;
            assert!((v[0] as f64 - 5.0 / 10f64.sqrt()).abs() < 1e-6);
            Ok(x_in.zeros_like()?)
        };
        let d = DiscreteDenoiser::new(probe, sched, Prediction::Epsilon, Interpolation::Log);
        d.denoise(&x, sigma).unwrap();
    }
}
