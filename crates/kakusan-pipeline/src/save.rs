//! Writing a generation's results: numbered PNGs with A1111 `parameters` text, and the
//! final latents as safetensors. Nothing is ever written over an existing file, and nothing
//! half-written is ever left under a final name.

use std::path::{Path, PathBuf};

use kakusan_core::png_meta::GenerationParameters;

use crate::error::{PipelineError, Result};
use crate::generation::Generation;
use crate::job::Job;
use crate::stable_diffusion::StableDiffusion;

/// The A1111 parameters of image `i` of a job.
pub fn parameters_for(model: &StableDiffusion, job: &Job, i: usize) -> GenerationParameters {
    let mut p = GenerationParameters {
        prompt: job.prompt.clone(),
        negative_prompt: job.negative_prompt.clone(),
        steps: job.steps,
        sampler: job.sampler.clone(),
        cfg_scale: job.cfg_scale,
        seed: job.image_seed(i),
        width: job.width,
        height: job.height,
        model_hash: Some(model.hash().to_string()),
        model_name: Some(model.name().to_string()),
        ..GenerationParameters::default()
    };
    p.schedule = Some(job.schedule.to_string());
    if job.init_image.is_some() {
        p.denoising_strength = Some(job.strength);
    }
    if job.clip_skip != 1 {
        p.clip_skip = Some(job.clip_skip);
    }
    p
}

/// Writes every image of `generation` into `dir` and returns the paths, in batch order.
pub fn save_images(
    model: &StableDiffusion,
    job: &Job,
    generation: &Generation,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(generation.images.len());
    for (i, image) in generation.images.iter().enumerate() {
        let text = parameters_for(model, job, i).to_a1111_string();
        let path = kakusan_core::output::save_png_numbered(dir, job.image_seed(i), image, &text)
            .map_err(|e| PipelineError::Output {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        paths.push(path);
    }
    Ok(paths)
}

/// Writes the final latents (`[B, C, h, w]`, f32, before the VAE scaling) as safetensors
/// under the key `latents`, atomically.
pub fn save_latents(generation: &Generation, path: &Path) -> Result<()> {
    let latents = generation.latents.to_dtype(candle_core::DType::F32)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let fail = |reason: String| PipelineError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let result = latents
        .save_safetensors("latents", &tmp)
        .map_err(|e| fail(e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
