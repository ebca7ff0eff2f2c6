//! Initialisation of freshly built models beyond candle-nn's defaults (which already follow
//! PyTorch for linear and conv layers: Kaiming-uniform weights, uniform biases).
//!
//! - Embedding tables (`token_embedding`, `position_embedding`) get N(0, 0.02²), CLIP's
//!   initialisation, instead of candle's N(0, 1).
//! - The last layer of the UNet (`conv_out`) starts at zero, so the untrained model predicts
//!   zero noise rather than a random field and the first steps are stable.

use candle_core::Tensor;

use crate::error::Result;
use crate::named_vars::NamedVars;

/// Applies the rules above to `vars` (names relative to their component, or prefixed).
pub fn initialise(vars: &NamedVars) -> Result<()> {
    for (name, var) in vars.iter() {
        let t = var.as_tensor();
        if name.ends_with("token_embedding.weight") || name.ends_with("position_embedding.weight") {
            var.set(&Tensor::randn(0f32, 0.02, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
        } else if name == "conv_out.weight"
            || name.ends_with(".conv_out.weight") && name.starts_with("unet.")
        {
            var.set(&t.zeros_like()?)?;
        }
    }
    Ok(())
}
