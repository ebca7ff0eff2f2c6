//! The procedural data set (kakusan-data) as a source of training pictures.

use image::RgbImage;
use kakusan_data::{Dataset, Split};
use serde::{Deserialize, Serialize};

use super::caption_probe::CaptionLabels;
use super::captioned_images::CaptionedImages;
use crate::error::{Result, TrainError};

/// Which procedural pictures to train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProceduralDataConfig {
    pub seed: u64,
    pub image_size: u32,
    /// Share of two-object scenes.
    pub two_object_fraction: f32,
    /// Share of one-object captions that leave the object's colour out (0: always named).
    pub colour_omission: f32,
    /// Share of small objects (none: the data set's own even split).
    pub small_fraction: Option<f32>,
}

impl Default for ProceduralDataConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            image_size: 64,
            two_object_fraction: 0.25,
            colour_omission: 0.0,
            small_fraction: None,
        }
    }
}

/// The training split of the procedural data set.
pub struct ProceduralImages(Dataset);

impl ProceduralImages {
    pub fn new(config: &ProceduralDataConfig) -> Result<Self> {
        let data = Dataset::new(config.seed, Split::Train, config.image_size)
            .and_then(|d| d.with_two_object_fraction(config.two_object_fraction))
            .and_then(|d| d.with_colour_omission(config.colour_omission))
            .and_then(|d| match config.small_fraction {
                Some(f) => d.with_small_fraction(f),
                None => Ok(d),
            })
            .map_err(|e| TrainError::Config(format!("data: {e}")))?;
        Ok(Self(data))
    }
}

impl CaptionedImages for ProceduralImages {
    fn get(&self, index: u64) -> (RgbImage, String) {
        let s = self.0.sample(index);
        (s.image, s.caption)
    }

    fn labels(&self, index: u64) -> Option<CaptionLabels> {
        CaptionLabels::of_scene(&self.0.scene(index))
    }
}
