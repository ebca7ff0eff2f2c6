//! The training loop shared by every task: learning-rate schedule, backward pass, gradient
//! clipping, AdamW, EMA, the loss log and plot, and checkpoints every few steps.
//!
//! A task draws its batch and noise from the step number alone, so a run resumed from the
//! checkpoint of step `s` computes exactly the steps an uninterrupted run would have.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adamw::{AdamW, AdamWConfig};
use crate::checkpoint::{CheckpointDir, CheckpointMeta};
use crate::ema::Ema;
use crate::error::{Result, TrainError};
use crate::grad_clip::clip_grad_norm;
use crate::loss_log::{LossLog, LossRow};
use crate::lr_schedule::LrSchedule;
use crate::named_vars::NamedVars;

/// What is being trained.
pub trait TrainTask {
    /// The trainable variables (the same set every call).
    fn vars(&self) -> &NamedVars;
    /// The loss of step `step` (0-based); the batch must depend only on `step`.
    fn loss(&mut self, step: u64) -> Result<Tensor>;
}

/// Optimisation settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainerConfig {
    pub total_steps: u64,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    pub ema_decay: f64,
    /// Largest global gradient norm (0 = no clipping).
    pub grad_clip: f64,
    /// Learning-rate multipliers by variable-name prefix (e.g. `"text_encoder." = 0.3`):
    /// see [`AdamW::with_lr_scales`]. Empty: one rate for all.
    pub lr_scales: std::collections::BTreeMap<String, f64>,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub log_every: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            total_steps: 1000,
            peak_lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 100,
            adamw: AdamWConfig::default(),
            ema_decay: 0.999,
            grad_clip: 1.0,
            lr_scales: Default::default(),
            checkpoint_every: 250,
            keep_checkpoints: 2,
            log_every: 10,
        }
    }
}

impl TrainerConfig {
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak_lr: self.peak_lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.total_steps,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.total_steps == 0 {
            return bad("total_steps must be at least 1");
        }
        if !(self.peak_lr > 0.0 && self.peak_lr.is_finite()) || self.min_lr < 0.0 {
            return bad("peak_lr must be positive and min_lr non-negative");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema_decay must lie in [0, 1)");
        }
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return bad("checkpoint_every and log_every must be at least 1");
        }
        Ok(())
    }
}

/// What the loop reports after each step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub step: u64,
    pub total: u64,
    pub loss: f64,
    pub lr: f64,
}

/// A training run in `out_dir`.
pub struct Trainer {
    config: TrainerConfig,
    out_dir: PathBuf,
    vars: NamedVars,
    optimizer: AdamW,
    ema: Ema,
    checkpoints: CheckpointDir,
    log: LossLog,
    step: u64,
    extra: serde_json::Value,
}

impl Trainer {
    /// Sets up a run over `vars`. With `resume`, restores the newest checkpoint in
    /// `out_dir` (weights, EMA, optimiser, step); without, refuses to overwrite one.
    pub fn new(
        vars: NamedVars,
        config: TrainerConfig,
        out_dir: &Path,
        resume: bool,
        extra: serde_json::Value,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(out_dir).map_err(crate::error::io_at(out_dir))?;
        let checkpoints = CheckpointDir::new(out_dir, config.keep_checkpoints);
        let mut optimizer =
            AdamW::new(vars.clone(), config.adamw)?.with_lr_scales(&config.lr_scales)?;
        let mut ema = Ema::new(&vars, config.ema_decay)?;
        let mut step = 0;
        match (resume, checkpoints.load_latest(device)?) {
            (true, Some(ck)) => {
                for (name, var) in vars.iter() {
                    let t = ck.weights.get(name).ok_or_else(|| TrainError::Checkpoint {
                        path: checkpoints.path().to_path_buf(),
                        reason: format!("it has no weight {name}; it belongs to another model"),
                    })?;
                    if t.dims() != var.dims() {
                        return Err(TrainError::Checkpoint {
                            path: checkpoints.path().to_path_buf(),
                            reason: format!(
                                "{name} has shape {:?} there but {:?} in the model",
                                t.dims(),
                                var.dims()
                            ),
                        });
                    }
                    var.set(&t.to_dtype(var.dtype())?)?;
                }
                optimizer.load_state(&ck.optimizer, ck.meta.step)?;
                ema.load(&ck.ema, ck.meta.ema_updates)?;
                step = ck.meta.step;
                tracing::info!("resumed from step {step}");
            }
            (true, None) => tracing::info!("no checkpoint in {}: starting", out_dir.display()),
            (false, Some(ck)) => {
                return Err(TrainError::Config(format!(
                    "{} already holds a run at step {}; pass --resume to continue it or choose another --out",
                    out_dir.display(),
                    ck.meta.step
                )))
            }
            (false, None) => {}
        }
        let log = LossLog::open(&out_dir.join("loss.csv"), step)?;
        Ok(Self {
            config,
            out_dir: out_dir.to_path_buf(),
            vars,
            optimizer,
            ema,
            checkpoints,
            log,
            step,
            extra,
        })
    }

    /// Completed steps.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The averaged weights (what is exported).
    pub fn ema_weights(&self) -> &std::collections::HashMap<String, Tensor> {
        self.ema.weights()
    }

    /// Trains up to `config.total_steps` (or `stop_after` more steps, if given), saving a
    /// checkpoint every `checkpoint_every` steps and at the end.
    pub fn run(
        &mut self,
        task: &mut dyn TrainTask,
        stop_after: Option<u64>,
        progress: &mut dyn FnMut(&StepReport),
    ) -> Result<()> {
        let schedule = self.config.schedule();
        let end = match stop_after {
            Some(n) => (self.step + n).min(self.config.total_steps),
            None => self.config.total_steps,
        };
        let started = Instant::now();
        let base_seconds = crate::loss_log::LossLog::read(self.log.path())?
            .last()
            .map(|r| r.seconds)
            .unwrap_or(0.0);
        let (mut sum, mut count, mut norm_sum) = (0f64, 0u64, 0f64);
        while self.step < end {
            let step = self.step;
            let lr = schedule.at(step);
            let loss = task.loss(step)?;
            let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    step,
                    loss: value as f32,
                });
            }
            let mut grads = loss.backward()?;
            let norm = clip_grad_norm(&self.vars, &mut grads, self.config.grad_clip)?;
            self.optimizer.step(&grads, lr)?;
            self.ema.update(&self.vars)?;
            self.step += 1;
            sum += value;
            norm_sum += norm;
            count += 1;
            progress(&StepReport {
                step: self.step,
                total: self.config.total_steps,
                loss: value,
                lr,
            });
            if self.step.is_multiple_of(self.config.log_every) || self.step == end {
                self.log.append(&LossRow {
                    step: self.step,
                    loss: sum / count as f64,
                    lr,
                    grad_norm: norm_sum / count as f64,
                    seconds: base_seconds + started.elapsed().as_secs_f64(),
                })?;
                (sum, count, norm_sum) = (0.0, 0, 0.0);
            }
            if self.step.is_multiple_of(self.config.checkpoint_every) || self.step == end {
                self.save_checkpoint()?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint of the current state and refreshes the loss plot.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let meta = CheckpointMeta {
            step: self.step,
            ema_updates: self.ema.updates(),
            extra: self.extra.clone(),
        };
        let dir = self.checkpoints.save(
            &meta,
            &self.vars.snapshot(),
            self.ema.weights(),
            &self.optimizer.state(),
        )?;
        let rows = LossLog::read(self.log.path())?;
        crate::loss_plot::write(&rows, &self.out_dir.join("loss.png"))?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::{Init, VarBuilder, VarMap};

    /// Fits y = 3x - 1 with a deterministic batch per step.
    struct LineFit {
        vars: NamedVars,
        w: Tensor,
        b: Tensor,
    }

    impl LineFit {
        fn new() -> Self {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let w = vb.get_with_hints(1, "w", Init::Const(0.0)).unwrap();
            let b = vb.get_with_hints(1, "b", Init::Const(0.0)).unwrap();
            Self {
                vars: NamedVars::from_varmap(&map),
                w,
                b,
            }
        }
    }

    impl TrainTask for LineFit {
        fn vars(&self) -> &NamedVars {
            &self.vars
        }
        fn loss(&mut self, step: u64) -> Result<Tensor> {
            let xs: Vec<f32> = (0..8)
                .map(|i| ((step * 8 + i) % 13) as f32 / 13.0)
                .collect();
            let x = Tensor::new(xs.as_slice(), &Device::Cpu)?;
            let y = ((&x * 3.0)? - 1.0)?;
            let pred = x.broadcast_mul(&self.w)?.broadcast_add(&self.b)?;
            Ok((pred - y)?.sqr()?.mean_all()?)
        }
    }

    fn config(total: u64) -> TrainerConfig {
        TrainerConfig {
            total_steps: total,
            peak_lr: 0.1,
            min_lr: 0.001,
            warmup_steps: 5,
            adamw: AdamWConfig {
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            ema_decay: 0.9,
            grad_clip: 10.0,
            lr_scales: Default::default(),
            checkpoint_every: 7,
            keep_checkpoints: 2,
            log_every: 5,
        }
    }

    fn start(task: &LineFit, total: u64, dir: &std::path::Path, resume: bool) -> Result<Trainer> {
        Trainer::new(
            task.vars.clone(),
            config(total),
            dir,
            resume,
            serde_json::Value::Null,
            &Device::Cpu,
        )
    }

    fn values(task: &LineFit) -> (f32, f32) {
        let w: Vec<f32> = task.w.to_vec1().unwrap();
        let b: Vec<f32> = task.b.to_vec1().unwrap();
        (w[0], b[0])
    }

    #[test]
    fn learns_and_a_killed_run_resumes_to_the_same_weights() {
        let tmp = tempfile::tempdir().unwrap();
        let mut straight = LineFit::new();
        let mut t = start(&straight, 300, &tmp.path().join("a"), false).unwrap();
        t.run(&mut straight, None, &mut |_| {}).unwrap();
        let (w, b) = values(&straight);
        assert!(
            (w - 3.0).abs() < 0.1 && (b + 1.0).abs() < 0.1,
            "w {w} b {b}"
        );

        // The same run "killed" after 17 steps (last checkpoint at 14), then resumed.
        let dir = tmp.path().join("b");
        let mut first = LineFit::new();
        let mut t = start(&first, 300, &dir, false).unwrap();
        t.run(&mut first, Some(17), &mut |_| {}).unwrap();
        // stop_after saves at the end too; remove that checkpoint to simulate a kill at 17.
        std::fs::remove_dir_all(dir.join("checkpoints/step-00000017")).unwrap();
        let latest = serde_json::json!({"step": 14, "folder": "step-00000014"});
        std::fs::write(dir.join("checkpoints/latest.json"), latest.to_string()).unwrap();
        let mut second = LineFit::new();
        let mut t = start(&second, 300, &dir, true).unwrap();
        assert_eq!(t.step(), 14);
        t.run(&mut second, None, &mut |_| {}).unwrap();
        assert_eq!(values(&second), values(&straight));
        let rows = LossLog::read(&dir.join("loss.csv")).unwrap();
        let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
        assert_eq!(steps, (1..=60).map(|i| i * 5).collect::<Vec<u64>>());
        assert!(dir.join("loss.png").is_file());
    }

    #[test]
    fn refuses_to_overwrite_a_run_without_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let mut task = LineFit::new();
        let mut t = start(&task, 3, tmp.path(), false).unwrap();
        t.run(&mut task, None, &mut |_| {}).unwrap();
        let err = start(&task, 3, tmp.path(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--resume"), "{err}");
    }
}
