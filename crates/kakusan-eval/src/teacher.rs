//! The classifier as the frozen teacher of a diffusion UNet's feature alignment
//! (`kakusan_train::tasks::feature_alignment`): its feature map after one stage, computed
//! from the clean training picture, is what the UNet learns to predict from the noisy
//! latent.

use std::path::Path;

use candle_core::Tensor;
use kakusan_train::tasks::FeatureTeacher;
use kakusan_train::TrainError;

use crate::classifier::Classifier;
use crate::error::{EvalError, Result};
use crate::evaluate::Evaluator;

/// A trained classifier and the stage whose output it teaches.
pub struct ClassifierTeacher {
    classifier: Classifier,
    stage: usize,
}

impl ClassifierTeacher {
    /// Loads an exported classifier folder (`config.json`, `model.safetensors`).
    pub fn load(dir: &Path, stage: usize) -> Result<Self> {
        Self::new(Evaluator::load(dir)?.into_classifier(), stage)
    }

    pub fn new(classifier: Classifier, stage: usize) -> Result<Self> {
        let stages = classifier.config().channels.len();
        if stage >= stages {
            return Err(EvalError::Config(format!(
                "feature_teacher_stage {stage}: the classifier has {stages} stages"
            )));
        }
        Ok(Self { classifier, stage })
    }
}

impl FeatureTeacher for ClassifierTeacher {
    fn channels(&self) -> usize {
        self.classifier.config().channels[self.stage]
    }

    fn features(&self, pictures: &Tensor) -> kakusan_train::Result<Tensor> {
        self.classifier
            .stage_features(pictures, self.stage)
            .map_err(|e| TrainError::Config(format!("feature teacher: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::path::PathBuf;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/kakusan-eval")
    }

    /// The shipped evaluator's stage-2 map of 64x64 pictures is 64 channels at 8x8, and
    /// pictures that differ only in their glyph get different features.
    #[test]
    fn the_shipped_classifier_teaches_its_stage_features() {
        let teacher = ClassifierTeacher::load(&shipped(), 2).unwrap();
        assert_eq!(teacher.channels(), 64);
        let data = kakusan_data::Dataset::new(3, kakusan_data::Split::Train, 64).unwrap();
        let pictures: Vec<_> = (0..2).map(|i| data.sample(i).image).collect();
        let x = kakusan_core::image_io::images_to_tensor(&pictures).unwrap();
        let f = teacher.features(&x).unwrap();
        assert_eq!(f.dims(), &[2, 64, 8, 8]);
        let diff = (f.get(0).unwrap() - f.get(1).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 1e-3, "{diff}");
        let small = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(teacher.features(&small).is_err());
    }

    #[test]
    fn a_stage_past_the_last_is_refused() {
        let err = ClassifierTeacher::load(&shipped(), 4).err().unwrap();
        assert!(err.to_string().contains("4 stages"), "{err}");
    }
}
