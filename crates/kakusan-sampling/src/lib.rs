//! kakusan-sampling owns sampling in k-diffusion's style: the `Denoiser` trait, the model's
//! discrete noise schedule, sigma schedules, noise sources and samplers as plain functions.
