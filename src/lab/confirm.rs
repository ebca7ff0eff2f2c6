//! `kakusan lab confirm`: the confirmation run of Taguchi's method. The optimum the analysis
//! predicts (the best level of every factor) is drawn over the same noise conditions as the
//! array rows; its observed SN ratio is set against the prediction, a test of whether the
//! factors' effects add up. Pictures go to `images/c01-nNN.png`, responses to `confirm.csv`.

use std::path::Path;

use kakusan_lab::{Experiment, RunSpec};

use super::results::Results;

/// The observed optimum.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub prompt: String,
    pub sn: f64,
    pub mean: f64,
    /// Picture files relative to the run folder.
    pub files: Vec<String>,
}

/// The confirmation file of a run folder.
pub fn confirm_csv(dir: &Path) -> std::path::PathBuf {
    dir.join("confirm.csv")
}

/// The pictures of the confirmation run at `best_levels` (labelled row 0).
pub fn confirmation_specs(
    experiment: &Experiment,
    best_levels: &[usize],
) -> anyhow::Result<Vec<RunSpec>> {
    Ok(experiment.runs_at(0, best_levels)?)
}

/// The confirmation of `specs` once every one of its pictures is measured in `results`.
pub fn confirmation(
    experiment: &Experiment,
    specs: &[RunSpec],
    results: &Results,
) -> anyhow::Result<Option<Confirmation>> {
    let mut ys = Vec::with_capacity(specs.len());
    let mut files = Vec::with_capacity(specs.len());
    for s in specs {
        match results.get(s.row, s.noise) {
            // A record of another optimum (the analysis changed since): not this one.
            Some(r) if r.prompt == s.prompt && r.seed == s.seed => {
                ys.push(r.response);
                files.push(r.file.clone());
            }
            _ => return Ok(None),
        }
    }
    let Some(first) = specs.first() else {
        return Ok(None);
    };
    let sn = experiment.response.sn.sn(&ys)?;
    Ok(Some(Confirmation {
        prompt: first.prompt.clone(),
        sn,
        mean: ys.iter().sum::<f64>() / ys.len() as f64,
        files,
    }))
}
