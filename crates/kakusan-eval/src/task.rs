//! Training the classifier: a [`TrainTask`] whose loss is the cross-entropy of every head,
//! summed, on a batch of procedural pictures of [`Split::Train`] drawn from the step alone.
//!
//! Sample `step · batch + k` of the data set gives batch element `k`. A one-object sample is
//! used whole; a two-object sample (a share `pair_fraction` of them) gives the masked view
//! of one of its objects (the first for even indices, the second for odd; see
//! [`crate::view`]), so the heads also learn the pair-scale objects of two-object prompts.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use kakusan_data::{Dataset, Split};
use kakusan_train::{NamedVars, TrainTask};
use serde::{Deserialize, Serialize};

use crate::attribute::{Attribute, Labels};
use crate::classifier::{Classifier, ClassifierConfig, Logits};
use crate::error::Result;
use crate::view::labelled_views;

/// Settings of the classifier's objective and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierTaskConfig {
    /// Pictures per step.
    pub batch_size: usize,
    /// The seed of the training data.
    pub data_seed: u64,
    /// Share of two-object samples (each gives one masked half-view).
    pub pair_fraction: f32,
    /// Share of objects drawn as a novel glyph ([`kakusan_data::Glyph::NOVEL`]), so the
    /// evaluator can judge what a fine-tuned model learned.
    pub novel_glyph_fraction: f32,
}

impl Default for ClassifierTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            data_seed: 11,
            pair_fraction: 0.2,
            novel_glyph_fraction: 0.0,
        }
    }
}

/// The classifier being trained, with its data.
pub struct ClassifierTask {
    /// The network (its variables live in `varmap`).
    pub model: Classifier,
    /// The variables, for export.
    pub varmap: VarMap,
    vars: NamedVars,
    config: ClassifierTaskConfig,
    data: Dataset,
    device: Device,
}

impl ClassifierTask {
    /// A freshly initialised classifier of `model_config` (PyTorch's default initialisation).
    pub fn new(
        model_config: &ClassifierConfig,
        config: ClassifierTaskConfig,
        device: &Device,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(crate::EvalError::Config(
                "batch_size must be at least 1".into(),
            ));
        }
        let data = Dataset::new(
            config.data_seed,
            Split::Train,
            model_config.image_size as u32,
        )?
        .with_two_object_fraction(config.pair_fraction)?
        .with_novel_glyphs(config.novel_glyph_fraction)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Classifier::new(model_config, vb)?;
        let vars = NamedVars::from_varmap(&varmap);
        Ok(Self {
            model,
            varmap,
            vars,
            config,
            data,
            device: device.clone(),
        })
    }

    /// The pictures and labels of step `step`.
    pub fn batch(&self, step: u64) -> Vec<(RgbImage, Labels)> {
        let first = step.wrapping_mul(self.config.batch_size as u64);
        parallel_map(self.config.batch_size, |k| {
            let index = first.wrapping_add(k as u64);
            let mut views = labelled_views(&self.data.sample(index));
            let pick = (index % 2) as usize % views.len().max(1);
            views.swap_remove(pick)
        })
    }

    /// The summed cross-entropy of `pictures` against `labels`.
    pub fn loss_of(&self, batch: &[(RgbImage, Labels)]) -> Result<Tensor> {
        let (images, labels): (Vec<RgbImage>, Vec<Labels>) = batch.iter().cloned().unzip();
        let x = kakusan_core::image_io::images_to_tensor(&images)?.to_device(&self.device)?;
        let logits = self.model.forward(&x)?;
        cross_entropy(&logits, &labels, &self.device)
    }
}

/// Cross-entropy of each head (mean over the batch), summed over the heads.
pub fn cross_entropy(logits: &Logits, labels: &[Labels], device: &Device) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for attribute in Attribute::ALL {
        let targets: Vec<u32> = labels.iter().map(|l| l[attribute.index()]).collect();
        let targets = Tensor::new(targets.as_slice(), device)?;
        let loss = candle_nn::loss::cross_entropy(logits.get(attribute), &targets)?;
        total = Some(match total {
            Some(t) => (t + loss)?,
            None => loss,
        });
    }
    total.ok_or_else(|| crate::EvalError::Config("no heads".into()))
}

impl TrainTask for ClassifierTask {
    fn vars(&self) -> &NamedVars {
        &self.vars
    }

    fn loss(&mut self, step: u64) -> kakusan_train::Result<candle_core::Tensor> {
        let batch = self.batch(step);
        self.loss_of(&batch).map_err(|e| match e {
            crate::EvalError::Tensor(t) => kakusan_train::TrainError::Tensor(t),
            crate::EvalError::Train(t) => t,
            other => kakusan_train::TrainError::Config(other.to_string()),
        })
    }
}

/// `f(0), …, f(n - 1)` computed on the available cores, in order.
pub(crate) fn parallel_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n.max(1));
    let per = n.div_ceil(threads).max(1);
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let f = &f;
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in out.chunks_mut(per).enumerate() {
            scope.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(f(chunk_index * per + k));
                }
            });
        }
    });
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kakusan_train::{AdamWConfig, Trainer, TrainerConfig};

    fn tiny() -> ClassifierConfig {
        ClassifierConfig {
            image_size: 32,
            channels: vec![8, 8, 16],
            convs_per_stage: 0,
            norm_groups: 4,
            hidden: 16,
        }
    }

    #[test]
    fn batches_depend_only_on_the_step() {
        let config = ClassifierTaskConfig {
            batch_size: 4,
            ..ClassifierTaskConfig::default()
        };
        let task = ClassifierTask::new(&tiny(), config, &Device::Cpu).unwrap();
        let (a, b) = (task.batch(3), task.batch(3));
        assert_eq!(a.len(), 4);
        assert!(a.iter().zip(&b).all(|(x, y)| x == y));
        assert!(task.batch(4).iter().zip(&a).any(|(x, y)| x != y));
    }

    #[test]
    fn a_short_run_lowers_the_loss() {
        let config = ClassifierTaskConfig {
            batch_size: 8,
            pair_fraction: 0.0,
            ..ClassifierTaskConfig::default()
        };
        let mut task = ClassifierTask::new(&tiny(), config, &Device::Cpu).unwrap();
        // A fixed batch, seen before and after training on its own steps (fitting them).
        let probe: Vec<_> = (0..4).flat_map(|s| task.batch(s)).collect();
        let before: f32 = task.loss_of(&probe).unwrap().to_scalar().unwrap();
        let trainer_config = TrainerConfig {
            total_steps: 40,
            peak_lr: 3e-3,
            min_lr: 3e-3,
            warmup_steps: 0,
            adamw: AdamWConfig::default(),
            ema_decay: 0.9,
            grad_clip: 1.0,
            checkpoint_every: 1000,
            keep_checkpoints: 1,
            log_every: 10,
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut trainer = Trainer::new(
            task.vars().clone(),
            trainer_config,
            tmp.path(),
            false,
            serde_json::Value::Null,
            &Device::Cpu,
        )
        .unwrap();
        // Steps 0..4 repeat ten times: the task's batches are the probe's.
        struct Cycle<'a>(&'a mut ClassifierTask);
        impl TrainTask for Cycle<'_> {
            fn vars(&self) -> &NamedVars {
                self.0.vars()
            }
            fn loss(&mut self, step: u64) -> kakusan_train::Result<Tensor> {
                self.0.loss(step % 4)
            }
        }
        trainer
            .run(&mut Cycle(&mut task), None, &mut |_| {})
            .unwrap();
        let after: f32 = task.loss_of(&probe).unwrap().to_scalar().unwrap();
        // At the start each head guesses near-uniformly: Σ ln(classes) ≈ 8.9 nats. Forty
        // steps on 32 pictures must at least halve it; an untrained or broken backward
        // pass leaves it where it was.
        assert!(before > 6.0, "before {before}");
        assert!(after < 0.5 * before, "before {before}, after {after}");
    }
}
