//! Where training pictures come from: an indexable, deterministic source of captioned
//! images (the procedural data set, or a folder of images and captions for fine-tuning).

use image::RgbImage;
use rayon::prelude::*;

use super::caption_probe::CaptionLabels;

/// Image `index` and its caption; the same index always gives the same pair.
pub trait CaptionedImages: Send + Sync {
    fn get(&self, index: u64) -> (RgbImage, String);

    /// What the caption of image `index` says, where the source knows it (the procedural
    /// scenes); for the training-only caption probe.
    fn labels(&self, _index: u64) -> Option<CaptionLabels> {
        None
    }
}

/// The batch of `batch` samples for `step` (indices `step * batch ..`), drawn in parallel
/// on the available cores.
pub fn batch_for_step(
    source: &dyn CaptionedImages,
    step: u64,
    batch: usize,
) -> Vec<(RgbImage, String)> {
    let first = step * batch as u64;
    // On rayon's threads (the ones the tensor ops use), in index order.
    (0..batch as u64)
        .into_par_iter()
        .map(|i| source.get(first + i))
        .collect()
}
