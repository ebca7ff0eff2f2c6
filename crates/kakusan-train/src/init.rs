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

/// Applies the rules above to `vars` (names relative to their component, or prefixed); the
/// embeddings are drawn from `seed` (`seeded_init.rs`), so a run is reproducible.
pub fn initialise(vars: &NamedVars, seed: u64) -> Result<()> {
    for (name, var) in vars.iter() {
        let t = var.as_tensor();
        if name.ends_with("token_embedding.weight") || name.ends_with("position_embedding.weight") {
            let stream = crate::seeded_init::variable_seed(seed, name);
            let values = crate::seeded_init::normal(stream, t.elem_count(), 0.0, 0.02);
            var.set(&Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
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
    load_weights(vars, weights, false)?;
    Ok(vars.len())
}

/// As [`load_initial_weights`], but the variables whose names start with one of
/// `new_prefixes` may be missing from `weights` (layers added to a trained architecture) or
/// have another shape there (a widened layer; `["unet."]` keeps a trained text encoder
/// under a new UNet): they keep their fresh initialisation, except the output projections of new residual
/// branches (names ending in `proj_out.weight` / `proj_out.bias`), which are set to zero so
/// that each new branch starts as the identity. Returns the names of the new variables.
pub fn load_initial_weights_growing(
    vars: &NamedVars,
    weights: &std::collections::HashMap<String, Tensor>,
    new_prefixes: &[String],
) -> Result<Vec<String>> {
    let shapes: std::collections::HashMap<&str, Vec<usize>> = vars
        .iter()
        .map(|(name, var)| (name, var.dims().to_vec()))
        .collect();
    let is_new = |name: &str| {
        let fits = match (weights.get(name), shapes.get(name)) {
            (Some(t), Some(want)) => t.dims() == want.as_slice(),
            _ => false,
        };
        !fits && new_prefixes.iter().any(|p| name.starts_with(p.as_str()))
    };
    let new = vars.filtered(is_new);
    for (name, var) in new.iter() {
        if name.ends_with("proj_out.weight") || name.ends_with("proj_out.bias") {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
    }
    load_weights(&vars.filtered(|name| !is_new(name)), weights, false)?;
    Ok(new.iter().map(|(name, _)| name.to_string()).collect())
}

/// As [`load_initial_weights`], but a tensor may also have fewer rows (first dimension)
/// than its variable, the rest of its shape equal: an output layer that gained classes
/// since the weights were trained. The tensor fills the variable's first rows; the new
/// classes keep their fresh initialisation. Returns the names of the variables that grew.
pub fn load_initial_weights_with_new_classes(
    vars: &NamedVars,
    weights: &std::collections::HashMap<String, Tensor>,
) -> Result<Vec<String>> {
    load_weights(vars, weights, true)
}

fn load_weights(
    vars: &NamedVars,
    weights: &std::collections::HashMap<String, Tensor>,
    allow_new_rows: bool,
) -> Result<Vec<String>> {
    let mut grown = Vec::new();
    for (name, var) in vars.iter() {
        let t = weights.get(name).ok_or_else(|| {
            crate::error::TrainError::Config(format!(
                "the initial weights have no {name}; they belong to another model"
            ))
        })?;
        let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
        let (have, want) = (t.dims(), var.dims());
        if have == want {
            var.set(&t)?;
            continue;
        }
        let more_rows = allow_new_rows
            && have.len() == want.len()
            && !have.is_empty()
            && have[0] < want[0]
            && have[1..] == want[1..];
        if !more_rows {
            return Err(crate::error::TrainError::Config(format!(
                "initial weight {name} has shape {have:?}, the model {want:?}"
            )));
        }
        let fresh = var.as_tensor().narrow(0, have[0], want[0] - have[0])?;
        var.set(&Tensor::cat(&[&t, &fresh], 0)?)?;
        grown.push(name.to_string());
    }
    Ok(grown)
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

    #[test]
    fn a_head_with_new_classes_keeps_the_old_rows() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints((3, 2), "head.weight", Init::Const(7.0))
            .unwrap();
        vb.get_with_hints(2, "other", Init::Const(0.0)).unwrap();
        let vars = NamedVars::from_varmap(&map);
        let dev = &Device::Cpu;
        let weights = std::collections::HashMap::from([
            (
                "head.weight".to_string(),
                Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], dev).unwrap(),
            ),
            ("other".to_string(), Tensor::new(&[5f32, 6.0], dev).unwrap()),
        ]);
        // Plain loading refuses the shorter head.
        assert!(load_initial_weights(&vars, &weights).is_err());
        let grown = load_initial_weights_with_new_classes(&vars, &weights).unwrap();
        assert_eq!(grown, vec!["head.weight".to_string()]);
        let get = |n: &str| vars.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        let head: Vec<Vec<f32>> = get("head.weight").as_tensor().to_vec2().unwrap();
        assert_eq!(head, vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![7.0, 7.0]]);
        let other: Vec<f32> = get("other").as_tensor().to_vec1().unwrap();
        assert_eq!(other, vec![5.0, 6.0]);
        // Fewer columns, or more rows than the variable, are still refused.
        let wide = std::collections::HashMap::from([
            (
                "head.weight".to_string(),
                Tensor::new(&[[1f32, 2.0, 3.0]], dev).unwrap(),
            ),
            ("other".to_string(), Tensor::new(&[5f32, 6.0], dev).unwrap()),
        ]);
        assert!(load_initial_weights_with_new_classes(&vars, &wide).is_err());
    }

    #[test]
    fn growing_keeps_new_layers_fresh_with_zero_output_projections() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints(2, "old.weight", Init::Const(0.0))
            .unwrap();
        vb.get_with_hints(3, "new.attn.to_q.weight", Init::Const(5.0))
            .unwrap();
        vb.get_with_hints(3, "new.attn.proj_out.weight", Init::Const(5.0))
            .unwrap();
        vb.get_with_hints(2, "other.weight", Init::Const(0.0))
            .unwrap();
        let vars = NamedVars::from_varmap(&map);
        let t = |v: f32, n: usize| Tensor::full(v, n, &Device::Cpu).unwrap();
        let values = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .as_tensor()
                .to_vec1::<f32>()
                .unwrap()
        };
        let prefixes = vec!["new.".to_string()];
        let mut weights = std::collections::HashMap::from([("old.weight".to_string(), t(1.0, 2))]);
        // A variable outside the new prefixes must still be present.
        let err = load_initial_weights_growing(&vars, &weights, &prefixes).unwrap_err();
        assert!(err.to_string().contains("other.weight"), "{err}");
        weights.insert("other.weight".to_string(), t(2.0, 2));
        let mut new = load_initial_weights_growing(&vars, &weights, &prefixes).unwrap();
        new.sort();
        assert_eq!(new, ["new.attn.proj_out.weight", "new.attn.to_q.weight"]);
        assert_eq!(values("old.weight"), [1.0, 1.0]);
        assert_eq!(values("other.weight"), [2.0, 2.0]);
        assert_eq!(values("new.attn.to_q.weight"), [5.0; 3]);
        assert_eq!(values("new.attn.proj_out.weight"), [0.0; 3]);
        // A new layer that the weights do have is loaded like any other.
        weights.insert("new.attn.to_q.weight".to_string(), t(7.0, 3));
        let new = load_initial_weights_growing(&vars, &weights, &prefixes).unwrap();
        assert_eq!(new, ["new.attn.proj_out.weight"]);
        assert_eq!(values("new.attn.to_q.weight"), [7.0; 3]);
        // One of another shape (a widened layer) starts fresh; outside the prefixes it is
        // an error.
        weights.insert("new.attn.to_q.weight".to_string(), t(8.0, 4));
        let mut new = load_initial_weights_growing(&vars, &weights, &prefixes).unwrap();
        new.sort();
        assert_eq!(new, ["new.attn.proj_out.weight", "new.attn.to_q.weight"]);
        assert_eq!(values("new.attn.to_q.weight"), [7.0; 3]);
        weights.insert("other.weight".to_string(), t(2.0, 5));
        assert!(load_initial_weights_growing(&vars, &weights, &prefixes).is_err());
    }
}
