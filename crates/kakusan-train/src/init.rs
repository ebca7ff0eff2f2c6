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

/// Sets every variable of `vars` to the tensor of the same name in `weights` (converted to
/// the variable's dtype and device): starting a run from trained weights (fine-tuning, or
/// continuing from an exported intermediate). Every variable must be present with its
/// shape; extra tensors are ignored. Returns the number of variables set.
pub fn load_initial_weights(
    vars: &NamedVars,
    weights: &std::collections::HashMap<String, Tensor>,
) -> Result<usize> {
    for (name, var) in vars.iter() {
        let t = weights.get(name).ok_or_else(|| {
            crate::error::TrainError::Config(format!(
                "the initial weights have no {name}; they belong to another model"
            ))
        })?;
        if t.dims() != var.dims() {
            return Err(crate::error::TrainError::Config(format!(
                "initial weight {name} has shape {:?}, the model {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(vars.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder, VarMap};

    #[test]
    fn initial_weights_are_loaded_by_name_with_checks() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints(2, "a.weight", Init::Const(0.0)).unwrap();
        let vars = NamedVars::from_varmap(&map);
        let good = std::collections::HashMap::from([
            (
                "a.weight".to_string(),
                Tensor::new(&[1f32, 2.0], &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F16)
                    .unwrap(),
            ),
            (
                "extra".to_string(),
                Tensor::new(&[0f32], &Device::Cpu).unwrap(),
            ),
        ]);
        assert_eq!(load_initial_weights(&vars, &good).unwrap(), 1);
        let v: Vec<f32> = vars.iter().next().unwrap().1.as_tensor().to_vec1().unwrap();
        assert_eq!(v, vec![1.0, 2.0]);

        let wrong = std::collections::HashMap::from([(
            "a.weight".to_string(),
            Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap(),
        )]);
        let err = load_initial_weights(&vars, &wrong).unwrap_err().to_string();
        assert!(err.contains("a.weight") && err.contains("[3]"), "{err}");
        let empty = std::collections::HashMap::new();
        assert!(load_initial_weights(&vars, &empty).is_err());
    }
}
