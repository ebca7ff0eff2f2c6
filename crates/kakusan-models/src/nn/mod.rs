//! Shared building blocks of the diffusion networks, written to compute what diffusers'
//! PyTorch layers compute: normalisations, the sinusoidal timestep embedding and its MLP,
//! the residual block, down/up-sampling, multi-head attention, the GEGLU feed-forward and
//! the spatial transformer. Layers are built from a `candle_nn::VarBuilder` whose names are
//! diffusers' names relative to the layer; they return `candle_core::Result`, and the
//! models (`unet`, `vae`) add where in the network an error happened.

mod activation;
mod attention;
mod attention_op;
mod avx2;
mod banded_conv;
mod bf16_attention_op;
mod bf16_geglu_linear_op;
mod bf16_gemm;
mod bf16_linear_op;
mod channel_bias;
mod conv;
mod conv2d_op;
mod cpu_bf16;
mod cpu_f32;
mod downsample;
mod fast_exp;
mod feed_forward;
mod fused_norms;
mod geglu_op;
mod group_norm;
mod im2col;
mod layer_norm;
mod linear;
pub mod norm_statistics;
mod prepacked_bf16;
mod resnet;
mod small_gemm;
mod softmax;
mod timestep_embedding;
mod timesteps;
mod transformer_2d;
mod transformer_block;
mod upsample;

pub use activation::{Activation, UnknownActivation};
pub use attention::{
    scaled_dot_product_attention, Attention, AttentionConfig, AttentionWeightNames,
    MAX_SCORES_AT_ONCE,
};
pub use channel_bias::add_channel_bias;
pub use conv::{conv2d, Conv2d};
pub use downsample::Downsample2D;
pub use feed_forward::{FeedForward, Geglu};
pub use group_norm::GroupNorm;
pub use im2col::{Col2Im, Im2Col, Patches};
pub use layer_norm::LayerNorm;
pub use linear::{linear, linear_b, Linear};
pub use resnet::{ResnetBlock2D, ResnetConfig};
pub use softmax::softmax_last_dim;
pub use timestep_embedding::TimestepEmbedding;
pub use timesteps::{timestep_frequencies, timestep_sinusoids, Timesteps};
pub use transformer_2d::{Transformer2DConfig, Transformer2DModel};
pub use transformer_block::{BasicTransformerBlock, TransformerBlockConfig};
pub use upsample::Upsample2D;

/// Helpers of the layer tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::Tensor;

    /// max |t| as f32.
    pub fn max_abs(t: &Tensor) -> f32 {
        t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    /// max |a - b| as f32.
    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs(&(a - b).unwrap())
    }

    /// The gradients of `sum(y * r)`: a dense, fixed upstream gradient `r` for comparing an
    /// op's backward pass with a reference's.
    pub fn weighted_sum_grads(y: &Tensor, r: &Tensor) -> candle_core::backprop::GradStore {
        (y * r).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// A norm's fused op against its tensor-op reference: the gradients of `sum(y * r)` for
    /// the outputs `fused` and `plain` agree within 1e-5 of their magnitude for each of the
    /// named variables (f32 results of sums over the norm's groups, f64-accumulated in the
    /// fused op, f32 in candle's autograd).
    pub fn assert_same_gradients(
        fused: &Tensor,
        plain: &Tensor,
        r: &Tensor,
        vars: &[(&str, &candle_core::Var)],
        case: &str,
    ) {
        let (gf, gp) = (weighted_sum_grads(fused, r), weighted_sum_grads(plain, r));
        for (name, v) in vars {
            let a = gf.get(v.as_tensor()).unwrap();
            let e = gp.get(v.as_tensor()).unwrap();
            let scale = max_abs(e);
            let diff = max_abs_diff(a, e);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{case}, {name}: {diff} (scale {scale})"
            );
        }
    }
}
