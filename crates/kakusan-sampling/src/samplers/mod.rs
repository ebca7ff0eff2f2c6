//! Samplers as plain functions over a denoiser, the sigmas and a noise source.

pub mod euler;
pub mod euler_ancestral;
