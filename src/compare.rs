//! `kakusan generate --sampler a,b,c [--schedule x,y]`: the same seed under several samplers
//! (and schedules), one labelled cell each, in one grid PNG: the picture users want when they
//! choose a sampler.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kakusan_pipeline::{Job, ScheduleKind, StableDiffusion};
use kakusan_sampling::Sampler;

/// One cell of the comparison: its label, sampler and schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub label: String,
    pub sampler: Sampler,
    pub schedule: ScheduleKind,
}

/// The cells for comma-separated `--sampler` and `--schedule` lists (every sampler with
/// every schedule, samplers along a row). Every name is checked here, before any model is
/// loaded; a single pair is a plain generation.
pub fn cells(samplers: &str, schedules: Option<&str>) -> anyhow::Result<Vec<Cell>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let sampler_names = split(samplers);
    if sampler_names.is_empty() {
        anyhow::bail!("--sampler is empty; see `kakusan samplers`");
    }
    let schedule_names: Vec<Option<String>> = match schedules {
        Some(s) if !split(s).is_empty() => split(s).into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let mut out = Vec::new();
    for schedule in &schedule_names {
        for name in &sampler_names {
            let (sampler, kind) = kakusan_sampling::resolve(name, schedule.as_deref())?;
            out.push(Cell {
                label: format!("{} / {}", sampler.name(), kind.a1111_label()),
                sampler,
                schedule: kind,
            });
        }
    }
    Ok(out)
}

/// Renders every cell with `job` (its first image) and writes the grid into `out_dir`.
pub fn run(
    model: &StableDiffusion,
    job: &Job,
    cells: &[Cell],
    columns: usize,
    out_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut rendered = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let job = Job {
            sampler: cell.sampler.name().to_string(),
            schedule: cell.schedule,
            batch_size: 1,
            ..job.clone()
        };
        eprintln!("[{}/{}] {}", i + 1, cells.len(), cell.label);
        let generation = model
            .generate(&job, &mut |_| {})
            .with_context(|| format!("rendering {}", cell.label))?;
        let image = generation
            .images
            .into_iter()
            .next()
            .context("the model returned no picture")?;
        rendered.push((cell.label.clone(), image));
    }
    let grid = kakusan_data::labelled_grid(&rendered, columns);
    let bytes = kakusan_core::png_meta::encode_png(&grid)?;
    Ok(kakusan_core::output::write_new_output(
        out_dir, job.seed, "png", &bytes,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_make_every_pair() {
        let c = cells("Euler a, DPM++ 2M", Some("normal,karras")).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].sampler, Sampler::Dpmpp2m);
        assert_eq!(c[2].schedule, ScheduleKind::Karras);
        assert_eq!(c[0].label, "Euler a / Normal");
        let c = cells("DPM++ 2M Karras,dpmpp_sde", None).unwrap();
        assert_eq!(c[0].schedule, ScheduleKind::Karras);
        assert_eq!(c[1].schedule, ScheduleKind::Normal);
        assert!(cells("Euler,Nope", None).is_err());
        assert!(cells(" , ", None).is_err());
    }
}
