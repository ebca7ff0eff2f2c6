//! `kakusan eval`: prompt adherence of a model on held-out attribute combinations, as the
//! shipped evaluator reads the generated pictures; a table per attribute and a grid PNG.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_data::Sample;
use kakusan_eval::{held_out_cases, Adherence, Evaluator};
use kakusan_pipeline::Job;

use crate::cli::EvalArgs;
use crate::generate::load_model;

/// The shipped evaluator.
fn default_evaluator() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/kakusan-eval")
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        anyhow::bail!("--count must be at least 1");
    }
    kakusan_pipeline::check_sampler(&args.sampler)?;
    let evaluator_dir = args.evaluator.clone().unwrap_or_else(default_evaluator);
    let evaluator = Evaluator::load(&evaluator_dir)
        .with_context(|| format!("loading the evaluator {}", evaluator_dir.display()))?;
    let model = load_model(&args.model)?;
    let (width, height) = model.default_size();
    let cases = held_out_cases(args.count, args.seed)?;

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
            cfg_scale: args.cfg,
            width,
            height,
            sampler: args.sampler.clone(),
            ..Job::default()
        };
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
            caption: format!("[{verdict}] {}", case.prompt),
            scene: case.scene.clone(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "model: {} ({}), {} held-out prompts, {} steps of {}, CFG {}",
        model.name(),
        model.hash(),
        cases.len(),
        args.steps,
        args.sampler,
        args.cfg
    );
    print!("{adherence}");
    let picture = kakusan_data::preview_grid(&grid, 10);
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(picture)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .context("encoding the grid")?;
    kakusan_core::output::write_atomically(&args.grid, &bytes)
        .with_context(|| format!("writing {}", args.grid.display()))?;
    println!("{}", args.grid.display());
    Ok(())
}
