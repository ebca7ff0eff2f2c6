//! `kakusan lab`: prompt engineering as a designed experiment (Taguchi's parameter design)
//! on top of the normal pipeline and the evaluator. `run` draws and measures every picture of
//! an experiment file (resumable), analyses it and writes `report.html`; `confirm` draws the
//! predicted optimum and checks the prediction; `optimize` searches the levels with a bandit
//! against random search and the array; `unitspace build|score` are the T-method's
//! reference sets. The mathematics is in the kakusan-lab crate.
//!
//! Modules: [`scorer`] (picture → response), [`results`] (`results.csv`), [`run`] (drawing
//! and measuring), [`analysis`] (SN ratios, effects, ANOVA, optimum), [`confirm`],
//! [`effect_plot`] (PNG), [`report`] (HTML), [`optimize`] with [`bandit`] (the strategies),
//! [`draws`] (its picture cache) and [`curve_plot`], [`unit_space`]; [`draw`] holds the
//! plots' line and dot primitives.

mod analysis;
mod bandit;
mod confirm;
mod curve_plot;
mod draw;
mod draws;
mod effect_plot;
mod optimize;
mod report;
mod results;
mod run;
mod scorer;
mod unit_space;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kakusan_eval::Evaluator;
use kakusan_lab::{Experiment, OrthogonalArray};
use kakusan_pipeline::StableDiffusion;

use crate::cli::{LabArgs, LabCommand};
use results::Results;

pub fn run(cmd: LabCommand) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Run(args) => run_experiment(&args),
        LabCommand::Confirm(args) => confirm_optimum(&args),
        LabCommand::Optimize(args) => optimize::run(&args),
        LabCommand::Unitspace(cmd) => unit_space::run(cmd),
    }
}

/// The index of the largest value (the first on ties; 0 for an empty slice).
fn argmax<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// The evaluator of `--evaluator`, or the shipped one.
fn load_evaluator(dir: Option<&Path>) -> anyhow::Result<Evaluator> {
    let dir = dir.map_or_else(crate::eval::default_evaluator, Path::to_path_buf);
    Evaluator::load(&dir).with_context(|| format!("loading the evaluator {}", dir.display()))
}

/// An experiment loaded with its design, model, instrument and run folder.
struct Lab {
    experiment: Experiment,
    oa: OrthogonalArray,
    cols: Vec<usize>,
    noises: usize,
    dir: PathBuf,
    model: StableDiffusion,
    scorer: scorer::Scorer,
}

/// The run folder: `--out`, or `lab/<experiment file name>`.
fn run_dir(args: &LabArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let stem = args
            .experiment
            .file_stem()
            .map_or("experiment".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("lab").join(stem)
    })
}

fn open(args: &LabArgs) -> anyhow::Result<Lab> {
    let text = std::fs::read_to_string(&args.experiment)
        .with_context(|| format!("reading {}", args.experiment.display()))?;
    let experiment =
        Experiment::parse(&text).with_context(|| format!("in {}", args.experiment.display()))?;
    experiment.validate()?;
    let (oa, cols) = experiment.design()?;
    let noises = experiment.outer().len();
    let dir = run_dir(args);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The folder belongs to one experiment: its results mean nothing for another.
    let copy = dir.join("experiment.toml");
    match std::fs::read_to_string(&copy) {
        Ok(old) if old != text => bail!(
            "{} holds the results of a different experiment ({}); pass another --out",
            dir.display(),
            copy.display()
        ),
        Ok(_) => {}
        Err(_) => kakusan_core::output::write_atomically(&copy, text.as_bytes())?,
    }
    let base = args
        .experiment
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut model_args = args.model.clone();
    if model_args.model.is_none() {
        model_args.model = experiment.settings.model.as_ref().map(|m| base.join(m));
    }
    let evaluator = load_evaluator(args.evaluator.as_deref())?;
    let scorer = scorer::Scorer::new(&experiment.response, evaluator, &base)?;
    let model = crate::generate::load_model(&model_args)?;
    Ok(Lab {
        experiment,
        oa,
        cols,
        noises,
        dir,
        model,
        scorer,
    })
}

fn run_experiment(args: &LabArgs) -> anyhow::Result<()> {
    let mut lab = open(args)?;
    let specs = lab.experiment.runs()?;
    let mut results = Results::load(&lab.dir.join("results.csv"))?;
    eprintln!(
        "{}: {} x {} = {} pictures, {} already measured, in {}",
        lab.experiment.name,
        lab.oa.kind.notation(),
        lab.noises,
        specs.len(),
        results.len(),
        lab.dir.display()
    );
    run::draw_and_measure(
        &mut lab.model,
        &lab.scorer,
        &specs,
        "r",
        &lab.dir,
        &mut results,
    )?;
    write_outputs(&lab, &results)
}

fn confirm_optimum(args: &LabArgs) -> anyhow::Result<()> {
    let mut lab = open(args)?;
    let results = Results::load(&lab.dir.join("results.csv"))?;
    let a = analysis::analyse(&lab.experiment, &lab.oa, &lab.cols, lab.noises, &results)
        .context("the experiment must be run first (kakusan lab run)")?;
    let specs = confirm::confirmation_specs(&lab.experiment, &a.best_levels)?;
    let mut confirmed = Results::load(&confirm::confirm_csv(&lab.dir))?;
    run::draw_and_measure(
        &mut lab.model,
        &lab.scorer,
        &specs,
        "c",
        &lab.dir,
        &mut confirmed,
    )?;
    write_outputs(&lab, &results)
}

/// Analysis, terminal summary, effect plots and report.html.
fn write_outputs(lab: &Lab, results: &Results) -> anyhow::Result<()> {
    let e = &lab.experiment;
    let a = analysis::analyse(e, &lab.oa, &lab.cols, lab.noises, results)?;
    print!("{}", analysis::summary(e, &a));
    let confirmed = Results::load(&confirm::confirm_csv(&lab.dir))?;
    let specs = confirm::confirmation_specs(e, &a.best_levels)?;
    let confirmation = confirm::confirmation(e, &specs, &confirmed)?;
    if let Some(c) = &confirmation {
        println!(
            "confirmation: observed SN {:.3} dB (mean {:.4}) against predicted {:.3} dB",
            c.sn, c.mean, a.predicted_sn
        );
    }
    let names: Vec<String> = e.factors.iter().map(|f| f.name.clone()).collect();
    for (file, title, eff) in [
        (
            "effects-sn.png",
            "SN RATIO (DB) BY FACTOR LEVEL",
            &a.sn_effects,
        ),
        (
            "effects-mean.png",
            "MEAN RESPONSE BY FACTOR LEVEL",
            &a.mean_effects,
        ),
    ] {
        let img = effect_plot::render(title, &names, &eff.level_means, eff.grand_mean);
        let path = lab.dir.join(file);
        kakusan_core::png_meta::write_png(&path, &img)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let html = report::render(&report::ReportInput {
        experiment: e,
        oa: &lab.oa,
        array_name: lab.oa.kind.notation(),
        model: format!("{} ({})", lab.model.name(), lab.model.hash()),
        results,
        analysis: &a,
        confirmation: confirmation.as_ref(),
    });
    let report = lab.dir.join("report.html");
    kakusan_core::output::write_atomically(&report, html.as_bytes())
        .with_context(|| format!("writing {}", report.display()))?;
    println!("{}", report.display());
    Ok(())
}
