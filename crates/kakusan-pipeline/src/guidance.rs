//! Classifier-free guidance as a network call: the UNet runs once on the batch
//! `[uncond; cond]` and the two halves are mixed as `uncond + scale * (cond - uncond)`.
//!
//! Guidance is applied to the raw network output (eps or v), exactly as diffusers does, so
//! our arithmetic follows the reference's order. (k-diffusion/A1111 mix the denoised x0;
//! for eps and v models the two are the same affine map of the output, so only rounding
//! differs.)

use candle_core::{DType, Tensor};
use kakusan_models::unet::UNet2DConditionModel;

/// The UNet with its conditioning bound: called by the sampler's denoiser.
pub struct GuidedUNet<'a> {
    pub unet: &'a UNet2DConditionModel,
    /// `[2B, 77, D]`: the negative-prompt embeddings of all images, then the prompt's.
    pub context: Tensor,
    pub cfg_scale: f64,
    /// Dtype the UNet's weights are in; inputs are cast to it and outputs back to f32.
    pub dtype: DType,
}

impl GuidedUNet<'_> {
    /// Runs the guided network on `x_in` (already scaled by c_in) at model timestep `t`.
    pub fn predict(&self, x_in: &Tensor, t: f64) -> candle_core::Result<Tensor> {
        let b = x_in.dim(0)?;
        if self.cfg_scale == 1.0 {
            // uncond + 1 * (cond - uncond) is cond: skip the unconditional half, as diffusers
            // and A1111 do.
            let timesteps = Tensor::full(t as f32, b, x_in.device())?;
            let cond_ctx = self.context.narrow(0, b, b)?;
            return self
                .unet
                .forward(&x_in.to_dtype(self.dtype)?, &timesteps, &cond_ctx)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?
                .to_dtype(DType::F32);
        }
        let doubled = Tensor::cat(&[x_in, x_in], 0)?.to_dtype(self.dtype)?;
        let timesteps = Tensor::full(t as f32, 2 * b, x_in.device())?;
        let out = self
            .unet
            .forward(&doubled, &timesteps, &self.context)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_dtype(DType::F32)?;
        let uncond = out.narrow(0, 0, b)?;
        let cond = out.narrow(0, b, b)?;
        let diff = (&cond - &uncond)?;
        uncond + (diff * self.cfg_scale)?
    }
}
