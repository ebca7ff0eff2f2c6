//! Noise sources for the initial latents and for ancestral/SDE steps. `TorchBatchNoise` keeps
//! one torch CPU generator per image (seed + i), so image i gets the same noise whatever the
//! batch size — diffusers with a list of generators, and A1111's per-seed streams.

use candle_core::{Device, Tensor};
use kakusan_core::rng::TorchCpuGenerator;

use crate::error::Result;

pub trait NoiseSource {
    /// Standard normal noise shaped like `x` (`[B, C, H, W]`).
    fn noise_like(&mut self, x: &Tensor) -> Result<Tensor>;
}

pub struct TorchBatchNoise {
    generators: Vec<TorchCpuGenerator>,
    device: Device,
}

impl TorchBatchNoise {
    pub fn new(seeds: &[u64], device: &Device) -> Self {
        Self {
            generators: seeds.iter().map(|&s| TorchCpuGenerator::new(s)).collect(),
            device: device.clone(),
        }
    }

    /// Draws `[B, rest...]`, image i from generator i.
    pub fn randn(&mut self, shape: &[usize]) -> Result<Tensor> {
        let per_image = &shape[1..];
        let mut data = Vec::with_capacity(shape.iter().product());
        for g in self.generators.iter_mut().take(shape[0]) {
            data.extend(g.randn(per_image));
        }
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }
}

impl NoiseSource for TorchBatchNoise {
    fn noise_like(&mut self, x: &Tensor) -> Result<Tensor> {
        let shape = x.dims().to_vec();
        self.randn(&shape)?.to_dtype(x.dtype()).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_noise_does_not_depend_on_the_batch() {
        let mut one = TorchBatchNoise::new(&[8], &Device::Cpu);
        let mut two = TorchBatchNoise::new(&[7, 8], &Device::Cpu);
        let a = one.randn(&[1, 4, 3, 5]).unwrap();
        let b = two.randn(&[2, 4, 3, 5]).unwrap().narrow(0, 1, 1).unwrap();
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
    }
}
