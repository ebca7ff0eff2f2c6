//! `--dtype bf16` on the CPU: bf16 weights for the UNet's and the VAE's matrix products,
//! f32 activations (`kakusan_models::nn`'s `cpu_bf16.rs`). The decoded pictures must stay
//! within 35 dB PSNR of the f32 path (issue 8's bound) on the fixture models and on the
//! built-in model when it is installed, and must differ from them (the bf16 path ran).

use std::path::Path;

use candle_core::DType;
use image::RgbImage;
use kakusan_core::device::DTypeChoice;
use kakusan_pipeline::{Job, LoadOptions, StableDiffusion};

mod common;

/// PSNR of two 8-bit pictures of the same size, in dB (infinite when equal).
fn psnr(a: &[RgbImage], b: &[RgbImage]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.dimensions(), y.dimensions());
        for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
            let d = f64::from(*p) - f64::from(*q);
            sum += d * d;
            n += 1;
        }
    }
    let mse = sum / n as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

fn load(path: &Path, dtype: DTypeChoice) -> StableDiffusion {
    let opts = LoadOptions {
        dtype,
        ..LoadOptions::default()
    };
    StableDiffusion::load(path, &opts).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// The f32 and bf16 generations of `job` on `path`: PSNR of the pictures and the largest
/// latent difference.
fn compare(path: &Path, job: &Job) -> (f64, f32) {
    let f32_run = load(path, DTypeChoice::F32)
        .generate(job, &mut |_| {})
        .unwrap();
    let bf16_run = load(path, DTypeChoice::BF16)
        .generate(job, &mut |_| {})
        .unwrap();
    assert_eq!(bf16_run.latents.dtype(), DType::F32, "activations stay f32");
    let latent_diff = common::max_abs_diff(&bf16_run.latents, &f32_run.latents);
    (psnr(&bf16_run.images, &f32_run.images), latent_diff)
}

fn job(width: usize, height: usize, steps: usize) -> Job {
    Job {
        prompt: "a red circle on a blue background, (best quality:1.2)".into(),
        negative_prompt: "blurry".into(),
        seed: 42,
        steps,
        cfg_scale: 7.0,
        width,
        height,
        ..Job::default()
    }
}

#[test]
fn bf16_pictures_stay_within_35_db_of_f32_on_the_fixture_models() {
    for name in ["sd1-tiny", "sd2-tiny"] {
        let (db, latent_diff) = compare(&common::fixtures().join(name), &job(64, 64, 12));
        eprintln!("{name}: bf16 vs f32 {db:.1} dB, latents differ by up to {latent_diff:.2e}");
        assert!(
            latent_diff > 0.0,
            "{name}: bf16 gave the f32 result bit for bit"
        );
        assert!(db >= 35.0, "{name}: bf16 vs f32 only {db:.1} dB");
    }
}

#[test]
fn bf16_pictures_stay_within_35_db_of_f32_on_the_built_in_model() {
    let Some(path) = kakusan_pipeline::default_model_path() else {
        eprintln!("no built-in model installed: nothing to compare");
        return;
    };
    let model = load(&path, DTypeChoice::F32);
    let (w, h) = model.default_size();
    drop(model);
    let (db, latent_diff) = compare(&path, &job(w, h, 12));
    eprintln!("built-in model: bf16 vs f32 {db:.1} dB, latents differ by up to {latent_diff:.2e}");
    assert!(latent_diff > 0.0);
    assert!(db >= 35.0, "built-in model: bf16 vs f32 only {db:.1} dB");
}
