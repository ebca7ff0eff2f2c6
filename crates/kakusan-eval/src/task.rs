//! Training the classifier: a [`TrainTask`] whose loss is the cross-entropy of every head,
//! summed, on a batch of procedural pictures of [`Split::Train`] drawn from the step alone.
//!
//! Sample `step · batch + k` of the data set gives batch element `k`. A one-object sample is
//! used whole; a two-object sample (a share `pair_fraction` of them) gives the masked view
//! of one of its objects (the first for even indices, the second for odd; see
//! [`crate::view`]), so the heads also learn the pair-scale objects of two-object prompts.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;
use kakusan_data::{Dataset, Split, SplitMix64};
use kakusan_models::vae::AutoencoderKL;
use kakusan_train::{NamedVars, TrainTask};
use serde::{Deserialize, Serialize};

use crate::attribute::{Attribute, Labels};
use crate::classifier::{Classifier, ClassifierConfig, Logits};
use crate::error::Result;
use crate::view::labelled_views;

/// Mixed into a sample's index to choose the reconstructed pictures (independent of the
/// data's own use of the index).
const RECONSTRUCTION_SALT: u64 = 0x5eed_7ec0_0000_0001;

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
    /// A VAE folder (`kakusan train vae` export or a diffusers `vae/`; relative paths from
    /// the config file's folder) through which a share `reconstructed_fraction` of the
    /// pictures pass (encode, the posterior's mode, decode) before they are read: the
    /// softened strokes and bled colours of every generated picture, which a classifier
    /// trained on crisp renders alone misreads (legible digits read wrong).
    pub reconstruct_with: Option<PathBuf>,
    /// Share of pictures passed through `reconstruct_with` (chosen by sample index).
    pub reconstructed_fraction: f32,
}

impl Default for ClassifierTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            data_seed: 11,
            pair_fraction: 0.2,
            novel_glyph_fraction: 0.0,
            reconstruct_with: None,
            reconstructed_fraction: 0.0,
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
    /// The VAE of `config.reconstruct_with`, loaded.
    vae: Option<AutoencoderKL>,
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
        if !(0.0..=1.0).contains(&config.reconstructed_fraction) {
            return Err(crate::EvalError::Config(format!(
                "reconstructed_fraction {} is not between 0 and 1",
                config.reconstructed_fraction
            )));
        }
        let vae = match &config.reconstruct_with {
            Some(dir) => Some(kakusan_train::export::load_vae(dir, device)?),
            None => None,
        };
        let varmap = VarMap::new();
        // Fresh weights from the data seed (`kakusan_train::seeded_init`): reproducible runs.
        let vb = kakusan_train::seeded_init::seeded_var_builder(&varmap, config.data_seed, device);
        let model = Classifier::new(model_config, vb)?;
        let vars = NamedVars::from_varmap(&varmap);
        Ok(Self {
            model,
            varmap,
            vars,
            config,
            data,
            device: device.clone(),
            vae,
        })
    }

    /// Whether sample `index` passes through the VAE (a fixed share of indices).
    fn reconstructed(&self, index: u64) -> bool {
        self.vae.is_some()
            && SplitMix64::new(index ^ RECONSTRUCTION_SALT)
                .chance(self.config.reconstructed_fraction)
    }

    /// The pictures and labels of step `step`.
    pub fn batch(&self, step: u64) -> Result<Vec<(RgbImage, Labels)>> {
        let first = step.wrapping_mul(self.config.batch_size as u64);
        let index = |k: usize| first.wrapping_add(k as u64);
        let mut samples = parallel_map(self.config.batch_size, |k| self.data.sample(index(k)));
        if let Some(vae) = &self.vae {
            let chosen: Vec<usize> = (0..samples.len())
                .filter(|&k| self.reconstructed(index(k)))
                .collect();
            if !chosen.is_empty() {
                let images: Vec<RgbImage> =
                    chosen.iter().map(|&k| samples[k].image.clone()).collect();
                let x =
                    kakusan_core::image_io::images_to_tensor(&images)?.to_device(&self.device)?;
                let vae_err = |e: kakusan_models::vae::VaeError| {
                    crate::EvalError::Config(format!("reconstructing with the VAE: {e}"))
                };
                let z = vae.encode(&x).map_err(vae_err)?.mode().clone();
                let y = vae.decode(&z).map_err(vae_err)?;
                let decoded = kakusan_core::image_io::tensor_to_images(&y)?;
                for (k, image) in chosen.into_iter().zip(decoded) {
                    samples[k].image = image;
                }
            }
        }
        Ok(samples
            .iter()
            .enumerate()
            .map(|(k, sample)| {
                let mut views = labelled_views(sample);
                let pick = (index(k) % 2) as usize % views.len().max(1);
                views.swap_remove(pick)
            })
            .collect())
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
        self.batch(step)
            .and_then(|b| self.loss_of(&b))
            .map_err(|e| match e {
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
    use candle_core::DType;
    use candle_nn::VarBuilder;
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
        let (a, b) = (task.batch(3).unwrap(), task.batch(3).unwrap());
        assert_eq!(a.len(), 4);
        assert!(a.iter().zip(&b).all(|(x, y)| x == y));
        assert!(task.batch(4).unwrap().iter().zip(&a).any(|(x, y)| x != y));
    }

    /// A share of the pictures passes through the VAE: those change (softened), the rest
    /// and every label stay as without it; a share outside [0, 1] is refused.
    #[test]
    fn reconstructed_pictures_are_the_chosen_share() {
        // A random tiny VAE folder, as `kakusan train vae` exports one.
        let tmp = tempfile::tempdir().unwrap();
        let vae = tmp.path().join("vae");
        let json = serde_json::json!({
            "block_out_channels": [8, 16],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "norm_num_groups": 4
        });
        let config: kakusan_models::vae::VaeConfig = serde_json::from_value(json.clone()).unwrap();
        let map = VarMap::new();
        AutoencoderKL::new(
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
            &config,
        )
        .unwrap();
        let weights: std::collections::HashMap<String, Tensor> = map
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        kakusan_train::export::write_component(
            &vae,
            &json,
            &weights,
            kakusan_train::export::WEIGHTS_FILE,
        )
        .unwrap();
        let plain = ClassifierTaskConfig {
            batch_size: 16,
            ..ClassifierTaskConfig::default()
        };
        let with_vae = ClassifierTaskConfig {
            reconstruct_with: Some(vae),
            reconstructed_fraction: 0.5,
            ..plain.clone()
        };
        let a = ClassifierTask::new(&tiny(), plain, &Device::Cpu)
            .unwrap()
            .batch(2)
            .unwrap();
        let task = ClassifierTask::new(&tiny(), with_vae.clone(), &Device::Cpu).unwrap();
        let b = task.batch(2).unwrap();
        let mut changed = 0;
        for (k, ((pa, la), (pb, lb))) in a.iter().zip(&b).enumerate() {
            assert_eq!(la, lb);
            let expected = task.reconstructed(32 + k as u64);
            assert_eq!(pa != pb, expected, "picture {k}");
            changed += usize::from(expected);
        }
        assert!((3..=13).contains(&changed), "{changed} of 16 reconstructed");
        let bad = ClassifierTaskConfig {
            reconstructed_fraction: 1.5,
            ..with_vae
        };
        assert!(ClassifierTask::new(&tiny(), bad, &Device::Cpu).is_err());
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
        let probe: Vec<_> = (0..4).flat_map(|s| task.batch(s).unwrap()).collect();
        let before: f32 = task.loss_of(&probe).unwrap().to_scalar().unwrap();
        let trainer_config = TrainerConfig {
            total_steps: 40,
            peak_lr: 3e-3,
            min_lr: 3e-3,
            warmup_steps: 0,
            adamw: AdamWConfig::default(),
            ema_decay: 0.9,
            grad_clip: 1.0,
            lr_scales: Default::default(),
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
