//! A grid of pictures, each under its label (the sampler comparison of `kakusan generate
//! --sampler a,b,c`).

use image::{Rgb, RgbImage};

use crate::bitmap_font::{draw_text, wrap, ADVANCE, LINE_HEIGHT};

const GAP: u32 = 4;

/// The labelled grid: `columns` cells per row, each picture under its label (wrapped to the
/// picture's width), on a white background.
pub fn labelled_grid(cells: &[(String, RgbImage)], columns: usize) -> RgbImage {
    let columns = columns.clamp(1, cells.len().max(1)) as u32;
    let rows = (cells.len() as u32).div_ceil(columns);
    let cell_w = cells.iter().map(|(_, i)| i.width()).max().unwrap_or(8);
    let cell_h = cells.iter().map(|(_, i)| i.height()).max().unwrap_or(8);
    let chars = ((cell_w / ADVANCE) as usize).max(1);
    let label_lines = cells
        .iter()
        .map(|(l, _)| wrap(l, chars).len() as u32)
        .max()
        .unwrap_or(1);
    let label_h = label_lines * LINE_HEIGHT + 2;
    let width = columns * cell_w + (columns + 1) * GAP;
    let height = rows * (label_h + cell_h) + (rows + 1) * GAP;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, (label, image)) in cells.iter().enumerate() {
        let (c, r) = (i as u32 % columns, i as u32 / columns);
        let x = GAP + c * (cell_w + GAP);
        let y = GAP + r * (label_h + cell_h + GAP);
        for (n, line) in wrap(label, chars).iter().enumerate() {
            draw_text(
                &mut out,
                x,
                y + 1 + n as u32 * LINE_HEIGHT,
                line,
                Rgb([0, 0, 0]),
            );
        }
        image::imageops::replace(&mut out, image, x as i64, (y + label_h) as i64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_cells_under_labels() {
        let red = RgbImage::from_pixel(16, 16, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(16, 16, Rgb([0, 0, 255]));
        let g = labelled_grid(&[("a".into(), red), ("b".into(), blue)], 2);
        let label_h = LINE_HEIGHT + 2;
        assert_eq!(g.dimensions(), (2 * 16 + 3 * GAP, label_h + 16 + 2 * GAP));
        assert_eq!(*g.get_pixel(GAP + 8, GAP + label_h + 8), Rgb([255, 0, 0]));
        assert_eq!(
            *g.get_pixel(2 * GAP + 16 + 8, GAP + label_h + 8),
            Rgb([0, 0, 255])
        );
        // The label is drawn in black above the first cell.
        let label_area = (GAP..GAP + 6).flat_map(|x| (GAP..GAP + label_h).map(move |y| (x, y)));
        assert!(label_area
            .into_iter()
            .any(|(x, y)| *g.get_pixel(x, y) == Rgb([0, 0, 0])));
    }
}
