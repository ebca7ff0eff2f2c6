//! Exponential moving average of the weights, the copy that is exported and sampled from.
//!
//! `shadow = d * shadow + (1 - d) * weights` with the warm-up `d = min(decay, (1 + n) /
//! (10 + n))` after `n` updates, so early averages are not dominated by the random start.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::{Result, TrainError};
use crate::fused_update::{self, cpu_f32_values};
use crate::named_vars::NamedVars;

pub struct Ema {
    decay: f64,
    shadow: HashMap<String, Tensor>,
    updates: u64,
}

impl Ema {
    /// Starts the average at the current weights.
    pub fn new(vars: &NamedVars, decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            .map(|(n, v)| Ok((n.to_string(), v.as_tensor().copy()?.detach())))
            .collect::<Result<_>>()?;
        Ok(Self {
            decay,
            shadow,
            updates: 0,
        })
    }

    /// The decay used for the next update.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Moves the average towards the current weights.
    pub fn update(&mut self, vars: &NamedVars) -> Result<()> {
        let d = self.current_decay();
        for (name, var) in vars.iter() {
            if let Some(s) = self.shadow.get_mut(name) {
                let w = var.as_tensor();
                // One pass on all threads for contiguous f32 CPU tensors, bit-identical to
                // the composite (fused_update.rs).
                let fused = match (cpu_f32_values(s), cpu_f32_values(w)) {
                    (Some(ss), Some(ws)) if ss.len() == ws.len() => {
                        Some(fused_update::ema(&ss, &ws, d))
                    }
                    _ => None,
                };
                *s = match fused {
                    Some(values) => Tensor::from_vec(values, s.shape(), s.device())?,
                    None => ((&*s * d)? + (w.detach() * (1.0 - d))?)?,
                };
            }
        }
        self.updates += 1;
        Ok(())
    }

    /// The averaged weights by name.
    pub fn weights(&self) -> &HashMap<String, Tensor> {
        &self.shadow
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Restores a saved average.
    pub fn load(&mut self, saved: &HashMap<String, Tensor>, updates: u64) -> Result<()> {
        for (name, s) in self.shadow.iter_mut() {
            let t = saved.get(name).ok_or_else(|| {
                TrainError::Config(format!(
                    "EMA state has no {name}; another model's checkpoint"
                ))
            })?;
            if t.dims() != s.dims() {
                return Err(TrainError::Config(format!(
                    "EMA {name} has shape {:?}, expected {:?}",
                    t.dims(),
                    s.dims()
                )));
            }
            *s = t.to_dtype(s.dtype())?.to_device(s.device())?;
        }
        self.updates = updates;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder, VarMap};

    #[test]
    fn averages_with_warm_up() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints(1, "w", Init::Const(0.0)).unwrap();
        let vars = NamedVars::from_varmap(&map);
        let mut ema = Ema::new(&vars, 0.99).unwrap();
        let (_, var) = vars.iter().next().unwrap();
        var.set(&Tensor::new(&[1f32], &Device::Cpu).unwrap())
            .unwrap();
        // First decay is min(0.99, 1/10) = 0.1: shadow = 0.9.
        ema.update(&vars).unwrap();
        let s: Vec<f32> = ema.weights()["w"].to_vec1().unwrap();
        assert!((s[0] - 0.9).abs() < 1e-6, "{s:?}");
        for _ in 0..2000 {
            ema.update(&vars).unwrap();
        }
        assert!((ema.current_decay() - 0.99).abs() < 1e-12);
        let s: Vec<f32> = ema.weights()["w"].to_vec1().unwrap();
        assert!((s[0] - 1.0).abs() < 1e-4);
    }
}
