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
/// The safetensors file name of a transformers text encoder.
pub const TEXT_ENCODER_FILE: &str = "model.safetensors";

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

/// Exports a trained VAE (e.g. the EMA weights) to `dir` with a measured scaling factor, or
/// with `keep_scale` (a decoder fine-tuned over a frozen encoder keeps the latent scale a
/// UNet was trained with, even where a re-measurement would differ in the last digits).
/// Returns the scaling factor.
pub fn export_vae(
    weights: &HashMap<String, Tensor>,
    config_json: &serde_json::Value,
    data: &dyn CaptionedImages,
    dir: &Path,
    keep_scale: Option<f64>,
    device: &Device,
) -> Result<f64> {
    let config: VaeConfig = serde_json::from_value(config_json.clone())
        .map_err(|e| TrainError::Config(format!("vae config: {e}")))?;
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, device);
    let vae =
        AutoencoderKL::new(vb, &config).map_err(|e| TrainError::Config(format!("vae: {e}")))?;
    let scale = match keep_scale {
        Some(s) => s,
        None => measure_latent_scale(&vae, data, 8, 32, device)?,
    };
    let mut out = config_json.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("scaling_factor".into(), serde_json::json!(scale));
    }
    write_component(dir, &out, weights, WEIGHTS_FILE)?;
    Ok(scale)
}

/// The parts of a diffusers `StableDiffusionPipeline` folder besides the trained weights.
pub struct PipelineParts<'a> {
    pub text_encoder_config: &'a serde_json::Value,
    pub unet_config: &'a serde_json::Value,
    pub scheduler_config: &'a serde_json::Value,
    /// The trained VAE folder (`config.json` + weights), copied as it is.
    pub vae_dir: &'a Path,
    /// The tokenizer folder, copied as it is.
    pub tokenizer_dir: &'a Path,
    /// The starting model's `generation_defaults.json` (its recommended settings, e.g.
    /// kakusan-mini's CFG), copied as it is: a fine-tune keeps its base's defaults.
    pub generation_defaults: Option<&'a Path>,
}

/// Splits `prefix.name` weights into the component's own names, in half precision when
/// `f16` (the shipped model: half the size; kakusan and diffusers load it into f32).
fn component_weights(
    weights: &HashMap<String, Tensor>,
    prefix: &str,
    f16: bool,
) -> Result<HashMap<String, Tensor>> {
    weights
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v)))
        .map(|(n, v)| {
            let t = if f16 {
                v.to_dtype(DType::F16)?
            } else {
                v.clone()
            };
            Ok((n, t))
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io_at(to))?;
    for entry in std::fs::read_dir(from).map_err(io_at(from))? {
        let entry = entry.map_err(io_at(from))?;
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(entry.file_name())).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// Writes a complete diffusers folder to `dir` (replacing it) from the text encoder + UNet
/// weights (`text_encoder.*`, `unet.*`), the VAE and tokenizer folders and the configs.
pub fn export_pipeline(
    weights: &HashMap<String, Tensor>,
    parts: &PipelineParts<'_>,
    dir: &Path,
    f16: bool,
) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
    }
    let text = component_weights(weights, crate::tasks::diffusion_task::TEXT_PREFIX, f16)?;
    let unet = component_weights(weights, crate::tasks::diffusion_task::UNET_PREFIX, f16)?;
    write_component(
        &tmp.join("text_encoder"),
        parts.text_encoder_config,
        &text,
        TEXT_ENCODER_FILE,
    )?;
    write_component(&tmp.join("unet"), parts.unet_config, &unet, WEIGHTS_FILE)?;
    // The VAE in the same precision as the rest.
    let vae_weights =
        candle_core::safetensors::load(parts.vae_dir.join(WEIGHTS_FILE), &Device::Cpu)?;
    let vae_weights = vae_weights
        .into_iter()
        .map(|(k, v)| Ok((k, if f16 { v.to_dtype(DType::F16)? } else { v })))
        .collect::<Result<HashMap<_, _>>>()?;
    let vae_config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(parts.vae_dir.join("config.json")).map_err(io_at(parts.vae_dir))?,
    )
    .map_err(|e| TrainError::Config(format!("vae config: {e}")))?;
    write_component(&tmp.join("vae"), &vae_config, &vae_weights, WEIGHTS_FILE)?;
    copy_dir(parts.tokenizer_dir, &tmp.join("tokenizer"))?;
    if let Some(file) = parts.generation_defaults {
        let name = file.file_name().unwrap_or_default();
        std::fs::copy(file, tmp.join(name)).map_err(io_at(file))?;
    }
    let sched_dir = tmp.join("scheduler");
    std::fs::create_dir_all(&sched_dir).map_err(io_at(&sched_dir))?;
    let sched = serde_json::to_vec_pretty(parts.scheduler_config)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(sched_dir.join("scheduler_config.json"), sched).map_err(io_at(&sched_dir))?;
    let index = serde_json::json!({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [null, null],
        "requires_safety_checker": false,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", parts.scheduler_config.get("_class_name").and_then(|v| v.as_str()).unwrap_or("EulerDiscreteScheduler")],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    });
    let index = serde_json::to_vec_pretty(&index).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(tmp.join("model_index.json"), index).map_err(io_at(&tmp))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io_at(dir))?;
    Ok(())
}

/// Loads a VAE folder as [`export_vae`] writes it (`config.json` + weights), in f32.
pub fn load_vae(dir: &Path, device: &Device) -> Result<AutoencoderKL> {
    let config_path = dir.join("config.json");
    let config: VaeConfig =
        serde_json::from_slice(&std::fs::read(&config_path).map_err(io_at(&config_path))?)
            .map_err(|e| TrainError::Config(format!("{}: {e}", config_path.display())))?;
    let weights = dir.join(WEIGHTS_FILE);
    let tensors =
        candle_core::safetensors::load(&weights, device).map_err(|e| TrainError::Checkpoint {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
    AutoencoderKL::new(
        VarBuilder::from_tensors(tensors, DType::F32, device),
        &config,
    )
    .map_err(|e| TrainError::Config(format!("vae {}: {e}", dir.display())))
}

/// The text encoder + UNet weights of a folder [`export_pipeline`] wrote, under the
/// training names (`text_encoder.*`, `unet.*`), as stored (f16 for the shipped model).
pub fn load_pipeline_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut weights = HashMap::new();
    for (prefix, file) in [
        (
            crate::tasks::diffusion_task::TEXT_PREFIX,
            dir.join("text_encoder").join(TEXT_ENCODER_FILE),
        ),
        (
            crate::tasks::diffusion_task::UNET_PREFIX,
            dir.join("unet").join(WEIGHTS_FILE),
        ),
    ] {
        let part =
            candle_core::safetensors::load(&file, device).map_err(|e| TrainError::Checkpoint {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        weights.extend(part.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    Ok(weights)
}
