//! `kakusan train vae|unet`: runs a training stage from its TOML file with a progress bar,
//! resumable from the checkpoints in `--out`, and exports the result when the stage is done.

use std::path::Path;

use anyhow::Context;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_models::clip::{ClipTextConfig, Tokenizer};
use kakusan_models::unet::UNetConfig;
use kakusan_models::vae::VaeConfig;
use kakusan_train::run_config::{DiffusionRunConfig, VaeRunConfig};
use kakusan_train::tasks::{DiffusionTask, ProceduralImages, VaeTask};
use kakusan_train::{TrainTask, Trainer, TrainerConfig};

use crate::cli::{TrainArgs, TrainCommand};

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    if let TrainCommand::Vae(args) | TrainCommand::Classifier(args) = &cmd {
        if args.data.is_some() {
            anyhow::bail!("--data is for `kakusan train unet`; the VAE and the evaluator train on the procedural data");
        }
    }
    match cmd {
        TrainCommand::Vae(args) => train_vae(&args),
        TrainCommand::Unet(args) => train_unet(&args),
        TrainCommand::Classifier(args) => train_classifier(&args),
        TrainCommand::Compact(args) => compact(&args),
    }
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn progress_bar(done: u64, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} training [{bar:30}] {pos}/{len} steps {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done);
    bar
}

/// Sets up the run in `args.out` (resuming if asked) and trains until the configured total
/// or `args.steps` more steps, with a progress bar. Returns the trainer (for the export).
fn run_stage(
    task: &mut dyn TrainTask,
    config: &TrainerConfig,
    extra: serde_json::Value,
    args: &TrainArgs,
    device: &Device,
) -> anyhow::Result<Trainer> {
    let mut trainer = Trainer::new(
        task.vars().clone(),
        config.clone(),
        &args.out,
        args.resume,
        extra,
        device,
    )?;
    let bar = progress_bar(trainer.step(), config.total_steps);
    trainer.run(task, args.steps, &mut |r| {
        bar.set_position(r.step);
        bar.set_message(format!("loss {:.4} lr {:.2e}", r.loss, r.lr));
    })?;
    bar.finish_and_clear();
    Ok(trainer)
}

fn train_vae(args: &TrainArgs) -> anyhow::Result<()> {
    let config = VaeRunConfig::load(&args.config)?;
    let device = Device::Cpu;
    let vae_json = read_json(&config.model.vae_config)?;
    let vae_config: VaeConfig = serde_json::from_value(vae_json.clone())
        .with_context(|| format!("{}", config.model.vae_config.display()))?;
    let data = ProceduralImages::new(&config.data)?;
    let mut task = VaeTask::new(&vae_config, config.task.clone(), Box::new(data), &device)?;
    if let Some(init) = &args.init {
        let file = init.join(kakusan_train::export::WEIGHTS_FILE);
        let weights = candle_core::safetensors::load(&file, &device)
            .with_context(|| format!("loading initial weights {}", file.display()))?;
        kakusan_train::init::load_initial_weights(task.all_vars(), &weights)?;
    } else if config.task.decoder_only {
        anyhow::bail!("decoder_only fine-tunes a trained VAE: give it with --init DIR");
    }
    eprintln!(
        "VAE: {} parameters, {} trained",
        task.all_vars().parameter_count(),
        task.vars().parameter_count()
    );
    let trainer = run_stage(
        &mut task,
        &config.trainer,
        serde_json::to_value(&config)?,
        args,
        &device,
    )?;
    // The EMA weights with a measured scaling factor, after every run (a partly trained VAE
    // can be inspected, and the UNet stage always finds OUT/vae).
    let data = ProceduralImages::new(&config.data)?;
    let dir = args.out.join("vae");
    // With a frozen encoder the EMA holds only the decoder; the rest is as loaded.
    let mut weights = task.all_vars().snapshot();
    weights.extend(trainer.ema_weights().clone());
    let keep_scale = match (&args.init, config.task.decoder_only) {
        (Some(init), true) => read_json(&init.join("config.json"))?
            .get("scaling_factor")
            .and_then(|v| v.as_f64()),
        _ => None,
    };
    let scale =
        kakusan_train::export::export_vae(&weights, &vae_json, &data, &dir, keep_scale, &device)?;
    println!("{} (scaling_factor {scale:.5})", dir.display());
    print_stop(trainer.step(), config.trainer.total_steps);
    Ok(())
}

/// Where a run stopped, and how to continue it.
fn print_stop(step: u64, total: u64) {
    if step < total {
        println!("stopped at step {step} of {total}; continue with --resume");
    } else {
        println!("finished: step {step} of {total}");
    }
}

/// The `--data` pictures with `--prior-fraction` of prior pictures mixed in: the
/// `--prior-data` folder's, else the procedural data of the config.
fn with_prior(
    subject: Box<dyn kakusan_train::tasks::CaptionedImages>,
    args: &TrainArgs,
    data: &kakusan_train::tasks::ProceduralDataConfig,
) -> anyhow::Result<Box<dyn kakusan_train::tasks::CaptionedImages>> {
    if args.prior_fraction == 0.0 {
        if args.prior_data.is_some() {
            anyhow::bail!("--prior-data needs --prior-fraction: the share of each batch drawn from it (e.g. 0.5)");
        }
        return Ok(subject);
    }
    let prior: Box<dyn kakusan_train::tasks::CaptionedImages> = match &args.prior_data {
        Some(dir) => {
            let folder = kakusan_train::tasks::FolderImages::open(
                dir,
                data.image_size,
                data.seed.wrapping_add(1),
            )
            .context("--prior-data")?;
            eprintln!(
                "prior: {} pictures from {}, {:.0} % of each batch",
                folder.len(),
                dir.display(),
                args.prior_fraction * 100.0
            );
            Box::new(folder)
        }
        None => {
            eprintln!(
                "prior: the procedural data (seed {}), {:.0} % of each batch",
                data.seed,
                args.prior_fraction * 100.0
            );
            Box::new(ProceduralImages::new(data)?)
        }
    };
    Ok(Box::new(kakusan_train::tasks::PriorMixedImages::new(
        subject,
        prior,
        args.prior_fraction,
    )?))
}

fn train_unet(args: &TrainArgs) -> anyhow::Result<()> {
    let config = DiffusionRunConfig::load(&args.config)?;
    let device = Device::Cpu;
    // The files: the config's, else (fine-tuning) the --from model's own.
    let paths = config
        .model
        .paths(args.init.as_deref())
        .with_context(|| format!("{}", args.config.display()))?;
    let (text_json, unet_json, scheduler_json) = (
        read_json(&paths.text_encoder_config)?,
        read_json(&paths.unet_config)?,
        read_json(&paths.scheduler_config)?,
    );
    let text_config: ClipTextConfig = serde_json::from_value(text_json.clone())?;
    let unet_config: UNetConfig = serde_json::from_value(unet_json.clone())?;
    let scheduler: kakusan_sampling::SchedulerConfig =
        serde_json::from_value(scheduler_json.clone())?;
    let (vae_dir, tokenizer_dir) = (paths.vae, paths.tokenizer);
    let vae = kakusan_train::export::load_vae(&vae_dir, &device)
        .context("loading the trained VAE; run `kakusan train vae` first")?;
    let tokenizer = Tokenizer::from_folder(&tokenizer_dir)?;
    let alphas = scheduler.discrete_schedule()?.alphas_cumprod().to_vec();
    let data: Box<dyn kakusan_train::tasks::CaptionedImages> = match &args.data {
        Some(dir) => {
            let folder = kakusan_train::tasks::FolderImages::open(
                dir,
                config.data.image_size,
                config.data.seed,
            )
            .context("--data")?;
            eprintln!(
                "data: {} pictures, {} per epoch with repeats, from {}",
                folder.len(),
                folder.epoch_len(),
                dir.display()
            );
            with_prior(Box::new(folder), args, &config.data)?
        }
        None => Box::new(ProceduralImages::new(&config.data)?),
    };
    let mut task = DiffusionTask::new(
        &text_config,
        &unet_config,
        vae,
        tokenizer,
        alphas,
        config.task.clone(),
        data,
        &device,
    )?
    .with_prediction(scheduler.prediction()?);
    if config.task.feature_alignment_weight > 0.0 {
        let dir = config.model.feature_teacher.as_ref().with_context(|| {
            format!(
                "{}: feature_alignment_weight needs [model] feature_teacher (a classifier folder)",
                args.config.display()
            )
        })?;
        let teacher = kakusan_eval::ClassifierTeacher::load(dir, config.task.feature_teacher_stage)
            .with_context(|| format!("loading the feature teacher {}", dir.display()))?;
        task = task.with_feature_teacher(Box::new(teacher))?;
    }
    eprintln!(
        "text encoder + UNet: {} parameters",
        task.model_vars().parameter_count()
    );
    if let Some(init) = &args.init {
        let weights = kakusan_train::export::load_pipeline_weights(init, &device)
            .context("loading the initial weights")?;
        let new = kakusan_train::init::load_initial_weights_growing(
            &task.model_vars(),
            &weights,
            &config.model.new_layers,
        )?;
        if !new.is_empty() {
            eprintln!("new layers: {} variables start fresh", new.len());
        }
    }
    let trainer = run_stage(
        &mut task,
        &config.trainer,
        serde_json::to_value(&config)?,
        args,
        &device,
    )?;
    // The EMA weights as a diffusers folder, after every session (a partly trained model
    // can be looked at with `kakusan generate --model OUT/model`).
    let model_dir = args.out.join("model");
    let generation_defaults = args
        .init
        .as_ref()
        .map(|m| m.join(kakusan_pipeline::generation_defaults::FILE_NAME))
        .filter(|f| f.is_file());
    kakusan_train::export::export_pipeline(
        trainer.ema_weights(),
        &kakusan_train::export::PipelineParts {
            text_encoder_config: &text_json,
            unet_config: &unet_json,
            scheduler_config: &scheduler_json,
            vae_dir: &vae_dir,
            tokenizer_dir: &tokenizer_dir,
            generation_defaults: generation_defaults.as_deref(),
        },
        &model_dir,
        true,
    )?;
    println!("{}", model_dir.display());
    print_stop(trainer.step(), config.trainer.total_steps);
    Ok(())
}

fn compact(args: &crate::cli::CompactArgs) -> anyhow::Result<()> {
    let from = kakusan_train::CheckpointDir::new(&args.run, 1);
    let step = kakusan_train::checkpoint::write_compact(&from, &args.to)?;
    let log = args.run.join("loss.csv");
    if log.is_file() {
        let to = args.to.join("loss.csv");
        std::fs::copy(&log, &to).with_context(|| format!("copying {}", log.display()))?;
    }
    println!("{} (step {step})", args.to.display());
    Ok(())
}

fn train_classifier(args: &TrainArgs) -> anyhow::Result<()> {
    let bar = progress_bar(0, 0);
    let run = kakusan_eval::train_classifier(
        &args.config,
        &args.out,
        args.resume,
        args.steps,
        args.init.as_deref(),
        &mut |r| {
            bar.set_length(r.total);
            bar.set_position(r.step);
            bar.set_message(format!("loss {:.4} lr {:.2e}", r.loss, r.lr));
        },
    )?;
    bar.finish_and_clear();
    println!("{}", run.model_dir.display());
    print_stop(run.step, run.total_steps);
    Ok(())
}
