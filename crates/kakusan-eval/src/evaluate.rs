//! Using the classifier: [`Evaluator`] reads the attributes of finished pictures, and
//! [`accuracy`] / [`pair_accuracy`] measure how often it is right on procedural pictures of
//! a split (the held-out split: glyph × colour pairs training never showed).

use std::path::Path;

use candle_core::{DType, Device, D};
use candle_nn::VarBuilder;
use image::RgbImage;
use kakusan_data::{Colour, Dataset, Glyph, Position, Relation, Size, Split};

use crate::attribute::{Attribute, Labels};
use crate::classifier::{Classifier, ClassifierConfig, Logits};
use crate::error::{io_at, EvalError, Result};
use crate::task::parallel_map;
use crate::view::{labelled_views, object_views};

/// Pictures per forward pass.
const CHUNK: usize = 64;

/// What the classifier reads off one picture (or one object's view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub glyph: Glyph,
    pub colour: Colour,
    pub background: Colour,
    pub position: Position,
    pub size: Size,
    /// The softmax probability of each predicted class, in [`Attribute::ALL`] order.
    pub confidence: [f32; 5],
}

impl Prediction {
    /// The predicted class label of each head, in [`Attribute::ALL`] order.
    pub fn labels(&self) -> Labels {
        [
            self.glyph.index(),
            self.colour.index(),
            self.background.index(),
            self.position.index(),
            self.size.index(),
        ]
        .map(|i| i as u32)
    }

    fn from_labels(labels: Labels, confidence: [f32; 5]) -> Option<Self> {
        let [g, c, b, p, s] = labels.map(|l| l as usize);
        Some(Self {
            glyph: Glyph::from_index(g)?,
            colour: Colour::from_index(c)?,
            background: Colour::from_index(b)?,
            position: Position::from_index(p)?,
            size: Size::from_index(s)?,
            confidence,
        })
    }
}

/// The classifier's predictions for a batch of logits.
fn predictions(logits: &Logits) -> Result<Vec<Prediction>> {
    let mut per_head: Vec<(Vec<u32>, Vec<f32>)> = Vec::with_capacity(5);
    for attribute in Attribute::ALL {
        let l = logits.get(attribute).to_dtype(DType::F32)?;
        let probs = candle_nn::ops::softmax_last_dim(&l)?;
        let best = l.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let confidence = probs.max(D::Minus1)?.to_vec1::<f32>()?;
        per_head.push((best, confidence));
    }
    let batch = per_head[0].0.len();
    (0..batch)
        .map(|i| {
            let labels = [0, 1, 2, 3, 4].map(|h| per_head[h].0[i]);
            let confidence = [0, 1, 2, 3, 4].map(|h| per_head[h].1[i]);
            Prediction::from_labels(labels, confidence).ok_or_else(|| {
                EvalError::Config(format!(
                    "the classifier predicted a class out of range: {labels:?}"
                ))
            })
        })
        .collect()
}

/// Runs `model` over `images` (all `image_size`²) in chunks.
fn predict(model: &Classifier, images: &[RgbImage], device: &Device) -> Result<Vec<Prediction>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(CHUNK) {
        let x = kakusan_core::image_io::images_to_tensor(chunk)?.to_device(device)?;
        out.extend(predictions(&model.forward(&x)?)?);
    }
    Ok(out)
}

/// Per-attribute hit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    /// Correct predictions per head, in [`Attribute::ALL`] order.
    pub correct: [usize; 5],
    /// Views judged.
    pub total: usize,
}

impl Accuracy {
    /// The share of correct predictions of `attribute` (0 when nothing was judged).
    pub fn of(&self, attribute: Attribute) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.correct[attribute.index()] as f64 / self.total as f64
    }

    /// The lowest share over the heads.
    pub fn worst(&self) -> f64 {
        Attribute::ALL
            .iter()
            .map(|&a| self.of(a))
            .fold(1.0, f64::min)
    }

    fn add(&mut self, predicted: &Prediction, truth: &Labels) {
        for (hit, (p, t)) in self
            .correct
            .iter_mut()
            .zip(predicted.labels().iter().zip(truth))
        {
            *hit += usize::from(p == t);
        }
        self.total += 1;
    }
}

impl std::fmt::Display for Accuracy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Attribute::ALL
            .iter()
            .map(|&a| format!("{a} {:.2} %", 100.0 * self.of(a)))
            .collect();
        write!(f, "{} (of {})", parts.join(", "), self.total)
    }
}

/// The accuracy of `model` on `n` one-object pictures of `split` drawn from `seed`.
pub fn accuracy(model: &Classifier, split: Split, n: usize, seed: u64) -> Result<Accuracy> {
    measure(model, split, n, seed, 0.0, 0.0)
}

/// The accuracy of `model` on `n` one-object pictures of `split` whose object is a novel
/// glyph ([`Glyph::NOVEL`]: never in the base data, taught to the evaluator).
pub fn novel_glyph_accuracy(
    model: &Classifier,
    split: Split,
    n: usize,
    seed: u64,
) -> Result<Accuracy> {
    measure(model, split, n, seed, 0.0, 1.0)
}

/// The accuracy of `model` on both objects' views of `n` two-object pictures of `split`
/// (`2n` views; see [`crate::view`]).
pub fn pair_accuracy(model: &Classifier, split: Split, n: usize, seed: u64) -> Result<Accuracy> {
    measure(model, split, n, seed, 1.0, 0.0)
}

fn measure(
    model: &Classifier,
    split: Split,
    n: usize,
    seed: u64,
    pair_fraction: f32,
    novel_glyph_fraction: f32,
) -> Result<Accuracy> {
    let size = model.config().image_size as u32;
    let data = Dataset::new(seed, split, size)?
        .with_two_object_fraction(pair_fraction)?
        .with_novel_glyphs(novel_glyph_fraction)?;
    let device = Device::Cpu;
    let mut result = Accuracy::default();
    let mut start = 0;
    while start < n {
        let count = CHUNK.min(n - start);
        let views: Vec<(RgbImage, Labels)> =
            parallel_map(count, |k| labelled_views(&data.sample((start + k) as u64)))
                .into_iter()
                .flatten()
                .collect();
        let (images, labels): (Vec<RgbImage>, Vec<Labels>) = views.into_iter().unzip();
        for (p, t) in predict(model, &images, &device)?.iter().zip(&labels) {
            result.add(p, t);
        }
        start += count;
    }
    Ok(result)
}

/// A trained classifier ready to judge pictures.
pub struct Evaluator {
    model: Classifier,
    device: Device,
}

impl Evaluator {
    /// Wraps a classifier already built.
    pub fn new(model: Classifier) -> Self {
        Self {
            model,
            device: Device::Cpu,
        }
    }

    /// Loads an exported classifier folder: `config.json` and `model.safetensors` (f32 or
    /// f16; computed in f32 on the CPU).
    pub fn load(dir: &Path) -> Result<Self> {
        let bad = |reason: String| EvalError::Model {
            path: dir.to_path_buf(),
            reason,
        };
        let config_path = dir.join(crate::CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_at(&config_path))?;
        let config: ClassifierConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", crate::CONFIG_FILE)))?;
        let weights_path = dir.join(crate::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(io_at(&weights_path))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| bad(format!("{}: {e}", crate::WEIGHTS_FILE)))?;
        let model = Classifier::new(&config, vb)
            .map_err(|e| bad(format!("the weights do not fit config.json: {e}")))?;
        Ok(Self { model, device })
    }

    /// The network.
    pub fn classifier(&self) -> &Classifier {
        &self.model
    }

    /// The network, owned.
    pub fn into_classifier(self) -> Classifier {
        self.model
    }

    /// Reads one object per picture (the only or most prominent one). Pictures of another
    /// size than the classifier's are resized first (A1111's "Just resize").
    pub fn classify(&self, images: &[RgbImage]) -> Result<Vec<Prediction>> {
        predict(&self.model, &self.fitted(images), &self.device)
    }

    /// The class probabilities of every head for one object per picture (as
    /// [`Evaluator::classify`] reads it): `[picture][attribute index][class]`, each row
    /// summing to 1.
    pub fn probabilities(&self, images: &[RgbImage]) -> Result<Vec<Vec<Vec<f32>>>> {
        let fitted = self.fitted(images);
        let mut out = Vec::with_capacity(images.len());
        for chunk in fitted.chunks(CHUNK) {
            let x = kakusan_core::image_io::images_to_tensor(chunk)?.to_device(&self.device)?;
            let logits = self.model.forward(&x)?;
            let mut heads = Vec::with_capacity(Attribute::ALL.len());
            for attribute in Attribute::ALL {
                let l = logits.get(attribute).to_dtype(DType::F32)?;
                heads.push(candle_nn::ops::softmax_last_dim(&l)?.to_vec2::<f32>()?);
            }
            for i in 0..chunk.len() {
                out.push(heads.iter().map(|h| h[i].clone()).collect());
            }
        }
        Ok(out)
    }

    /// The pictures at the classifier's size.
    fn fitted(&self, images: &[RgbImage]) -> Vec<RgbImage> {
        let side = self.model.config().image_size as u32;
        images
            .iter()
            .map(|img| {
                if img.dimensions() == (side, side) {
                    img.clone()
                } else {
                    kakusan_core::image_io::resize_just(img, side, side)
                }
            })
            .collect()
    }

    /// Reads both objects of two-object pictures whose objects should stand in
    /// `relations[i]`: the first (left / upper) object, then the second (see
    /// [`crate::view`]).
    pub fn classify_pairs(
        &self,
        images: &[RgbImage],
        relations: &[Relation],
    ) -> Result<Vec<[Prediction; 2]>> {
        if images.len() != relations.len() {
            return Err(EvalError::LengthMismatch {
                what: "classify_pairs",
                left: images.len(),
                right: relations.len(),
            });
        }
        let views: Vec<RgbImage> = self
            .fitted(images)
            .iter()
            .zip(relations)
            .flat_map(|(img, &relation)| object_views(img, relation))
            .collect();
        let predictions = predict(&self.model, &views, &self.device)?;
        Ok(predictions.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
    }

    /// The device the classifier runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
