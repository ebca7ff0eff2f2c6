//! Fresh variables drawn from kakusan's seeded generator, so that two runs of the same
//! configuration start from the same weights.
//!
//! candle draws the variables a `VarMap` creates (`Init::Randn`, `Uniform`, `Kaiming`) from
//! an unseeded thread RNG, and refuses to seed the CPU device: two runs of one TOML differed
//! from their first step (a from-scratch model in every weight, a fine-tune in the caption
//! probe's fresh head). [`seeded_var_builder`] is a `VarBuilder` over a `VarMap` that draws
//! each fresh variable with the distribution of its hint (the same as candle's) from its own
//! stream, seeded by the run's seed and the variable's name, so the weights do not depend on
//! the order in which layers are built.

use candle_core::{bail, DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use kakusan_core::rng::TorchCpuGenerator;

/// A `VarBuilder` (f32, on `device`) over `map` whose fresh variables come from `seed`.
pub fn seeded_var_builder(map: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        map: map.clone(),
        seed,
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

/// The stream of one variable: the run's seed mixed with an FNV-1a hash of its name.
pub fn variable_seed(seed: u64, name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hash
}

/// `n` values of the hint's distribution for a variable of `shape`, or `None` for a
/// constant (candle's own `Init::var` makes those).
fn draw(shape: &Shape, init: Init, seed: u64) -> Option<Vec<f32>> {
    let n = shape.elem_count();
    match init {
        Init::Const(_) => None,
        Init::Uniform { lo, up } => Some(uniform(seed, n, lo, up)),
        Init::Randn { mean, stdev } => Some(normal(seed, n, mean, stdev)),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            Some(match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(seed, n, -bound, bound)
                }
                NormalOrUniform::Normal => normal(seed, n, 0.0, std),
            })
        }
    }
}

/// `n` values of U(lo, up) from the stream `seed`.
fn uniform(seed: u64, n: usize, lo: f64, up: f64) -> Vec<f32> {
    TorchCpuGenerator::new(seed)
        .rand(&[n])
        .into_iter()
        .map(|u| (lo + (up - lo) * u as f64) as f32)
        .collect()
}

/// `n` values of N(mean, stdev^2) from the stream `seed`.
pub fn normal(seed: u64, n: usize, mean: f64, stdev: f64) -> Vec<f32> {
    TorchCpuGenerator::new(seed)
        .randn(&[n])
        .into_iter()
        .map(|v| (mean + stdev * v as f64) as f32)
        .collect()
}

/// A `VarMap` whose fresh variables are drawn from a seed.
struct SeededVarMap {
    map: VarMap,
    seed: u64,
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self.map.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(var) = vars.get(name) {
            let t = var.as_tensor();
            if t.shape() != &shape {
                bail!(
                    "variable {name} has shape {:?}, asked for {:?}",
                    t.dims(),
                    shape.dims()
                );
            }
            return Ok(t.clone());
        }
        let var = match draw(&shape, init, variable_seed(self.seed, name)) {
            Some(values) => {
                Var::from_tensor(&Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)?
            }
            None => init.var(shape, dtype, device)?,
        };
        let t = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        bail!("{name}: a seeded variable map creates variables with a shape and a hint")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|vars| vars.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> VarMap {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, seed, &Device::Cpu);
        candle_nn::linear(64, 256, vb.pp("lin")).unwrap();
        // As kakusan's convolutions ask (`kakusan_models::nn::conv2d`).
        vb.get_with_hints(
            (16, 8, 3, 3),
            "conv.weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )
        .unwrap();
        let bound = 1.0 / 72f64.sqrt();
        vb.get_with_hints(
            16,
            "conv.bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )
        .unwrap();
        vb.get_with_hints(
            1000,
            "emb",
            Init::Randn {
                mean: 0.5,
                stdev: 0.02,
            },
        )
        .unwrap();
        map
    }

    fn values(map: &VarMap, name: &str) -> Vec<f32> {
        let vars = map.data().lock().unwrap();
        vars[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The same seed gives the same weights; another seed other weights.
    #[test]
    fn a_seed_fixes_the_weights() {
        let (a, b, c) = (build(7), build(7), build(8));
        for name in ["lin.weight", "lin.bias", "conv.weight", "conv.bias", "emb"] {
            assert_eq!(values(&a, name), values(&b, name), "{name}");
            assert_ne!(values(&a, name), values(&c, name), "{name}");
        }
    }

    /// The hints' distributions: candle's Kaiming (normal for `candle_nn::linear`'s weights,
    /// uniform as kakusan's convolutions ask, fan-in from the shape), the uniform bias bound 1 / sqrt(fan_in), N(0.5,
    /// 0.02^2); moments within a few standard errors.
    #[test]
    fn draws_the_hints_distributions() {
        let map = build(3);
        let moments = |v: &[f32]| {
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        };
        // Linear [256, 64]: Kaiming normal, std sqrt(2) / sqrt(64) (candle's ReLU gain).
        let (mean, std) = moments(&values(&map, "lin.weight"));
        let want = 2f64.sqrt() / 8.0;
        assert!(
            mean.abs() < 0.01 && (std / want - 1.0).abs() < 0.03,
            "{mean} {std}"
        );
        // Conv [16, 8, 3, 3]: Kaiming uniform, bound sqrt(3) * sqrt(2) / sqrt(72).
        let w = values(&map, "conv.weight");
        let bound = (3f64 * 2.0 / 72.0).sqrt() as f32;
        assert!(w.iter().all(|&x| x.abs() <= bound));
        assert!(w.iter().any(|&x| x.abs() > 0.9 * bound));
        // Bias of the linear layer: uniform within 1 / sqrt(64).
        assert!(values(&map, "lin.bias").iter().all(|&x| x.abs() <= 0.125));
        let (mean, std) = moments(&values(&map, "emb"));
        assert!(
            (mean - 0.5).abs() < 0.003 && (std / 0.02 - 1.0).abs() < 0.1,
            "{mean} {std}"
        );
    }
}
