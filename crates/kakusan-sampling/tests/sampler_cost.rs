//! What a sampler costs per step on top of the model, with a free denoiser (returns a
//! scaled copy of x). Run by hand: `cargo test --release -p kakusan-sampling --test
//! sampler_cost -- --ignored --nocapture`; the numbers go in the notes, next to the UNet's
//! time per step (`kakusan bench`). `ONLY="DPM++ SDE"` times one sampler (e.g. under `perf`).

use candle_core::{DType, Device, Tensor};
use kakusan_sampling::discrete_schedule::DiscreteSchedule;
use kakusan_sampling::schedule::k_diffusion;
use kakusan_sampling::{Denoiser, Result, Sampler, SamplerOptions, TorchBatchNoise};
use std::time::Instant;

struct Free;

impl Denoiser for Free {
    fn denoise(&self, x: &Tensor, _sigma: f64) -> Result<Tensor> {
        Ok(x.affine(0.5, 0.0)?)
    }
}

#[test]
#[ignore]
fn cost_per_step() {
    let table = DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap();
    let steps = 20;
    let schedule = k_diffusion::karras(&table, steps, 7.0).unwrap();
    for (label, shape) in [
        ("16x16 latent (kakusan-mini, 64 px)", [1usize, 4, 16, 16]),
        ("32x32 latent (256 px)", [1, 4, 32, 32]),
        ("64x64 latent (512 px)", [1, 4, 64, 64]),
    ] {
        eprintln!("{label}, {steps} steps, ms per step (sampler only):");
        let only = std::env::var("ONLY").ok();
        for sampler in Sampler::ALL
            .into_iter()
            .filter(|s| only.as_deref().is_none_or(|o| s.name() == o))
        {
            let x = Tensor::zeros(&shape[..], DType::F32, &Device::Cpu).unwrap();
            let mut noise = TorchBatchNoise::from_seeds(&[1]);
            let start = Instant::now();
            let mut calls = 0;
            sampler
                .sample(
                    &Free,
                    x,
                    &schedule,
                    &mut noise,
                    &SamplerOptions::default(),
                    &mut |_| calls += 1,
                )
                .unwrap();
            let ms = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
            eprintln!("  {:<18} {ms:7.3}", sampler.name());
        }
    }
}

#[test]
#[ignore]
fn cost_of_the_brownian_tree_parts() {
    use kakusan_core::rng::TorchCpuGenerator;
    let n = 4 * 64 * 64;
    let start = Instant::now();
    for s in 0..20 {
        std::hint::black_box(TorchCpuGenerator::new(s).randn(&[n]));
    }
    eprintln!(
        "randn of a 64x64 latent from a fresh generator: {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3 / 20.0
    );
    let start = Instant::now();
    for s in 0..2000 {
        std::hint::black_box(kakusan_sampling::brownian::seed_sequence_state(
            s,
            &[5, 3],
            24,
            4,
        ));
    }
    eprintln!(
        "SeedSequence: {:.4} ms",
        start.elapsed().as_secs_f64() * 1e3 / 2000.0
    );
}
