//! kakusan-sampling owns sampling in k-diffusion's style: the `Denoiser` trait, the model's
//! discrete noise schedule, sigma schedules, noise sources and samplers as plain functions.
//!
//! Conventions: latents `x` are in k-diffusion scaling, `x = x0 + sigma * eps`; the network
//! sees `x / sqrt(sigma^2 + 1)` and the model timestep `t` that maps to `sigma`.

pub mod denoiser;
pub mod discrete_schedule;
pub mod error;
pub mod noise;
pub mod sampler;
pub mod samplers;
pub mod scheduler_config;
pub mod sigma_schedule;

pub use denoiser::{Denoiser, DiscreteDenoiser, ModelFn, Prediction};
pub use discrete_schedule::{DiscreteSchedule, Interpolation};
pub use error::SamplingError;
pub use noise::{NoiseSource, TorchBatchNoise};
pub use sampler::{Sampler, StepInfo};
pub use scheduler_config::SchedulerConfig;
pub use sigma_schedule::{ScheduleKind, SigmaSchedule};
