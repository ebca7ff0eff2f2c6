//! Main-effect plots as a PNG: one panel per factor, its level means joined by lines, on one
//! vertical scale for every panel (so steep lines are the strong factors), with the grand
//! mean dashed.

use image::{Rgb, RgbImage};
use kakusan_data::bitmap_font::{draw_text, wrap};

use super::argmax;
use super::draw::{line, square};

const PANEL_W: u32 = 170;
const PANEL_H: u32 = 170;
const PER_ROW: usize = 4;
const TOP: u32 = 24;
const PLOT_TOP: u32 = 30;
const PLOT_H: u32 = 100;
const MARGIN_X: u32 = 30;
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([200, 200, 200]);
const LINE: Rgb<u8> = Rgb([31, 90, 180]);
const BEST: Rgb<u8> = Rgb([200, 40, 40]);

/// `level_means[f][l]` of factors named `names`, the grand mean, and a title (e.g.
/// "SN ratio (dB)"); the best (highest) level of each factor is marked red.
pub fn render(title: &str, names: &[String], level_means: &[Vec<f64>], grand: f64) -> RgbImage {
    let rows = names.len().div_ceil(PER_ROW).max(1) as u32;
    let cols = names.len().clamp(1, PER_ROW) as u32;
    let mut img = RgbImage::from_pixel(cols * PANEL_W, TOP + rows * PANEL_H, Rgb([255; 3]));
    draw_text(&mut img, 8, 8, title, INK);
    let all = level_means.iter().flatten().chain(std::iter::once(&grand));
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = (lo - 0.08 * span, hi + 0.08 * span);
    let y_of = |v: f64| -> u32 {
        let t = ((hi - v) / (hi - lo)).clamp(0.0, 1.0);
        PLOT_TOP + (t * f64::from(PLOT_H - 1)).round() as u32
    };
    for (f, (name, means)) in names.iter().zip(level_means).enumerate() {
        let x0 = (f % PER_ROW) as u32 * PANEL_W;
        let y0 = TOP + (f / PER_ROW) as u32 * PANEL_H;
        // Frame and the scale's ends.
        for x in x0 + MARGIN_X..x0 + PANEL_W - 10 {
            img.put_pixel(x, y0 + PLOT_TOP, GRID);
            img.put_pixel(x, y0 + PLOT_TOP + PLOT_H - 1, GRID);
        }
        let gy = y0 + y_of(grand);
        for x in (x0 + MARGIN_X..x0 + PANEL_W - 10).step_by(4) {
            img.put_pixel(x, gy, GRID);
            img.put_pixel(x + 1, gy, GRID);
        }
        draw_text(&mut img, x0 + 2, y0 + PLOT_TOP, &short(hi), INK);
        draw_text(
            &mut img,
            x0 + 2,
            y0 + PLOT_TOP + PLOT_H - 8,
            &short(lo),
            INK,
        );
        let n = means.len().max(2) as u32;
        let step = (PANEL_W - MARGIN_X - 30) / (n - 1);
        let xs: Vec<u32> = (0..means.len() as u32)
            .map(|i| x0 + MARGIN_X + 10 + i * step)
            .collect();
        let best = argmax(means);
        for i in 1..means.len() {
            line(
                &mut img,
                (xs[i - 1], y0 + y_of(means[i - 1])),
                (xs[i], y0 + y_of(means[i])),
                LINE,
            );
        }
        for (i, (&x, &m)) in xs.iter().zip(means).enumerate() {
            let colour = if i == best { BEST } else { LINE };
            square(&mut img, x, y0 + y_of(m), 2, colour);
            draw_text(
                &mut img,
                x.saturating_sub(2),
                y0 + PLOT_TOP + PLOT_H + 4,
                &(i + 1).to_string(),
                INK,
            );
        }
        for (k, text) in wrap(name, 26).iter().take(3).enumerate() {
            draw_text(
                &mut img,
                x0 + 6,
                y0 + PLOT_TOP + PLOT_H + 16 + 10 * k as u32,
                text,
                INK,
            );
        }
    }
    img
}

/// A short number for an axis label.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best level's dot is red and sits higher (smaller y) than the worst one's.
    #[test]
    fn panels_mark_the_best_level_higher() {
        let names = vec!["colour wording".to_string(), "cfg".to_string()];
        let means = vec![vec![-3.0, -1.0, -2.0], vec![-2.5, -1.5]];
        let img = render("SN", &names, &means, -2.0);
        assert_eq!(img.width(), 2 * PANEL_W);
        let reds: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(x, _, p)| **p == BEST && *x < PANEL_W)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(reds.len(), 25, "one 5x5 red dot in the first panel");
        let blues_y: Vec<u32> = img
            .enumerate_pixels()
            .filter(|(x, _, p)| **p == LINE && *x < PANEL_W)
            .map(|(_, y, _)| y)
            .collect();
        let red_y = reds.iter().map(|r| r.1).min().unwrap();
        assert!(blues_y.iter().max().unwrap() > &red_y);
    }
}
