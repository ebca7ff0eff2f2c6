//! A captioned grid of samples as one picture: each sample's image (enlarged to at least
//! [`MIN_CELL_SIDE`] pixels by pixel repetition) with its caption written under it in the
//! built-in bitmap font, wrapped to the cell's width.

use std::path::Path;

use image::{imageops, Rgb, RgbImage};

use crate::bitmap_font::{draw_text, wrap, ADVANCE, LINE_HEIGHT};
use crate::dataset::{Dataset, Sample, DEFAULT_IMAGE_SIZE};
use crate::error::DataError;

/// Images are enlarged by a whole factor until their side is at least this.
pub const MIN_CELL_SIDE: u32 = 128;
/// The space around and between cells.
const GAP: u32 = 6;
/// The most samples one preview holds.
pub const MAX_PREVIEW_SAMPLES: usize = 4096;

const PAPER: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// The samples in a grid of `columns` columns (at least 1), captions under the pictures.
pub fn preview_grid(samples: &[Sample], columns: usize) -> RgbImage {
    let columns = columns.clamp(1, samples.len().max(1));
    let side = samples
        .iter()
        .map(|s| s.image.width().max(s.image.height()))
        .max()
        .unwrap_or(DEFAULT_IMAGE_SIZE)
        .max(1);
    let factor = MIN_CELL_SIDE.div_ceil(side).max(1);
    let cell = side * factor;
    let chars_per_line = (cell / ADVANCE).max(1) as usize;
    let captions: Vec<Vec<String>> = samples
        .iter()
        .map(|s| wrap(&s.caption, chars_per_line))
        .collect();
    let rows = samples.len().div_ceil(columns).max(1);
    let row_heights: Vec<u32> = (0..rows)
        .map(|r| {
            let lines = captions
                .iter()
                .skip(r * columns)
                .take(columns)
                .map(Vec::len)
                .max()
                .unwrap_or(0) as u32;
            cell + 4 + lines * LINE_HEIGHT
        })
        .collect();
    let width = GAP + columns as u32 * (cell + GAP);
    let height = GAP + row_heights.iter().map(|h| h + GAP).sum::<u32>();
    let mut canvas = RgbImage::from_pixel(width, height, PAPER);
    let mut top = GAP;
    for (r, row_height) in row_heights.iter().enumerate() {
        for c in 0..columns {
            let index = r * columns + c;
            let (Some(sample), Some(lines)) = (samples.get(index), captions.get(index)) else {
                continue;
            };
            let left = GAP + c as u32 * (cell + GAP);
            let enlarged = imageops::resize(
                &sample.image,
                sample.image.width() * factor,
                sample.image.height() * factor,
                imageops::FilterType::Nearest,
            );
            imageops::replace(&mut canvas, &enlarged, i64::from(left), i64::from(top));
            for (l, line) in lines.iter().enumerate() {
                draw_text(
                    &mut canvas,
                    left,
                    top + cell + 4 + l as u32 * LINE_HEIGHT,
                    line,
                    INK,
                );
            }
        }
        top += row_height + GAP;
    }
    canvas
}

/// Writes a preview of the first `count` samples of `dataset` as a PNG to `path`,
/// atomically (a failure leaves no partial file).
pub fn write_preview(
    dataset: &Dataset,
    count: usize,
    columns: usize,
    path: &Path,
) -> Result<(), DataError> {
    if count == 0 || columns == 0 {
        return Err(DataError::EmptyPreview { count, columns });
    }
    if count > MAX_PREVIEW_SAMPLES {
        return Err(DataError::PreviewTooLarge {
            count,
            maximum: MAX_PREVIEW_SAMPLES,
        });
    }
    let grid = preview_grid(&dataset.batch(0, count), columns);
    kakusan_core::png_meta::write_png(path, &grid)?;
    Ok(())
}
