//! Gradient clipping by the global L2 norm (`torch.nn.utils.clip_grad_norm_`).

use candle_core::backprop::GradStore;
use candle_core::DType;

use crate::error::Result;
use crate::named_vars::NamedVars;

/// Scales every gradient of `vars` in `grads` so that their joint L2 norm is at most
/// `max_norm`. Returns the norm before clipping.
pub fn clip_grad_norm(vars: &NamedVars, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for (_, var) in vars.iter() {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (_, var) in vars.iter() {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn clips_to_the_norm_and_keeps_directions() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let a = vb
            .get_with_hints(2, "a", candle_nn::Init::Const(1.0))
            .unwrap();
        let b = vb
            .get_with_hints(1, "b", candle_nn::Init::Const(1.0))
            .unwrap();
        let vars = NamedVars::from_varmap(&map);
        // loss = 3 a0 + 0 a1 + 4 b: gradient (3, 0, 4), norm 5.
        let w = Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap();
        let loss =
            ((a * w).unwrap().sum_all().unwrap() + (b * 4.0).unwrap().sum_all().unwrap()).unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let (_, va) = vars.iter().next().unwrap();
        let ga: Vec<f32> = grads.get(va.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((ga[0] - 0.6).abs() < 1e-5 && ga[1] == 0.0, "{ga:?}");
        // Below the threshold nothing changes.
        let norm2 = clip_grad_norm(&vars, &mut grads, 10.0).unwrap();
        assert!((norm2 - 1.0).abs() < 1e-5);
    }
}
