//! `kakusan generate`: builds the `Job`, loads the model, runs it with a progress bar and
//! writes the numbered PNGs (and optionally the latents).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_pipeline::{Job, StableDiffusion};

use crate::cli::{GenerateArgs, ModelArgs};

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let seed = match args.seed {
        -1 => random_seed(),
        s if s < -1 => anyhow::bail!("seed must be -1 (random) or a non-negative number, got {s}"),
        s => s as u64,
    };
    // "DPM++ 2M Karras" becomes DPM++ 2M with the Karras schedule (what A1111 1.9+ writes
    // in its metadata); an unknown name lists the valid ones.
    // Comma-separated lists make a comparison grid (see `compare`).
    // Without --sampler, Euler a stands in for these checks before loading; the model's own
    // sampler (its generation_defaults.json) replaces it once the model is loaded.
    let mut cells = crate::compare::cells(
        args.sampler
            .as_deref()
            .unwrap_or(kakusan_pipeline::generation_defaults::DEFAULT_SAMPLER),
        args.schedule.as_deref(),
    )?;
    let (sampler, schedule) = (cells[0].sampler, cells[0].schedule);
    let mut job = Job {
        prompt: args.prompt,
        negative_prompt: args.negative,
        seed,
        steps: args.steps,
        // Not given: the model's recommended scale, known once it is loaded; the usual 7
        // stands in until then.
        cfg_scale: args
            .cfg
            .unwrap_or(kakusan_pipeline::generation_defaults::DEFAULT_CFG),
        // A size not given is the model's native one; 512 stands in until the model is loaded
        // (a size given, even 0, is checked as given).
        width: args.width.unwrap_or(512),
        height: args.height.unwrap_or(512),
        batch_size: args.batch,
        sampler: sampler.name().to_string(),
        schedule,
        sampler_options: args.sampler_options.to_options(),
        schedule_options: kakusan_pipeline::ScheduleOptions {
            sigma_min: args.sampler_options.sigma_min,
            sigma_max: args.sampler_options.sigma_max,
            rho: args.sampler_options.rho,
        },
        init_image: args.init_image,
        strength: args.strength,
        clip_skip: args.clip_skip,
        dialect: kakusan_prompt::Dialect::from_name(&args.dialect)
            .with_context(|| format!("unknown --dialect {:?} (a1111 or novelai)", args.dialect))?,
        emphasis: kakusan_prompt::EmphasisMode::from_name(&args.emphasis).with_context(|| {
            format!(
                "unknown --emphasis {:?} (original, no-norm, ignore or none)",
                args.emphasis
            )
        })?,
    };
    // Everything that can be checked without the model is checked before loading it.
    job.validate()?;
    kakusan_pipeline::check_sampler(&job.sampler)?;
    if let Some(path) = &job.init_image {
        // Read once here so a wrong path or a file that is no picture is reported before the
        // model is loaded; the pipeline reads it again (a negligible cost next to sampling).
        use kakusan_core::image_io::LoadImageError;
        kakusan_core::image_io::load_image(path).map_err(|e| match e {
            LoadImageError::NotFound { .. } | LoadImageError::IsADirectory { .. } => {
                anyhow!("--init-image: {e}; check the path (give a PNG, JPEG, WebP or BMP file)")
            }
            e => anyhow!("--init-image: {e}"),
        })?;
    }
    // The folder given first (so a file given as --output-dir is named as such), then the
    // per-mode subfolder.
    kakusan_core::output::ensure_writable_dir(&args.output_dir)?;
    let out_dir = args.output_dir.join(if job.init_image.is_some() {
        "img2img"
    } else {
        "txt2img"
    });
    kakusan_core::output::ensure_writable_dir(&out_dir)?;
    if let Some(path) = &args.save_latents {
        check_latents_path(path)?;
    }
    if let Some(path) = &args.preview {
        check_latents_path(path)?;
        preview_format(path)?;
    }

    let mut model = load_model(&args.model)?;
    let (dw, dh) = model.default_size();
    job.width = args.width.unwrap_or(dw);
    job.height = args.height.unwrap_or(dh);
    job.cfg_scale = args.cfg.unwrap_or_else(|| model.defaults().cfg());
    if args.sampler.is_none() {
        cells = model_sampler_cells(model.defaults().sampler(), args.schedule.as_deref())?;
        job.sampler = cells[0].sampler.name().to_string();
        job.schedule = cells[0].schedule;
    }
    job.validate()?;
    // The memory estimate refuses an absurd size or batch before anything large is allocated.
    model.check_job(&job)?;
    // Merges the prompt's LoRAs into the text encoder and UNet.
    for w in model.prepare_job(&job)? {
        eprintln!("warning: {w}");
    }
    eprintln!("seed: {seed}");
    if cells.len() > 1 {
        let columns = args.sampler.as_deref().map_or(1, |list| {
            list.split(',').filter(|s| !s.trim().is_empty()).count()
        });
        let path = crate::compare::run(&model, &job, &cells, columns, &out_dir)?;
        println!("{}", path.display());
        return Ok(());
    }

    let bar = ProgressBar::new(job.steps as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("sampling");
    let start = Instant::now();
    let mut frames = Vec::new();
    let mut frame_error = None;
    let mut capture: Vec<usize> = Vec::new();
    let generation = model.generate(&job, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64 + 1);
        if args.preview.is_some() && frame_error.is_none() {
            if p.step == 0 {
                capture = kakusan_pipeline::sandstorm::capture_steps(p.total, args.preview_frames);
            }
            if capture.contains(&p.step) {
                match model.sandstorm_frame(p, 0) {
                    Ok(f) => frames.push(f),
                    Err(e) => frame_error = Some(e),
                }
            }
        }
    })?;
    if let Some(e) = frame_error {
        return Err(e).context("drawing the preview");
    }
    bar.finish_and_clear();
    tracing::info!("generated in {:.2}s", start.elapsed().as_secs_f64());

    let paths = kakusan_pipeline::save_images(&model, &job, &generation, &out_dir)?;
    for p in &paths {
        println!("{}", p.display());
    }
    if let Some(path) = &args.save_latents {
        kakusan_pipeline::save_latents(&generation, path)
            .with_context(|| format!("saving latents to {}", path.display()))?;
        println!("{}", path.display());
    }
    if let Some(path) = &args.preview {
        write_preview(path, &frames)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Whether the preview is a GIF (else a PNG strip); any other extension is refused.
fn preview_format(path: &std::path::Path) -> anyhow::Result<bool> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("gif") => Ok(true),
        Some("png") => Ok(false),
        _ => anyhow::bail!(
            "--preview {} must end in .png (a strip) or .gif (an animation)",
            path.display()
        ),
    }
}

fn write_preview(
    path: &std::path::Path,
    frames: &[kakusan_pipeline::sandstorm::SandstormFrame],
) -> anyhow::Result<()> {
    let bytes = if preview_format(path)? {
        kakusan_pipeline::sandstorm::gif(frames, 250)?
    } else {
        kakusan_core::png_meta::encode_png(&kakusan_pipeline::sandstorm::strip(frames))
            .context("encoding the preview")?
    };
    kakusan_core::output::write_atomically(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Checks, before any work is spent, that the latents can be written to `path`: its folder
/// exists and is writable and `path` itself is not a folder. (Unlike the output folder, the
/// latents' folder is not created: a missing one is more likely a typo.)
fn check_latents_path(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!(
            "--save-latents {} is a folder; give a file name such as {}",
            path.display(),
            path.join("latents.safetensors").display()
        );
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--save-latents {}: the folder {} does not exist; create it first or choose another path",
            path.display(),
            parent.display()
        );
    }
    kakusan_core::output::ensure_writable_dir(parent)
        .with_context(|| format!("--save-latents {}", path.display()))?;
    Ok(())
}

pub fn load_model(args: &ModelArgs) -> anyhow::Result<StableDiffusion> {
    let path = match &args.model {
        Some(p) => p.clone(),
        None => kakusan_pipeline::default_model_path().context(
            "no --model given and no built-in model found; pass --model with a diffusers folder or a .safetensors file",
        )?,
    };
    let device: kakusan_core::device::DeviceChoice = args.device.parse()?;
    let dtype: kakusan_core::device::DTypeChoice = args.dtype.parse()?;
    let vae_tiling: kakusan_pipeline::VaeTiling =
        args.vae_tiling.parse().map_err(anyhow::Error::msg)?;
    let opts = kakusan_pipeline::LoadOptions {
        device,
        dtype,
        prediction: args.prediction.as_deref().map(str::parse).transpose()?,
        config_from: args.config_from.clone(),
        embeddings_dir: args.embeddings.clone(),
        lora_dir: args.lora_dir.clone(),
    };
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let model = StableDiffusion::load(&path, &opts);
    spinner.finish_and_clear();
    match model {
        Err(kakusan_pipeline::PipelineError::Config(msg))
            if path.is_file() && args.config_from.is_none() =>
        {
            anyhow::bail!(
                "{msg} (the configs derived from this single file do not fit its weights; if it \
                 is a non-standard model, give a diffusers folder with its configs via --config-from)"
            )
        }
        other => {
            let mut model = other?;
            model.set_vae_tiling(vae_tiling);
            Ok(model)
        }
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    // A1111 seeds are 32-bit; keep ours in that range so they can be typed back in anywhere.
    h.finish() & 0xFFFF_FFFF
}

impl crate::cli::SamplerOptionArgs {
    /// The sampler options of a job.
    fn to_options(&self) -> kakusan_pipeline::SamplerOptions {
        kakusan_pipeline::SamplerOptions {
            eta: self.eta,
            s_noise: self.s_noise,
            s_churn: self.s_churn,
            s_tmin: self.s_tmin,
            s_tmax: self.s_tmax.unwrap_or(f64::INFINITY),
            brownian_noise: !self.no_brownian,
            brownian_range: None,
        }
    }
}

/// The cells of the model's own sampler (its generation_defaults.json, else Euler a) when
/// --sampler is not given: a --schedule the user gives wins over the schedule the model's
/// sampler name implies ("DPM++ 2M Karras" with `--schedule exponential` is DPM++ 2M on the
/// exponential schedule), where two explicit ones would be a contradiction.
fn model_sampler_cells(
    name: &str,
    schedules: Option<&str>,
) -> anyhow::Result<Vec<crate::compare::Cell>> {
    let (sampler, implied) = kakusan_sampling::parse_sampler_name(name)?;
    let implied = implied.map(|kind| kind.name().to_string());
    crate::compare::cells(sampler.name(), schedules.or(implied.as_deref()))
}
