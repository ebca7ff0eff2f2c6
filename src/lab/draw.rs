//! The drawing primitives of the lab's plots: straight lines and square dots, clipped to the
//! picture.

use image::{Rgb, RgbImage};

/// A 2-pixel-wide straight line.
pub fn line(img: &mut RgbImage, (x0, y0): (u32, u32), (x1, y1): (u32, u32), colour: Rgb<u8>) {
    let steps = x0.abs_diff(x1).max(y0.abs_diff(y1)).max(1);
    for s in 0..=steps {
        let t = f64::from(s) / f64::from(steps);
        let x = (f64::from(x0) + t * (f64::from(x1) - f64::from(x0))).round() as u32;
        let y = (f64::from(y0) + t * (f64::from(y1) - f64::from(y0))).round() as u32;
        for (a, b) in [(x, y), (x, y + 1)] {
            put(img, a, b, colour);
        }
    }
}

/// A filled square of side `2 * radius + 1` centred on `(x, y)`.
pub fn square(img: &mut RgbImage, x: u32, y: u32, radius: u32, colour: Rgb<u8>) {
    for dy in 0..=2 * radius {
        for dx in 0..=2 * radius {
            put(
                img,
                (x + dx).saturating_sub(radius),
                (y + dy).saturating_sub(radius),
                colour,
            );
        }
    }
}

fn put(img: &mut RgbImage, x: u32, y: u32, colour: Rgb<u8>) {
    if x < img.width() && y < img.height() {
        img.put_pixel(x, y, colour);
    }
}
