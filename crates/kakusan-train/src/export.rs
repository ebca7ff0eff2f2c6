//! Writing trained weights as diffusers components: `config.json` plus
//! `diffusion_pytorch_model.safetensors` (f32), loadable by kakusan and by diffusers.
//!
//! For the VAE the export also measures the latent scale: `scaling_factor` is set to
//! 1 / std of the latents of a few hundred training pictures, as the LDM authors chose
//! 0.18215 for SD, so the diffusion model sees unit-variance latents.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use kakusan_core::rng::TorchCpuGenerator;
use kakusan_models::vae::{AutoencoderKL, VaeConfig};

use crate::error::{io_at, Result, TrainError};
use crate::tasks::captioned_images::{batch_for_step, CaptionedImages};

/// The safetensors file name of a diffusers model component.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Writes `weights` and `config` (a JSON object) as a component folder `dir`, atomically
/// per file.
pub fn write_component(
    dir: &Path,
    config: &serde_json::Value,
    weights: &HashMap<String, Tensor>,
    weights_file: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let tmp = dir.join(format!(".{weights_file}.{}.tmp", std::process::id()));
    candle_core::safetensors::save(weights, &tmp)?;
    std::fs::rename(&tmp, dir.join(weights_file)).map_err(io_at(dir.join(weights_file)))?;
    let text = serde_json::to_vec_pretty(config).map_err(|e| TrainError::Config(e.to_string()))?;
    kakusan_core::output::write_atomically(&dir.join("config.json"), &text)?;
    Ok(())
}

/// 1 / std of the posterior samples of `batches` x `batch` pictures.
pub fn measure_latent_scale(
    vae: &AutoencoderKL,
    data: &dyn CaptionedImages,
    batches: u64,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
    let err = |e: kakusan_models::vae::VaeError| TrainError::Config(e.to_string());
    for b in 0..batches {
        // Far from the training indices of the first steps, the same every time.
        let pairs = batch_for_step(data, 1_000_000 + b, batch);
        let images: Vec<_> = pairs.into_iter().map(|(i, _)| i).collect();
        let x = kakusan_core::image_io::images_to_tensor(&images)
            .map_err(|e| TrainError::Config(e.to_string()))?
            .to_device(device)?;
        let post = vae.encode(&x).map_err(err)?;
        let shape = post.mean.dims().to_vec();
        let eps = Tensor::from_vec(
            TorchCpuGenerator::new(b).randn(&shape),
            shape.as_slice(),
            device,
        )?;
        let z = post.sample_with(&eps).map_err(err)?.to_dtype(DType::F64)?;
        sum += z.sum_all()?.to_scalar::<f64>()?;
        sum_sq += z.sqr()?.sum_all()?.to_scalar::<f64>()?;
        n += z.elem_count() as f64;
    }
    let mean = sum / n;
    let var = (sum_sq / n - mean * mean).max(1e-12);
    Ok(1.0 / var.sqrt())
}

/// Exports a trained VAE (e.g. the EMA weights) to `dir` with a measured scaling factor.
/// Returns the scaling factor.
pub fn export_vae(
    weights: &HashMap<String, Tensor>,
    config_json: &serde_json::Value,
    data: &dyn CaptionedImages,
    dir: &Path,
    device: &Device,
) -> Result<f64> {
    let config: VaeConfig = serde_json::from_value(config_json.clone())
        .map_err(|e| TrainError::Config(format!("vae config: {e}")))?;
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, device);
    let vae =
        AutoencoderKL::new(vb, &config).map_err(|e| TrainError::Config(format!("vae: {e}")))?;
    let scale = measure_latent_scale(&vae, data, 8, 32, device)?;
    let mut out = config_json.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("scaling_factor".into(), serde_json::json!(scale));
    }
    write_component(dir, &out, weights, WEIGHTS_FILE)?;
    Ok(scale)
}
