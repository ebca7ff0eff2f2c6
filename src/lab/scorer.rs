//! The response of one lab picture: what the experiment's `[response]` measures, read by the
//! evaluator (kakusan-mini's attribute classifier).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;
use kakusan_eval::{Attribute, Evaluator};
use kakusan_lab::experiment::{Measure, Response};
use kakusan_lab::UnitSpace;

use super::argmax;

/// Turns a picture into the experiment's response value.
pub struct Scorer {
    evaluator: Evaluator,
    measure: Measure,
    /// (head, class label) the prompt asks for (adherence and probability).
    targets: Vec<(Attribute, usize)>,
    /// The unit space of the T-method measures.
    unit_space: Option<UnitSpace>,
}

impl Scorer {
    /// `base` is the folder relative `unit_space` paths start from (the experiment file's).
    pub fn new(response: &Response, evaluator: Evaluator, base: &Path) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        for (name, class) in &response.target {
            let attribute = Attribute::from_name(name)
                .with_context(|| format!("unknown target attribute {name:?}"))?;
            let label = attribute.class_index(class).with_context(|| {
                format!(
                    "target {name} = {class:?} is not a class the evaluator knows; {name} is one of: {}",
                    attribute.class_names().join(", ")
                )
            })?;
            targets.push((attribute, label));
        }
        let unit_space = match (&response.unit_space, response.measure) {
            (Some(folder), Measure::TDistance | Measure::TBeta | Measure::TNoise) => {
                let folder = base.join(folder);
                Some(build_unit_space(&evaluator, &folder)?)
            }
            _ => None,
        };
        Ok(Self {
            evaluator,
            measure: response.measure,
            targets,
            unit_space,
        })
    }

    /// The response of `image`.
    pub fn score(&self, image: &RgbImage) -> anyhow::Result<f64> {
        let probs = self
            .evaluator
            .probabilities(std::slice::from_ref(image))?
            .remove(0);
        let n = self.targets.len().max(1) as f64;
        Ok(match self.measure {
            Measure::Adherence => {
                let hits = self
                    .targets
                    .iter()
                    .filter(|(a, label)| argmax(&probs[a.index()]) == *label)
                    .count();
                hits as f64 / n
            }
            Measure::Probability => {
                let sum: f64 = self
                    .targets
                    .iter()
                    .map(|(a, label)| f64::from(probs[a.index()][*label]))
                    .sum();
                // Never exactly 0, so larger-the-better stays defined.
                (sum / n).max(1e-6)
            }
            Measure::TDistance | Measure::TBeta | Measure::TNoise => {
                let space = self
                    .unit_space
                    .as_ref()
                    .context("the T-method measures need a unit space")?;
                let x = features(&probs);
                match self.measure {
                    Measure::TDistance => space.d2(&x)?.sqrt(),
                    Measure::TBeta => space.score(&x)?.beta,
                    _ => space.score(&x)?.noise,
                }
            }
        })
    }
}

/// The evaluator's class probabilities of every head, one after the other: the T-method's
/// features of a picture.
pub fn features(probs: &[Vec<f32>]) -> Vec<f64> {
    probs
        .iter()
        .flat_map(|head| head.iter().map(|&p| f64::from(p)))
        .collect()
}

/// The features of the picture in `path`.
pub fn features_of_file(evaluator: &Evaluator, path: &Path) -> anyhow::Result<Vec<f64>> {
    let image = image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8();
    let probs = evaluator
        .probabilities(std::slice::from_ref(&image))?
        .remove(0);
    Ok(features(&probs))
}

/// The pictures (PNG, JPEG, WebP, BMP) directly in `folder`, sorted by name.
pub fn pictures_in(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder)
        .with_context(|| format!("reading the unit-space folder {}", folder.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg" | "webp" | "bmp"
                )
            })
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// The unit space of the pictures in `folder`, their features read by `evaluator`.
pub fn build_unit_space(evaluator: &Evaluator, folder: &Path) -> anyhow::Result<UnitSpace> {
    let paths = pictures_in(folder)?;
    if paths.len() < 3 {
        bail!(
            "the unit space {} holds {} pictures; the T-method needs at least 3 reference pictures",
            folder.display(),
            paths.len()
        );
    }
    let rows = paths
        .iter()
        .map(|path| features_of_file(evaluator, path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    UnitSpace::build(&rows)
        .with_context(|| format!("building the unit space of {}", folder.display()))
}
