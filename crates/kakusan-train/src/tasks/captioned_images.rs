//! Where training pictures come from: an indexable, deterministic source of captioned
//! images (the procedural data set, or a folder of images and captions for fine-tuning).

use image::RgbImage;

/// Image `index` and its caption; the same index always gives the same pair.
pub trait CaptionedImages: Send + Sync {
    fn get(&self, index: u64) -> (RgbImage, String);
}

/// The batch of `batch` samples for `step` (indices `step * batch ..`), drawn in parallel
/// on the available cores.
pub fn batch_for_step(
    source: &dyn CaptionedImages,
    step: u64,
    batch: usize,
) -> Vec<(RgbImage, String)> {
    let first = step * batch as u64;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(batch.max(1));
    let per = batch.div_ceil(threads);
    let mut out: Vec<Option<(RgbImage, String)>> = (0..batch).map(|_| None).collect();
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in out.chunks_mut(per).enumerate() {
            scope.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let i = (chunk_index * per + k) as u64;
                    *slot = Some(source.get(first + i));
                }
            });
        }
    });
    out.into_iter().flatten().collect()
}
