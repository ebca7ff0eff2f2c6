//! The `Denoiser` trait (k-diffusion's `denoise(x, sigma) -> x0`) and the wrapper that turns
//! a network predicting eps or v at a discrete timestep into one.

use candle_core::Tensor;

use crate::discrete_schedule::{DiscreteSchedule, Interpolation};
use crate::error::{Result, SamplingError};

/// Predicts the clean sample x0 from `x = x0 + sigma * eps`.
pub trait Denoiser {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

/// A raw network call: `x_in` is already scaled by `1 / sqrt(sigma^2 + 1)`, `t` is the model
/// timestep (fractional allowed); returns eps or v.
pub trait ModelFn {
    fn predict(&self, x_in: &Tensor, t: f64) -> Result<Tensor>;
}

impl<F: Fn(&Tensor, f64) -> candle_core::Result<Tensor>> ModelFn for F {
    fn predict(&self, x_in: &Tensor, t: f64) -> Result<Tensor> {
        self(x_in, t).map_err(|e| SamplingError::Model(e.to_string()))
    }
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

impl std::str::FromStr for Prediction {
    type Err = SamplingError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "epsilon" | "eps" => Ok(Self::Epsilon),
            "v_prediction" | "v" | "v-prediction" => Ok(Self::VPrediction),
            other => Err(SamplingError::Config(format!(
                "unknown prediction type {other:?}; valid: eps, v"
            ))),
        }
    }
}

/// k-diffusion's CompVisDenoiser / CompVisVDenoiser: a discrete-time network as a denoiser.
pub struct DiscreteDenoiser<'a, M: ModelFn> {
    pub model: &'a M,
    pub schedule: &'a DiscreteSchedule,
    pub prediction: Prediction,
    /// How sigma maps back to the model timestep (must match how the sigmas were made).
    pub interpolation: Interpolation,
}

impl<M: ModelFn> Denoiser for DiscreteDenoiser<'_, M> {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let t = self.schedule.sigma_to_t(sigma, self.interpolation);
        let out = self.model.predict(&(x * c_in)?, t)?;
        let x0 = match self.prediction {
            Prediction::Epsilon => (x - (out * sigma)?)?,
            Prediction::VPrediction => {
                let c_skip = 1.0 / (sigma * sigma + 1.0);
                let c_out = -sigma * c_in;
                ((x * c_skip)? + (out * c_out)?)?
            }
        };
        Ok(x0)
    }
}
