//! Classifier-free guidance as a network call: the UNet runs once on the batch
//! `[uncond; cond]` and the two halves are mixed as `uncond + scale * (cond - uncond)`.
//! With `AND` (composable diffusion) the batch is `[uncond; cond_1; ...; cond_n]` and the mix
//! `uncond + sum_i (cond_i - uncond) * (w_i * scale)` (A1111's `combine_denoised`).
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
        guided_predict(
            self.unet,
            x_in,
            t,
            &self.context,
            &[1.0],
            self.cfg_scale,
            self.dtype,
        )
    }
}

/// The guided prediction for `x_in` (`[B, ...]`) with `context` =
/// `[uncond x B; cond_1 x B; ...; cond_n x B]` and `weights` the n `AND` weights.
pub fn guided_predict(
    unet: &UNet2DConditionModel,
    x_in: &Tensor,
    t: f64,
    context: &Tensor,
    weights: &[f64],
    cfg_scale: f64,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let b = x_in.dim(0)?;
    let single = weights == [1.0];
    if cfg_scale == 1.0 && single {
        // uncond + 1 * (cond - uncond) is cond: skip the unconditional half, as diffusers
        // and A1111 do.
        let timesteps = Tensor::full(t as f32, b, x_in.device())?;
        let cond_ctx = context.narrow(0, b, b)?;
        return unet
            .forward(&x_in.to_dtype(dtype)?, &timesteps, &cond_ctx)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_dtype(DType::F32);
    }
    let n = 1 + weights.len();
    let copies: Vec<&Tensor> = std::iter::repeat_n(x_in, n).collect();
    let batch = Tensor::cat(&copies, 0)?.to_dtype(dtype)?;
    let timesteps = Tensor::full(t as f32, n * b, x_in.device())?;
    let out = unet
        .forward(&batch, &timesteps, context)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        .to_dtype(DType::F32)?;
    let uncond = out.narrow(0, 0, b)?;
    if single {
        let cond = out.narrow(0, b, b)?;
        let diff = (&cond - &uncond)?;
        return uncond + (diff * cfg_scale)?;
    }
    let mut mixed = uncond.clone();
    for (i, w) in weights.iter().enumerate() {
        let cond = out.narrow(0, (i + 1) * b, b)?;
        mixed = (mixed + ((&cond - &uncond)? * (w * cfg_scale))?)?;
    }
    Ok(mixed)
}
