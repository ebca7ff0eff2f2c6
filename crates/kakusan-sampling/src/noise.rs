//! Noise sources: where samplers (and the pipeline's initial noise) get their Gaussian
//! draws from.
//!
//! [`TorchBatchNoise`] keeps one torch-compatible CPU generator per image of the batch;
//! each draw gives image `i` the next `[C, H, W]` block of its own stream. This is diffusers
//! called with a list of `torch.Generator("cpu")` (its `randn_tensor` draws
//! `randn([1, C, H, W], generator=g_i)` per image) and A1111's per-image seeds (seed + i), so
//! image `i` gets the same noise whatever the batch size.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use kakusan_core::rng::{CpuNormalKernel, TorchCpuGenerator};

/// A source of standard normal noise shaped like a sample.
pub trait NoiseSource {
    /// Standard normal noise with `x`'s shape, dtype and device. Consecutive calls continue
    /// the stream.
    fn noise_like(&mut self, x: &Tensor) -> Result<Tensor>;

    /// Noise for a step from `sigma` to `sigma_next` (k-diffusion's
    /// `noise_sampler(sigma, sigma_next)`). Streams ignore the levels and continue
    /// ([`noise_like`](Self::noise_like)); a Brownian tree returns its normalised increment.
    fn noise_between(&mut self, x: &Tensor, sigma: f64, sigma_next: f64) -> Result<Tensor> {
        let _ = (sigma, sigma_next);
        self.noise_like(x)
    }

    /// The per-image seeds behind this source, when it has them (to seed a Brownian tree
    /// for the SDE samplers the way A1111 does).
    fn seeds(&self) -> Option<Vec<u64>> {
        None
    }
}

/// One [`TorchCpuGenerator`] per batch image.
#[derive(Debug, Clone)]
pub struct TorchBatchNoise {
    generators: Vec<TorchCpuGenerator>,
}

impl TorchBatchNoise {
    /// One generator per seed, in batch order.
    pub fn from_seeds(seeds: &[u64]) -> Self {
        Self::from_seeds_with_kernel(seeds, CpuNormalKernel::default())
    }

    /// Same, reproducing torch built with `kernel` (see [`CpuNormalKernel`]).
    pub fn from_seeds_with_kernel(seeds: &[u64], kernel: CpuNormalKernel) -> Self {
        Self {
            generators: seeds
                .iter()
                .map(|&s| TorchCpuGenerator::with_kernel(s, kernel))
                .collect(),
        }
    }

    /// A1111's batch convention: seeds `seed, seed + 1, ..., seed + batch - 1` (wrapping).
    pub fn consecutive(seed: u64, batch: usize) -> Self {
        let seeds: Vec<u64> = (0..batch as u64).map(|i| seed.wrapping_add(i)).collect();
        Self::from_seeds(&seeds)
    }

    /// From existing generators (e.g. ones that already drew something).
    pub fn from_generators(generators: Vec<TorchCpuGenerator>) -> Self {
        Self { generators }
    }

    /// Number of images (generators).
    pub fn batch(&self) -> usize {
        self.generators.len()
    }

    /// The generators, to draw something else from the same streams (e.g. the VAE
    /// posterior sample img2img draws before the noise).
    pub fn generators_mut(&mut self) -> &mut [TorchCpuGenerator] {
        &mut self.generators
    }

    /// Noise of `shape` = [B, ...] on the CPU in f32, image i from generator i.
    pub fn randn(&mut self, shape: &[usize]) -> Result<Tensor> {
        let Some((&batch, per_image)) = shape.split_first() else {
            return Err(Error::Noise(
                "cannot draw batch noise for a 0-dimensional tensor".into(),
            ));
        };
        if batch != self.generators.len() {
            return Err(Error::Noise(format!(
                "the latents have batch size {batch} but there are {} seeds/generators; give one seed per image",
                self.generators.len()
            )));
        }
        let mut data = Vec::with_capacity(shape.iter().product());
        for generator in &mut self.generators {
            data.extend(generator.randn(per_image));
        }
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
    }
}

impl NoiseSource for TorchBatchNoise {
    fn noise_like(&mut self, x: &Tensor) -> Result<Tensor> {
        let noise = self.randn(x.dims())?;
        Ok(noise.to_dtype(x.dtype())?.to_device(x.device())?)
    }

    fn seeds(&self) -> Option<Vec<u64>> {
        Some(self.generators.iter().map(|g| g.seed()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_i_gets_the_same_noise_whatever_the_batch_size() {
        let x3 = Tensor::zeros((3, 4, 5, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
        let x1 = Tensor::zeros((1, 4, 5, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut batch = TorchBatchNoise::consecutive(100, 3);
        let mut single = TorchBatchNoise::from_seeds(&[101]);
        // Two successive draws: the per-image streams must continue independently too.
        for _ in 0..2 {
            let b = batch.noise_like(&x3).unwrap();
            let s = single.noise_like(&x1).unwrap();
            let image1: Vec<f32> = b.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let alone: Vec<f32> = s.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(image1, alone);
        }
    }

    #[test]
    fn image_noise_is_torch_randn_of_one_image() {
        let mut noise = TorchBatchNoise::from_seeds(&[42, 43]);
        let t = noise.randn(&[2, 4, 8, 8]).unwrap();
        let second: Vec<f32> = t.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(second, TorchCpuGenerator::new(43).randn(&[1, 4, 8, 8]));
    }

    #[test]
    fn batch_mismatch_is_an_error() {
        let mut noise = TorchBatchNoise::from_seeds(&[1]);
        let err = noise.randn(&[2, 4, 8, 8]).unwrap_err();
        assert!(err.to_string().contains("batch size 2"), "{err}");
    }
}
