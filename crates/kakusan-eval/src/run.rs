//! `kakusan train classifier`: the TOML run config, the training run, and the export of the
//! averaged (EMA) weights as a classifier folder (`config.json` + `model.safetensors`).
//!
//! ```toml
//! [model]          # ClassifierConfig
//! channels = [16, 32, 64, 96]
//! [task]           # ClassifierTaskConfig
//! batch_size = 64
//! [trainer]        # kakusan_train::TrainerConfig
//! total_steps = 3000
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use kakusan_train::{StepReport, TrainTask, Trainer, TrainerConfig};
use serde::{Deserialize, Serialize};

use crate::classifier::ClassifierConfig;
use crate::error::{io_at, EvalError, Result};
use crate::task::{ClassifierTask, ClassifierTaskConfig};

/// The folder under the run's output where the trained classifier is exported.
pub const EXPORT_DIR: &str = "model";

/// `kakusan train classifier` settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierRunConfig {
    pub model: ClassifierConfig,
    pub task: ClassifierTaskConfig,
    pub trainer: TrainerConfig,
}

impl ClassifierRunConfig {
    /// Reads and checks a run config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_at(path))?;
        let mut config: Self = toml::from_str(&text)
            .map_err(|e| EvalError::Config(format!("{}: {}", path.display(), e.message())))?;
        if let (Some(vae), Some(folder)) = (&config.task.reconstruct_with, path.parent()) {
            config.task.reconstruct_with = Some(folder.join(vae));
        }
        config.model.validate()?;
        config.trainer.validate()?;
        Ok(config)
    }
}

/// Where a training run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierRun {
    /// Steps completed.
    pub step: u64,
    /// Steps the config asks for.
    pub total_steps: u64,
    /// The exported classifier (`OUT/model`), loadable by [`crate::Evaluator::load`].
    pub model_dir: PathBuf,
}

/// Trains (or, with `resume`, continues) the classifier of `config_toml` in `out`, for at
/// most `steps` more steps when given, then exports its EMA weights to `out/model`.
/// `init`: a classifier folder to start from instead of a fresh initialisation (ignored when
/// `resume` finds a checkpoint); its heads may have fewer classes than this model's (a
/// glyph added since it was trained): the new classes start fresh.
pub fn train_classifier(
    config_toml: &Path,
    out: &Path,
    resume: bool,
    steps: Option<u64>,
    init: Option<&Path>,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<ClassifierRun> {
    let config = ClassifierRunConfig::load(config_toml)?;
    let device = Device::Cpu;
    let mut task = ClassifierTask::new(&config.model, config.task.clone(), &device)?;
    tracing::info!("classifier: {} parameters", task.vars().parameter_count());
    if let Some(init) = init {
        let file = init.join(crate::WEIGHTS_FILE);
        let weights =
            candle_core::safetensors::load(&file, &device).map_err(|e| EvalError::Model {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        let grown =
            kakusan_train::init::load_initial_weights_with_new_classes(task.vars(), &weights)?;
        if !grown.is_empty() {
            tracing::info!("new classes in {}", grown.join(", "));
        }
    }
    let extra = serde_json::to_value(&config).map_err(|e| EvalError::Config(e.to_string()))?;
    let mut trainer = Trainer::new(
        task.vars().clone(),
        config.trainer.clone(),
        out,
        resume,
        extra,
        &device,
    )?;
    trainer.run(&mut task, steps, progress)?;
    let model_dir = out.join(EXPORT_DIR);
    export(&model_dir, &config.model, trainer.ema_weights())?;
    Ok(ClassifierRun {
        step: trainer.step(),
        total_steps: config.trainer.total_steps,
        model_dir,
    })
}

/// Writes a classifier folder: `config.json` and `model.safetensors` (the tensors as given).
pub fn export(
    dir: &Path,
    config: &ClassifierConfig,
    weights: &HashMap<String, Tensor>,
) -> Result<()> {
    let json = serde_json::to_value(config).map_err(|e| EvalError::Config(e.to_string()))?;
    kakusan_train::export::write_component(dir, &json, weights, crate::WEIGHTS_FILE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_parses() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../training/kakusan-mini/classifier.toml");
        let config = ClassifierRunConfig::load(&path).unwrap();
        assert_eq!(config.model, ClassifierConfig::default());
        assert_eq!(config.task.pair_fraction, 0.2);
    }

    #[test]
    fn a_tiny_run_exports_a_folder_the_evaluator_loads_and_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let toml = tmp.path().join("c.toml");
        std::fs::write(
            &toml,
            "[model]\nimage_size = 32\nchannels = [8, 16]\nconvs_per_stage = 0\nnorm_groups = 4\nhidden = 8\n\
             [task]\nbatch_size = 2\n\
             [trainer]\ntotal_steps = 4\nwarmup_steps = 1\ncheckpoint_every = 2\n",
        )
        .unwrap();
        let out = tmp.path().join("run");
        let mut seen = 0;
        let run = train_classifier(&toml, &out, false, Some(2), None, &mut |_| seen += 1).unwrap();
        assert_eq!((run.step, seen), (2, 2));
        let run = train_classifier(&toml, &out, true, None, None, &mut |_| {}).unwrap();
        assert_eq!(run.step, 4);
        let evaluator = crate::Evaluator::load(&run.model_dir).unwrap();
        assert_eq!(evaluator.classifier().config().image_size, 32);
        // The exported weights are the EMA weights, bit for bit.
        let saved =
            candle_core::safetensors::load(run.model_dir.join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let ck = kakusan_train::CheckpointDir::new(&out, 2)
            .load_latest(&Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(saved.len(), ck.ema.len());
        for (name, t) in &saved {
            let e = &ck.ema[name];
            let d: f32 = (t - e)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert_eq!(d, 0.0, "{name}");
        }
        // Resuming without --resume is refused.
        assert!(train_classifier(&toml, &out, false, None, None, &mut |_| {}).is_err());
    }
}
