//! AdamW (Loshchilov & Hutter; `torch.optim.AdamW` semantics: decoupled weight decay applied
//! as `p -= lr * wd * p` before the Adam step, bias-corrected moments).
//!
//! Our own rather than candle-nn's so that the moments can be saved in a checkpoint and a
//! resumed run continues exactly where the killed one stopped.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::error::{Result, TrainError};
use crate::fused_update::{self, cpu_f32_values, AdamWCoefficients};
use crate::named_vars::NamedVars;

/// AdamW hyper-parameters (the learning rate comes per step from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimiser state: first and second moments per variable and the step count.
pub struct AdamW {
    config: AdamWConfig,
    vars: NamedVars,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    /// Learning-rate multiplier per variable name (absent: 1).
    lr_scale: HashMap<String, f64>,
    steps: u64,
}

impl AdamW {
    pub fn new(vars: NamedVars, config: AdamWConfig) -> Result<Self> {
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (name, var) in vars.iter() {
            m.insert(name.to_string(), var.as_tensor().zeros_like()?);
            v.insert(name.to_string(), var.as_tensor().zeros_like()?);
        }
        Ok(Self {
            config,
            vars,
            m,
            v,
            lr_scale: HashMap::new(),
            steps: 0,
        })
    }

    /// Per-group learning rates (PyTorch's parameter groups): each variable whose name starts
    /// with a prefix of `scales` gets the schedule's rate times that factor (the longest
    /// matching prefix wins), weight decay included, since it is `lr * wd`. A prefix that
    /// names no variable is an error, so a typo cannot silently train at the full rate.
    pub fn with_lr_scales(mut self, scales: &BTreeMap<String, f64>) -> Result<Self> {
        for (prefix, &scale) in scales {
            if !(scale > 0.0 && scale.is_finite()) {
                return Err(TrainError::Config(format!(
                    "lr_scales.\"{prefix}\" is {scale}; it must be a positive number"
                )));
            }
            if !self
                .vars
                .iter()
                .any(|(name, _)| name.starts_with(prefix.as_str()))
            {
                return Err(TrainError::Config(format!(
                    "lr_scales.\"{prefix}\" names no variable of this model"
                )));
            }
        }
        self.lr_scale = self
            .vars
            .iter()
            .filter_map(|(name, _)| {
                scales
                    .iter()
                    .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .map(|(_, &scale)| (name.to_string(), scale))
            })
            .collect();
        Ok(self)
    }

    /// Number of updates made so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update with learning rate `lr`. Variables without a gradient are left alone
    /// (their moments too).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (name, var) in self.vars.iter() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let (Some(m), Some(v)) = (self.m.get_mut(name), self.v.get_mut(name)) else {
                continue;
            };
            let lr = lr * self.lr_scale.get(name).copied().unwrap_or(1.0);
            let p = var.as_tensor();
            // Contiguous f32 CPU operands: one pass on all threads, bit-identical to the
            // composite below (fused_update.rs).
            let fused = match (
                cpu_f32_values(p),
                cpu_f32_values(g),
                cpu_f32_values(m),
                cpu_f32_values(v),
            ) {
                (Some(ps), Some(gs), Some(ms), Some(vs))
                    if [gs.len(), ms.len(), vs.len()] == [ps.len(); 3] =>
                {
                    let coef =
                        AdamWCoefficients::new(c.beta1, c.beta2, c.eps, c.weight_decay, t, lr);
                    Some(fused_update::adamw(&ps, &gs, &ms, &vs, &coef))
                }
                _ => None,
            };
            if let Some((new_p, new_m, new_v)) = fused {
                let (shape, dev) = (p.shape(), p.device());
                var.set(&Tensor::from_vec(new_p, shape, dev)?)?;
                *m = Tensor::from_vec(new_m, shape, dev)?;
                *v = Tensor::from_vec(new_v, shape, dev)?;
                continue;
            }
            let new_m = ((&*m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let new_v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&new_m / bias1)?;
            let v_hat = (&new_v / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (p * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            *m = new_m;
            *v = new_v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, t) in &self.m {
            out.insert(format!("m.{name}"), t.clone());
        }
        for (name, t) in &self.v {
            out.insert(format!("v.{name}"), t.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] after `steps` updates, in the variables'
    /// dtype. First moments may be missing (a compact checkpoint): they restart at zero.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (name, var) in self.vars.iter() {
            for (kind, table) in [("m", &mut self.m), ("v", &mut self.v)] {
                let key = format!("{kind}.{name}");
                if kind == "m" && !state.contains_key(&key) {
                    table.insert(name.to_string(), var.as_tensor().zeros_like()?);
                    continue;
                }
                let t = state.get(&key).ok_or_else(|| {
                    TrainError::Config(format!(
                        "optimiser state has no {key}; the checkpoint belongs to another model"
                    ))
                })?;
                if t.dims() != var.dims() {
                    return Err(TrainError::Config(format!(
                        "optimiser state {key} has shape {:?}, the variable {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
                table.insert(name.to_string(), t);
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder, VarMap};

    #[test]
    fn first_steps_match_the_closed_form() {
        // With a constant gradient g, Adam's bias-corrected update is exactly lr * sign(g)
        // (m_hat = g, v_hat = g^2), plus the decoupled decay.
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let p = vb.get_with_hints(2, "p", Init::Const(1.0)).unwrap();
        let vars = NamedVars::from_varmap(&map);
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            eps: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vars.clone(), cfg).unwrap();
        let w = Tensor::new(&[2f32, -3.0], &Device::Cpu).unwrap();
        let mut expected = [1f64, 1.0];
        for _ in 0..3 {
            let (_, var) = vars.iter().next().unwrap();
            let loss = (var.as_tensor() * &w).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.01).unwrap();
            expected[0] = expected[0] * (1.0 - 0.01 * 0.1) - 0.01;
            expected[1] = expected[1] * (1.0 - 0.01 * 0.1) + 0.01;
        }
        let got: Vec<f32> = vars.iter().next().unwrap().1.as_tensor().to_vec1().unwrap();
        assert!(
            (got[0] as f64 - expected[0]).abs() < 1e-6,
            "{got:?} {expected:?}"
        );
        assert!(
            (got[1] as f64 - expected[1]).abs() < 1e-6,
            "{got:?} {expected:?}"
        );
        drop(p);
    }

    #[test]
    fn lr_scales_pick_the_longest_prefix_and_reject_unknown_ones() {
        // One constant-gradient step moves each variable by exactly its own lr (Adam's first
        // update is lr * sign(g); no decay here).
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        for name in ["text.a", "text.attn.b", "unet.c"] {
            vb.get_with_hints(1, name, Init::Const(0.0)).unwrap();
        }
        let vars = NamedVars::from_varmap(&map);
        let cfg = AdamWConfig {
            weight_decay: 0.0,
            eps: 0.0,
            ..AdamWConfig::default()
        };
        let scales: BTreeMap<String, f64> =
            [("text.".to_string(), 0.5), ("text.attn.".to_string(), 0.25)].into();
        let mut opt = AdamW::new(vars.clone(), cfg)
            .unwrap()
            .with_lr_scales(&scales)
            .unwrap();
        let loss = vars
            .iter()
            .map(|(_, v)| v.as_tensor().sum_all().unwrap())
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        for (name, var) in vars.iter() {
            let got = var.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
            let want = match name {
                "text.a" => -0.05,
                "text.attn.b" => -0.025,
                _ => -0.1,
            };
            assert!((got - want).abs() < 1e-7, "{name}: {got} vs {want}");
        }
        for bad in [("unet", 0.0), ("vae.", 0.5), ("text.", f64::NAN)] {
            let scales: BTreeMap<String, f64> = [(bad.0.to_string(), bad.1)].into();
            let err = AdamW::new(vars.clone(), cfg)
                .unwrap()
                .with_lr_scales(&scales)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(err.to_string().contains(bad.0), "{err}");
        }
    }

    #[test]
    fn state_round_trips() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints(3, "q", Init::Const(0.5)).unwrap();
        let vars = NamedVars::from_varmap(&map);
        let mut a = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
        let (_, var) = vars.iter().next().unwrap();
        let grads = var
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        a.step(&grads, 0.1).unwrap();
        let mut b = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
        b.load_state(&a.state(), a.steps()).unwrap();
        assert_eq!(b.steps(), 1);
        let key = "m.q".to_string();
        let (ma, mb): (Vec<f32>, Vec<f32>) = (
            a.state()[&key].to_vec1().unwrap(),
            b.state()[&key].to_vec1().unwrap(),
        );
        assert_eq!(ma, mb);
        assert!(ma.iter().all(|&x| x != 0.0));
    }
}
