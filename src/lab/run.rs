//! Drawing and measuring every picture of an experiment: each inner row under each outer
//! (noise) condition, through the normal pipeline, saved with its PNG parameters. A picture
//! already on disk is measured from the file instead of drawn again, and a picture already
//! in `results.csv` is skipped, so a killed run resumes and never draws anything twice.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_lab::RunSpec;
use kakusan_pipeline::{Job, StableDiffusion};

use super::results::{Record, Results};
use super::scorer::Scorer;

/// The file of one picture, relative to the run folder (`tag` is "r" for array rows, "c"
/// for confirmation runs).
pub fn image_file(tag: &str, spec: &RunSpec) -> String {
    format!("images/{tag}{:02}-n{:02}.png", spec.row + 1, spec.noise + 1)
}

/// Draws and measures every picture of `specs` not yet in `results`, with a progress bar.
pub fn draw_and_measure(
    model: &mut StableDiffusion,
    scorer: &Scorer,
    specs: &[RunSpec],
    tag: &str,
    dir: &Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let todo: Vec<&RunSpec> = specs
        .iter()
        .filter(|s| results.get(s.row, s.noise).is_none())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let bar = ProgressBar::new(todo.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} drawing [{bar:30}] {pos}/{len} pictures, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for spec in todo {
        let file = image_file(tag, spec);
        let path = dir.join(&file);
        bar.set_message(format!("row {} seed {}", spec.row + 1, spec.seed));
        let image = picture(model, spec, &path)?;
        let response = scorer
            .score(&image)
            .with_context(|| format!("measuring {}", path.display()))?;
        results.insert(Record {
            row: spec.row,
            noise: spec.noise,
            seed: spec.seed,
            response,
            file,
            prompt: spec.prompt.clone(),
        })?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The picture of `spec` at `path`: read when it is already there (drawn before a kill, not
/// yet measured), else drawn and saved there.
pub fn picture(
    model: &mut StableDiffusion,
    spec: &RunSpec,
    path: &Path,
) -> anyhow::Result<image::RgbImage> {
    if path.is_file() {
        return Ok(image::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .to_rgb8());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let job = job_for(spec)?;
    model.prepare_job(&job)?;
    let generation = model.generate(&job, &mut |_| {})?;
    kakusan_pipeline::save_image_to(model, &job, &generation, 0, path)?;
    generation
        .images
        .into_iter()
        .next()
        .context("the model returned no picture")
}

/// The generation job of one picture (sampler names as `kakusan generate` reads them, e.g.
/// "DPM++ 2M Karras").
fn job_for(spec: &RunSpec) -> anyhow::Result<Job> {
    let cells = crate::compare::cells(&spec.sampler, spec.schedule.as_deref())?;
    let cell = cells.first().context("no sampler given")?;
    let job = Job {
        prompt: spec.prompt.clone(),
        negative_prompt: spec.negative.clone(),
        seed: spec.seed,
        steps: spec.steps,
        cfg_scale: spec.cfg,
        width: spec.width,
        height: spec.height,
        sampler: cell.sampler.name().to_string(),
        schedule: cell.schedule,
        ..Job::default()
    };
    job.validate()?;
    kakusan_pipeline::check_sampler(&job.sampler)?;
    Ok(job)
}
