//! `kakusan lab unitspace build|score`: the T-method's unit space of reference pictures
//! (their features: the evaluator's class probabilities), saved as JSON, and the scores of
//! other pictures against it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kakusan_lab::UnitSpace;

use super::scorer::{build_unit_space, features_of_file, pictures_in};
use crate::cli::{UnitspaceBuildArgs, UnitspaceCommand, UnitspaceScoreArgs};

pub fn run(cmd: UnitspaceCommand) -> anyhow::Result<()> {
    match cmd {
        UnitspaceCommand::Build(args) => build(&args),
        UnitspaceCommand::Score(args) => score(&args),
    }
}

fn build(args: &UnitspaceBuildArgs) -> anyhow::Result<()> {
    let evaluator = super::load_evaluator(args.evaluator.as_deref())?;
    let space = build_unit_space(&evaluator, &args.folder)?;
    let json = serde_json::to_vec_pretty(&space)?;
    kakusan_core::output::write_atomically(&args.out, &json)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "unit space of {} pictures, {} features: {}",
        pictures_in(&args.folder)?.len(),
        space.means.len(),
        args.out.display()
    );
    Ok(())
}

fn score(args: &UnitspaceScoreArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.unitspace)
        .with_context(|| format!("reading {}", args.unitspace.display()))?;
    let space: UnitSpace = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a unit space written by `kakusan lab unitspace build`",
            args.unitspace.display()
        )
    })?;
    let evaluator = super::load_evaluator(args.evaluator.as_deref())?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in &args.pictures {
        if p.is_dir() {
            paths.extend(pictures_in(p)?);
        } else {
            paths.push(p.clone());
        }
    }
    println!("picture\tY1 (beta)\tY2 (noise)\tSN (dB)\tD");
    for path in &paths {
        let s = score_one(&evaluator, &space, path)?;
        println!(
            "{}\t{:.4}\t{:.4}\t{}\t{:.3}",
            path.display(),
            s.0.beta,
            s.0.noise,
            s.0.sn_db.map_or("-".into(), |v| format!("{v:.2}")),
            s.1
        );
    }
    Ok(())
}

fn score_one(
    evaluator: &kakusan_eval::Evaluator,
    space: &UnitSpace,
    path: &Path,
) -> anyhow::Result<(kakusan_lab::TScore, f64)> {
    let x = features_of_file(evaluator, path)?;
    let score = space
        .score(&x)
        .with_context(|| format!("scoring {}", path.display()))?;
    Ok((score, space.d2(&x)?.sqrt()))
}
