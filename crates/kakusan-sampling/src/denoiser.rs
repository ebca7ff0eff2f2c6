//! The `Denoiser` trait: what every sampler calls.
//!
//! A denoiser takes a noisy sample in k-diffusion's scaling, `x = x0 + sigma * eps`, and the
//! noise level sigma, and returns its estimate of the clean sample x0 ("denoised"). The
//! network behind it, its input scaling, classifier-free guidance and the timestep it is
//! told are all the denoiser's business; samplers only see sigmas.

use crate::error::Result;
use candle_core::Tensor;

/// A model of the clean sample given a noisy one (Karras et al.'s D(x; sigma)).
pub trait Denoiser {
    /// The predicted x0 for `x` (shape [B, C, H, W], k-diffusion scaling) at noise level
    /// `sigma` (one level for the whole batch). Returns a tensor of `x`'s shape.
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

impl<D: Denoiser + ?Sized> Denoiser for &D {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        (**self).denoise(x, sigma)
    }
}
