//! The loss curve as a PNG: raw loss in light grey, its moving average in blue, on a log
//! scale, with horizontal grid lines at each power of ten, labelled, and the step range
//! and last smoothed loss written underneath.

use std::path::Path;

use image::{Rgb, RgbImage};
use kakusan_data::bitmap_font::draw_text;

use crate::error::Result;
use crate::loss_log::LossRow;

const W: u32 = 800;
const H: u32 = 400;
const MARGIN: u32 = 40;

/// Draws `rows` to an image.
pub fn render(rows: &[LossRow]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.loss.is_finite() && r.loss > 0.0)
        .map(|r| (r.step as f64, r.loss.log10()))
        .collect();
    if points.len() < 2 {
        return img;
    }
    let (x0, x1) = (
        points[0].0,
        points[points.len() - 1].0.max(points[0].0 + 1.0),
    );
    let lo = points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .floor();
    let hi = points
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let px = |x: f64| MARGIN as f64 + (x - x0) / (x1 - x0) * (W - 2 * MARGIN) as f64;
    let py = |y: f64| (H - MARGIN) as f64 - (y - lo) / (hi - lo) * (H - 2 * MARGIN) as f64;
    // Grid: one line per power of ten.
    let mut decade = lo;
    while decade <= hi {
        let y = py(decade).round() as u32;
        for x in MARGIN..W - MARGIN {
            img.put_pixel(x, y.min(H - 1), Rgb([210, 210, 210]));
        }
        let label = format!("1e{}", decade as i32);
        draw_text(&mut img, 2, y.saturating_sub(3), &label, Rgb([90, 90, 90]));
        decade += 1.0;
    }
    draw_polyline(
        &mut img,
        points.iter().map(|&(x, y)| (px(x), py(y))),
        Rgb([190, 190, 190]),
    );
    let mut avg = points[0].1;
    let alpha = 2.0 / (1.0 + (points.len() as f64 / 20.0).max(1.0));
    let smooth: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| {
            avg = avg * (1.0 - alpha) + y * alpha;
            (px(x), py(avg))
        })
        .collect();
    draw_polyline(&mut img, smooth.into_iter(), Rgb([20, 70, 200]));
    let caption = format!(
        "loss (log scale), steps {} to {}, smoothed last {:.4}",
        x0 as u64,
        x1 as u64,
        10f64.powf(avg)
    );
    draw_text(
        &mut img,
        MARGIN,
        H - MARGIN + 12,
        &caption,
        Rgb([40, 40, 40]),
    );
    img
}

fn draw_polyline(img: &mut RgbImage, pts: impl Iterator<Item = (f64, f64)>, colour: Rgb<u8>) {
    let mut prev: Option<(f64, f64)> = None;
    for p in pts {
        if let Some(q) = prev {
            let n = ((p.0 - q.0).abs().max((p.1 - q.1).abs()).ceil() as usize).max(1);
            for i in 0..=n {
                let t = i as f64 / n as f64;
                let (x, y) = (q.0 + (p.0 - q.0) * t, q.1 + (p.1 - q.1) * t);
                if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
                    img.put_pixel(x as u32, y as u32, colour);
                }
            }
        }
        prev = Some(p);
    }
}

/// Renders `rows` and writes the PNG atomically.
pub fn write(rows: &[LossRow], path: &Path) -> Result<()> {
    kakusan_core::png_meta::write_png(path, &render(rows))
        .map_err(|e| crate::error::TrainError::Config(format!("writing the loss plot: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_falling_loss_is_drawn_from_top_left_to_bottom_right() {
        let rows: Vec<LossRow> = (0..200)
            .map(|s| LossRow {
                step: s,
                loss: 1.0 / (1.0 + s as f64),
                lr: 0.0,
                grad_norm: 0.0,
                seconds: 0.0,
            })
            .collect();
        let img = render(&rows);
        let blue_rows = |x: u32| -> Vec<u32> {
            (0..H)
                .filter(|&y| img.get_pixel(x, y) == &Rgb([20, 70, 200]))
                .collect()
        };
        let left = blue_rows(MARGIN + 2);
        let right = blue_rows(W - MARGIN - 2);
        assert!(!left.is_empty() && !right.is_empty());
        assert!(
            left[0] < right[0],
            "the curve must fall: {left:?} vs {right:?}"
        );
    }
}
