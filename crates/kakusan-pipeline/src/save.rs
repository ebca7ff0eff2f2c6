//! Writing a generation's results: numbered PNGs with A1111 `parameters` text, and the
//! final latents as safetensors. Nothing is ever written over an existing file, and nothing
//! half-written is ever left under a final name.

use std::path::{Path, PathBuf};

use kakusan_core::output::{write_atomically, write_new_output};
use kakusan_core::png_meta::{encode_png_with_parameters, GenerationParameters};
use kakusan_models::weights::hash::network_short_hash;

use kakusan_prompt::{Dialect, EmphasisMode};

use crate::error::{PipelineError, Result};
use crate::generation::Generation;
use crate::job::Job;
use crate::stable_diffusion::StableDiffusion;

/// The A1111 parameters of image `i` of a job's `generation`.
pub fn parameters_for(
    model: &StableDiffusion,
    job: &Job,
    generation: &Generation,
    i: usize,
) -> GenerationParameters {
    let mut p = GenerationParameters {
        prompt: job.prompt.clone(),
        negative_prompt: job.negative_prompt.clone(),
        steps: clamp_u32(job.steps),
        sampler: job.sampler.clone(),
        cfg_scale: job.cfg_scale,
        seed: job.image_seed(i),
        width: clamp_u32(job.width),
        height: clamp_u32(job.height),
        model_hash: Some(model.hash().to_string()),
        model_name: Some(model.name().to_string()),
        ..GenerationParameters::default()
    };
    // A1111's label ("Karras", "SGM Uniform", "DDIM"): what A1111 writes and reads back.
    p.schedule = Some(job.schedule.a1111_label().to_string());
    if job.init_image.is_some() {
        p.denoising_strength = Some(job.strength);
    }
    // The sampler and schedule knobs under A1111's infotext keys, when not at their defaults.
    let o = &job.sampler_options;
    let s = &job.schedule_options;
    let extras = [
        ("Eta", o.eta),
        ("Sigma noise", (o.s_noise != 1.0).then_some(o.s_noise)),
        ("Sigma churn", (o.s_churn != 0.0).then_some(o.s_churn)),
        ("Sigma tmin", (o.s_tmin != 0.0).then_some(o.s_tmin)),
        ("Sigma tmax", o.s_tmax.is_finite().then_some(o.s_tmax)),
        ("Schedule min sigma", s.sigma_min),
        ("Schedule max sigma", s.sigma_max),
        ("Schedule rho", s.rho),
    ];
    for (key, value) in extras {
        if let Some(v) = value {
            // The keys are fixed and valid; a refusal could only be a bug, so it is logged.
            if let Err(e) = p.push_extra(key, v.to_string()) {
                tracing::warn!("not recorded in the PNG: {e}");
            }
        }
    }
    if !o.brownian_noise {
        if let Err(e) = p.push_extra("No Brownian noise", "True") {
            tracing::warn!("not recorded in the PNG: {e}");
        }
    }
    if job.clip_skip != 1 {
        p.clip_skip = Some(clamp_u32(job.clip_skip));
    }
    push_prompt_options(&mut p, job);
    push_network_hashes(&mut p, model, generation);
    p
}

/// A1111's `TI hashes` and `Lora hashes`: `name: hash12` per embedding used and LoRA applied,
/// `, `-separated, with `:` and `,` taken out of the names (A1111's
/// `sd_hijack_clip` and `extra_networks_lora`). Embeddings and LoRAs without a hash (not read
/// from a file) are left out, as A1111 leaves out an empty hash; a key with no entry is not
/// written. One difference: A1111 lists an embedding used by both prompts twice; kakusan
/// lists it once.
pub fn push_network_hashes(
    p: &mut GenerationParameters,
    model: &StableDiffusion,
    generation: &Generation,
) {
    let library = model.embeddings();
    let ti: Vec<(String, String)> = generation
        .embeddings
        .iter()
        .filter_map(|name| {
            let e = library.embeddings.get(name)?;
            (!e.hash.is_empty()).then(|| (name.clone(), e.hash.clone()))
        })
        .collect();
    let lora = model.applied_lora_hashes();
    for (key, entries) in [("TI hashes", ti), ("Lora hashes", lora)] {
        if entries.is_empty() {
            continue;
        }
        let value = entries
            .iter()
            .map(|(name, hash)| {
                let name: String = name.chars().filter(|c| *c != ':' && *c != ',').collect();
                format!("{name}: {}", network_short_hash(hash))
            })
            .collect::<Vec<_>>()
            .join(", ");
        if let Err(e) = p.push_extra(key, value) {
            tracing::warn!("not recorded in the PNG: {e}");
        }
    }
}

/// The prompt reading settings, when not at A1111's defaults: `Emphasis` (A1111's own key and
/// values: `No norm`, `Ignore`, `None`) and `Prompt dialect: novelai` (kakusan's; absent means
/// A1111's syntax).
pub fn push_prompt_options(p: &mut GenerationParameters, job: &Job) {
    let mut pairs = Vec::new();
    if job.emphasis != EmphasisMode::Original {
        pairs.push(("Emphasis", job.emphasis.name()));
    }
    if job.dialect != Dialect::A1111 {
        pairs.push(("Prompt dialect", job.dialect.name()));
    }
    for (key, value) in pairs {
        if let Err(e) = p.push_extra(key, value) {
            tracing::warn!("not recorded in the PNG: {e}");
        }
    }
}

/// Writes every image of `generation` into `dir` and returns the paths, in batch order.
pub fn save_images(
    model: &StableDiffusion,
    job: &Job,
    generation: &Generation,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let fail = |reason: String| PipelineError::Output {
        path: dir.to_path_buf(),
        reason,
    };
    (0..generation.images.len())
        .map(|i| {
            let bytes = png_with_parameters(model, job, generation, i).map_err(fail)?;
            write_new_output(dir, job.image_seed(i), "png", &bytes).map_err(|e| fail(e.to_string()))
        })
        .collect()
}

/// Writes image `i` of `generation` to `path` (PNG with its A1111 parameters), atomically:
/// for callers that name their files themselves (the prompt lab).
pub fn save_image_to(
    model: &StableDiffusion,
    job: &Job,
    generation: &Generation,
    i: usize,
    path: &Path,
) -> Result<()> {
    let fail = |reason: String| PipelineError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = png_with_parameters(model, job, generation, i).map_err(fail)?;
    write_atomically(path, &bytes).map_err(|e| fail(e.to_string()))
}

/// Image `i` of `generation` as PNG bytes with its A1111 parameters (`Err`: why not).
fn png_with_parameters(
    model: &StableDiffusion,
    job: &Job,
    generation: &Generation,
    i: usize,
) -> std::result::Result<Vec<u8>, String> {
    let image = generation
        .images
        .get(i)
        .ok_or_else(|| format!("the generation has no image {i}"))?;
    let text = parameters_for(model, job, generation, i).to_a1111_string();
    encode_png_with_parameters(image, &text).map_err(|e| e.to_string())
}

/// Writes the final latents (`[B, C, h, w]`, f32, before the VAE scaling) as safetensors
/// under the key `latents`, atomically.
pub fn save_latents(generation: &Generation, path: &Path) -> Result<()> {
    let latents = generation.latents.to_dtype(candle_core::DType::F32)?;
    let fail = |reason: String| PipelineError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let values: Vec<f32> = latents.flatten_all()?.to_vec1()?;
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        latents.dims().to_vec(),
        &raw,
    )
    .map_err(|e| fail(e.to_string()))?;
    let bytes = safetensors::tensor::serialize([("latents", view)], None)
        .map_err(|e| fail(e.to_string()))?;
    write_atomically(path, &bytes).map_err(|e| fail(e.to_string()))
}

/// Job sizes are checked far below `u32::MAX` (see `Job::validate`); saturate anyway.
fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_options_are_recorded_only_when_not_default() {
        let mut p = GenerationParameters::default();
        push_prompt_options(&mut p, &Job::default());
        assert!(p.extra.is_empty());
        let job = Job {
            dialect: Dialect::NovelAi,
            emphasis: EmphasisMode::NoNorm,
            ..Job::default()
        };
        push_prompt_options(&mut p, &job);
        assert_eq!(
            p.extra,
            vec![
                ("Emphasis".to_string(), "No norm".to_string()),
                ("Prompt dialect".to_string(), "novelai".to_string())
            ]
        );
        let text = p.to_a1111_string();
        assert!(
            text.contains("Emphasis: No norm, Prompt dialect: novelai"),
            "{text}"
        );
    }
}
