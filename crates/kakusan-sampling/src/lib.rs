//! kakusan-sampling owns sampling in k-diffusion's style: the [`Denoiser`] trait, the model's
//! discrete noise schedule, sigma schedules (k-diffusion's and diffusers'), noise sources and
//! samplers as plain functions.
//!
//! A run, in k-diffusion scaling (`x = x0 + sigma * eps`):
//! 1. build a [`SigmaSchedule`] ([`build_schedule`] for a [`ScheduleKind`]), cut it for
//!    img2img if needed ([`SigmaSchedule::for_img2img`]);
//! 2. wrap the network in a [`DiscreteDenoiser::for_schedule`] (the schedule's table and
//!    sigma -> t rule);
//! 3. start from `schedule.initial_latents(noise)` (txt2img) or
//!    `schedule.img2img_latents(init, noise)`;
//! 4. `Sampler::sample(...)`, then `schedule.final_latents(x)`.

pub mod brownian;
pub mod denoiser;
pub mod discrete_denoiser;
pub mod discrete_schedule;
pub mod error;
pub mod names;
pub mod noise;
pub mod reference_numerics;
pub mod sampler;
pub mod schedule;
pub mod scheduler_config;

pub use brownian::{BrownianTree, BrownianTreeNoise};
pub use denoiser::Denoiser;
pub use discrete_denoiser::{DiscreteDenoiser, ModelFn, Prediction};
pub use discrete_schedule::{BetaSchedule, DiscreteSchedule, Interpolation};
pub use error::{Error, Result};
pub use names::{parse_sampler_name, resolve};
pub use noise::{NoiseSource, TorchBatchNoise};
pub use sampler::{Sampler, SamplerOptions, StepInfo};
pub use schedule::img2img::Img2ImgConvention;
pub use schedule::{
    build_schedule, build_schedule_with, NoiseConvention, ScheduleKind, ScheduleOptions,
    SigmaSchedule,
};
pub use scheduler_config::{DiffusersScheduler, SchedulerConfig};
