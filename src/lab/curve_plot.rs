//! Curves as a PNG: value against number of pictures, one coloured line per series with a
//! legend (the optimiser's reward-per-picture plot).

use image::{Rgb, RgbImage};
use kakusan_data::bitmap_font::draw_text;

use super::draw::{line, square};

const W: u32 = 640;
const H: u32 = 360;
const LEFT: u32 = 50;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 40;
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([215, 215, 215]);
/// Colours of the series, in order.
pub const COLOURS: [Rgb<u8>; 4] = [
    Rgb([31, 90, 180]),
    Rgb([200, 40, 40]),
    Rgb([40, 150, 60]),
    Rgb([150, 80, 170]),
];

/// One line: a name for the legend and (x, y) points in x order.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub fn render(title: &str, x_label: &str, series: &[Series]) -> RgbImage {
    // The legend goes under the plot, one row per series, so it never hides a curve.
    let legend_h = 12 * series.len() as u32 + 4;
    let mut img = RgbImage::from_pixel(W, H + legend_h, Rgb([255; 3]));
    draw_text(&mut img, 8, 8, title, INK);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return img;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
    let (y0, y1) = (y0 - pad, y1 + pad);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + (((x - x0) / (x1 - x0)) * f64::from(pw - 1)).round() as u32;
    let py = |y: f64| TOP + (((y1 - y) / (y1 - y0)) * f64::from(ph - 1)).round() as u32;
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * f64::from(k) / 4.0;
        let row = py(y);
        for x in LEFT..W - RIGHT {
            img.put_pixel(x, row, GRID);
        }
        draw_text(&mut img, 4, row.saturating_sub(3), &format!("{y:.3}"), INK);
    }
    draw_text(&mut img, LEFT, H - BOTTOM + 6, &format!("{x0:.0}"), INK);
    let right = format!("{x1:.0}");
    draw_text(
        &mut img,
        W - RIGHT - 6 * right.len() as u32,
        H - BOTTOM + 6,
        &right,
        INK,
    );
    draw_text(
        &mut img,
        LEFT + pw / 2 - 3 * x_label.len() as u32,
        H - 14,
        x_label,
        INK,
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for w in s.points.windows(2) {
            line(
                &mut img,
                (px(w[0].0), py(w[0].1)),
                (px(w[1].0), py(w[1].1)),
                colour,
            );
        }
        for &(x, y) in &s.points {
            square(&mut img, px(x), py(y), 1, colour);
        }
        let ly = H + 12 * i as u32;
        for x in LEFT..LEFT + 16 {
            img.put_pixel(x, ly + 3, colour);
            img.put_pixel(x, ly + 4, colour);
        }
        draw_text(&mut img, LEFT + 22, ly, &s.name, colour);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rising series ends higher on the picture than it starts.
    #[test]
    fn a_rising_series_is_drawn_rising() {
        let s = Series {
            name: "thompson".into(),
            points: vec![(0.0, 0.1), (10.0, 0.5), (20.0, 0.9)],
        };
        let img = render("T", "PICTURES", &[s]);
        let ys: Vec<u32> = img
            .enumerate_pixels()
            .filter(|(_, y, p)| **p == COLOURS[0] && *y < H)
            .map(|(_, y, _)| y)
            .collect();
        let left: Vec<u32> = img
            .enumerate_pixels()
            .filter(|(x, y, p)| **p == COLOURS[0] && *x <= LEFT + 2 && *y < H)
            .map(|(_, y, _)| y)
            .collect();
        assert!(!ys.is_empty() && !left.is_empty());
        assert!(ys.iter().min().unwrap() < left.iter().min().unwrap());
        // The legend sits below the plot.
        assert_eq!(img.height(), H + 16);
        assert!(img
            .enumerate_pixels()
            .any(|(_, y, p)| *p == COLOURS[0] && y >= H));
    }
}
