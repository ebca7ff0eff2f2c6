//! `kakusan eval`: prompt adherence of a model on held-out attribute combinations, as the
//! shipped evaluator reads the generated pictures; a table per attribute and a grid PNG.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_data::Sample;
use kakusan_eval::{cases_of, Adherence, Evaluator};
use kakusan_pipeline::Job;

use crate::cli::EvalArgs;
use crate::generate::load_model;

/// The shipped evaluator.
pub(crate) fn default_evaluator() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/kakusan-eval")
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        anyhow::bail!("--count must be at least 1");
    }
    if let Some(sampler) = &args.sampler {
        kakusan_pipeline::check_sampler(sampler)?;
    }
    let evaluator_dir = args.evaluator.clone().unwrap_or_else(default_evaluator);
    let evaluator = Evaluator::load(&evaluator_dir)
        .with_context(|| format!("loading the evaluator {}", evaluator_dir.display()))?;
    if let Some(vae_dir) = &args.reconstruct {
        return reconstruction(&args, vae_dir, &evaluator);
    }
    let mut model = load_model(&args.model)?;
    let (width, height) = model.default_size();
    let cfg = args.cfg.unwrap_or_else(|| model.defaults().cfg());
    let sampler = args
        .sampler
        .clone()
        .unwrap_or_else(|| model.defaults().sampler().to_string());
    let split = match args.split.as_str() {
        "held-out" => kakusan_data::Split::HeldOut,
        "train" => kakusan_data::Split::Train,
        other => anyhow::bail!("--split {other:?}: expected held-out or train"),
    };
    if args.check_targets && split != kakusan_data::Split::HeldOut {
        anyhow::bail!("--check-targets measures the held-out prompts; drop --split train");
    }
    let mut cases = cases_of(split, args.count, args.seed)?;
    if let Some(glyph) = chosen_glyph(&args)? {
        cases = kakusan_eval::with_glyph(cases, glyph);
    }

    let bar = ProgressBar::new(cases.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} generating [{bar:30}] {pos}/{len} prompts eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut adherence = Adherence::default();
    let mut grid = Vec::with_capacity(cases.len());
    for case in &cases {
        let job = Job {
            prompt: case.prompt.clone(),
            seed: case.seed,
            steps: args.steps,
            cfg_scale: cfg,
            width,
            height,
            sampler: sampler.clone(),
            ..Job::default()
        };
        model.prepare_job(&job)?;
        let generation = model.generate(&job, &mut |_| {})?;
        let image = generation
            .images
            .into_iter()
            .next()
            .context("the model returned no picture")?;
        let verdict = match case.scene.relation() {
            None => {
                let p = evaluator.classify(std::slice::from_ref(&image))?;
                let missed = adherence.record_single(&case.scene, &p[0]);
                if missed.is_empty() {
                    "ok".to_string()
                } else {
                    let names: Vec<&str> = missed.iter().map(|a| a.name()).collect();
                    format!("missed {}", names.join(", "))
                }
            }
            Some(relation) => {
                let p = evaluator.classify_pairs(std::slice::from_ref(&image), &[relation])?;
                if adherence.record_pair(&case.scene, &p[0]) {
                    "ok".to_string()
                } else {
                    "missed".to_string()
                }
            }
        };
        grid.push(Sample {
            image,
            caption: format!("{verdict}: {}", case.prompt),
            scene: case.scene.clone(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "model: {} ({}), {} {} prompts, {} steps of {}, CFG {}",
        model.name(),
        model.hash(),
        cases.len(),
        split.name(),
        args.steps,
        sampler,
        cfg
    );
    report(&adherence, &grid, &args)
}

/// The glyph of `--glyph`, if given.
fn chosen_glyph(args: &EvalArgs) -> anyhow::Result<Option<kakusan_data::Glyph>> {
    let Some(name) = &args.glyph else {
        return Ok(None);
    };
    let glyph = kakusan_data::Glyph::from_name(name).with_context(|| {
        let names: Vec<&str> = kakusan_data::Glyph::EVALUATED
            .iter()
            .map(|g| g.name())
            .collect();
        format!("--glyph {name:?}: not a glyph; one of {}", names.join(", "))
    })?;
    Ok(Some(glyph))
}

/// How well the evaluator reads a VAE's reconstructions of held-out one-object pictures:
/// the VAE's quality gate before a UNet is trained on its latents.
fn reconstruction(
    args: &EvalArgs,
    vae_dir: &std::path::Path,
    evaluator: &Evaluator,
) -> anyhow::Result<()> {
    let vae = kakusan_train::export::load_vae(vae_dir, &candle_core::Device::Cpu)?;
    let data = kakusan_data::Dataset::new(args.seed, kakusan_data::Split::HeldOut, 64)?
        .with_two_object_fraction(0.0)?;
    let mut adherence = Adherence::default();
    let mut grid = Vec::new();
    let mut l1 = 0f64;
    let glyph = chosen_glyph(args)?;
    // With --glyph, the held-out scene redrawn (rendered once) with that glyph.
    let sample = |i: usize| match glyph {
        None => data.sample(i as u64),
        Some(glyph) => {
            let scene = data.scene(i as u64).with_glyph(glyph);
            Sample {
                image: kakusan_data::render(&scene, data.image_size()),
                caption: kakusan_data::canonical_prompt(&scene),
                scene,
            }
        }
    };
    for start in (0..args.count).step_by(16) {
        let n = 16.min(args.count - start);
        let samples: Vec<Sample> = (start..start + n).map(sample).collect();
        let images: Vec<_> = samples.iter().map(|s| s.image.clone()).collect();
        let x = kakusan_core::image_io::images_to_tensor(&images)?;
        let z = vae.encode(&x)?.mode().clone();
        let y = vae.decode(&z)?;
        l1 += (&y - &x)?.abs()?.mean_all()?.to_scalar::<f32>()? as f64 * n as f64;
        let recon = kakusan_core::image_io::tensor_to_images(&y)?;
        let predictions = evaluator.classify(&recon)?;
        for (p, (s, r)) in predictions.iter().zip(samples.into_iter().zip(recon)) {
            let missed = adherence.record_single(&s.scene, p);
            if grid.len() < 40 {
                let verdict = if missed.is_empty() { "ok" } else { "missed" };
                grid.push(Sample {
                    image: r,
                    caption: format!("{verdict}: {}", s.caption),
                    scene: s.scene,
                });
            }
        }
    }
    println!(
        "VAE {}: mean L1 {:.4} on {} held-out pictures ([-1, 1] scale); the evaluator on its reconstructions:",
        vae_dir.display(),
        l1 / args.count as f64,
        args.count
    );
    report(&adherence, &grid, args)
}

fn write_grid(grid: &[Sample], path: &std::path::Path) -> anyhow::Result<()> {
    kakusan_core::png_meta::write_png(path, &kakusan_data::preview_grid(grid, 10))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

/// Prints the adherence table and writes the grid; with `--check-targets`, fails when a
/// target is missed.
fn report(adherence: &Adherence, grid: &[Sample], args: &EvalArgs) -> anyhow::Result<()> {
    print!("{adherence}");
    write_grid(grid, &args.grid)?;
    if !args.check_targets {
        return Ok(());
    }
    let missed = adherence.missed_targets();
    if missed.is_empty() {
        println!("every adherence target met");
        return Ok(());
    }
    let list: Vec<String> = missed
        .iter()
        .map(|(a, share, target)| {
            format!(
                "{} {:.1} % < {:.0} %",
                a.name(),
                100.0 * share,
                100.0 * target
            )
        })
        .collect();
    anyhow::bail!("adherence below target: {}", list.join(", "))
}
