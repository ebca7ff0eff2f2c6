//! Rasterises a [`Scene`] to an RGB image: the background, then each object's coverage
//! (analytic shapes, stroke-font digits) blended over it, anti-aliased by supersampling.
//!
//! Each glyph is defined in its own unit frame (x right, y down, the glyph inside `[-1, 1]²`);
//! an object maps that frame to the picture by its jittered centre, radius and rotation.

use image::{Rgb, RgbImage};

use crate::attributes::{Colour, Glyph, Shape};
use crate::scene::{ObjectSpec, Scene};
use crate::stroke_font::{self, Segment, DIGIT_SCALE};

/// Samples per pixel along each axis (4 × 4 = 16 samples per pixel).
const SUPERSAMPLING: usize = 4;

/// Draws `scene` as a `size`×`size` picture.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    let background = tinted(scene.background, scene.background_tint);
    let mut image = RgbImage::from_pixel(size, size, Rgb(background));
    for object in &scene.objects {
        let colour = tinted(object.colour, object.jitter.tint);
        let coverage = coverage(object, size);
        for (pixel, &c) in image.pixels_mut().zip(&coverage) {
            if c > 0.0 {
                for (channel, &value) in pixel.0.iter_mut().zip(&colour) {
                    let mixed = f32::from(*channel) * (1.0 - c) + f32::from(value) * c;
                    *channel = mixed.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    image
}

/// A colour with its tint jitter applied.
pub fn tinted(colour: Colour, tint: [i8; 3]) -> [u8; 3] {
    let rgb = colour.rgb();
    [0, 1, 2].map(|c| (i16::from(rgb[c]) + i16::from(tint[c])).clamp(0, 255) as u8)
}

/// The fraction of each pixel (row-major, `size * size` values in `[0, 1]`) that `object`
/// covers in a `size`×`size` picture.
pub fn coverage(object: &ObjectSpec, size: u32) -> Vec<f32> {
    let side = size as usize;
    let mut out = vec![0.0f32; side * side];
    let scale = size as f32;
    let (cx, cy) = object.centre();
    let (cx, cy) = (cx * scale, cy * scale);
    let radius = object.radius() * scale;
    if radius <= 0.0 || side == 0 {
        return out;
    }
    let bound = object.bounding_radius() * scale + 1.0;
    let range = |centre: f32| {
        let low = (centre - bound).floor().max(0.0) as usize;
        let high = ((centre + bound).ceil().max(0.0) as usize).min(side);
        low..high
    };
    let frame = PixelFrame {
        centre: (cx, cy),
        radius,
        rotation: object.jitter.rotation_degrees.to_radians().sin_cos(),
    };
    let inside = GlyphTest::new(object.glyph);
    // Every sample of a pixel lies within this distance of the pixel's centre, in the unit
    // frame (half the diagonal between the outermost samples).
    let reach = (0.5 - 0.5 / SUPERSAMPLING as f32) * std::f32::consts::SQRT_2 / radius;
    let per_sample = 1.0 / (SUPERSAMPLING * SUPERSAMPLING) as f32;
    for row in range(cy) {
        for column in range(cx) {
            let (x, y) = frame.unit(column as f32 + 0.5, row as f32 + 0.5);
            let hits = match inside.decided(x, y, reach) {
                Some(true) => SUPERSAMPLING * SUPERSAMPLING,
                Some(false) => 0,
                None => pixel_hits(&frame, &inside, row, column),
            };
            out[row * side + column] = hits as f32 * per_sample;
        }
    }
    out
}

/// How the picture maps to an object's unit frame.
struct PixelFrame {
    /// The object's centre in pixels.
    centre: (f32, f32),
    /// Its radius in pixels.
    radius: f32,
    /// `(sin, cos)` of its clockwise-on-screen rotation.
    rotation: (f32, f32),
}

impl PixelFrame {
    /// The unit-frame coordinates of the picture point `(px, py)` (in pixels).
    fn unit(&self, px: f32, py: f32) -> (f32, f32) {
        let (sin, cos) = self.rotation;
        let (dx, dy) = (px - self.centre.0, py - self.centre.1);
        // Undo the rotation, then the scale.
        (
            (cos * dx + sin * dy) / self.radius,
            (-sin * dx + cos * dy) / self.radius,
        )
    }
}

/// How many of the pixel's `SUPERSAMPLING²` samples `inside` contains.
fn pixel_hits(frame: &PixelFrame, inside: &GlyphTest, row: usize, column: usize) -> usize {
    let step = 1.0 / SUPERSAMPLING as f32;
    let mut hits = 0;
    for sy in 0..SUPERSAMPLING {
        for sx in 0..SUPERSAMPLING {
            let px = column as f32 + (sx as f32 + 0.5) * step;
            let py = row as f32 + (sy as f32 + 0.5) * step;
            let (x, y) = frame.unit(px, py);
            if inside.contains(x, y) {
                hits += 1;
            }
        }
    }
    hits
}

/// A point-inside test for one glyph in its unit frame (digits carry their flattened strokes).
enum GlyphTest {
    Shape(Shape),
    Star([(f32, f32); 10]),
    Digit(Vec<Segment>),
}

impl GlyphTest {
    fn new(glyph: Glyph) -> Self {
        match glyph {
            Glyph::Shape(Shape::Star) => GlyphTest::Star(star_polygon()),
            Glyph::Shape(shape) => GlyphTest::Shape(shape),
            Glyph::Digit(digit) => GlyphTest::Digit(stroke_font::digit_segments(digit)),
        }
    }

    /// Whether every point within `reach` of `(x, y)` (unit frame) is inside (`Some(true)`)
    /// or every one outside (`Some(false)`), where that is cheap to know: digits, by the
    /// distance to their strokes (a pixel far from the pen's edge needs no supersampling;
    /// most of a digit's bounding box). `None`: test the samples.
    fn decided(&self, x: f32, y: f32, reach: f32) -> Option<bool> {
        let GlyphTest::Digit(segments) = self else {
            return None;
        };
        let p = (x / DIGIT_SCALE, y / DIGIT_SCALE);
        let distance = segments
            .iter()
            .map(|&segment| stroke_font::distance_to_segment(p, segment))
            .fold(f32::INFINITY, f32::min);
        // The distance is 1-Lipschitz; the margin covers rounding in the sample positions.
        let reach = reach / DIGIT_SCALE + 1e-3;
        if distance > stroke_font::PEN_HALF_WIDTH + reach {
            Some(false)
        } else if distance < stroke_font::PEN_HALF_WIDTH - reach {
            Some(true)
        } else {
            None
        }
    }

    fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            GlyphTest::Shape(shape) => shape_contains(*shape, x, y),
            GlyphTest::Star(outline) => in_polygon(outline, x, y),
            GlyphTest::Digit(segments) => {
                stroke_font::is_inked((x / DIGIT_SCALE, y / DIGIT_SCALE), segments)
            }
        }
    }
}

const TRIANGLE: [(f32, f32); 3] = [(0.0, -0.92), (0.92, 0.68), (-0.92, 0.68)];
const HEART_TIP: [(f32, f32); 3] = [(-0.93, -0.22), (0.93, -0.22), (0.0, 0.92)];
const HEART_LOBE_X: f32 = 0.47;
const HEART_LOBE_Y: f32 = -0.38;
const HEART_LOBE_RADIUS: f32 = 0.5;
const STAR_INNER_RADIUS: f32 = 0.45;
const RING_INNER_RADIUS: f32 = 0.55;
const SQUARE_HALF_SIDE: f32 = 0.82;
const CROSS_HALF_WIDTH: f32 = 0.3;
const CROSS_HALF_LENGTH: f32 = 0.95;
/// The crescent: the unit disk less a disk of this radius centred this far right.
const MOON_CUT_X: f32 = 0.42;
const MOON_CUT_RADIUS: f32 = 0.78;

/// Whether `(x, y)` of the unit frame lies inside `shape` (the star is tested by
/// [`GlyphTest`] with its precomputed outline; here it is computed afresh).
fn shape_contains(shape: Shape, x: f32, y: f32) -> bool {
    let r2 = x * x + y * y;
    match shape {
        Shape::Circle => r2 <= 1.0,
        Shape::Square => x.abs() <= SQUARE_HALF_SIDE && y.abs() <= SQUARE_HALF_SIDE,
        Shape::Triangle => in_polygon(&TRIANGLE, x, y),
        Shape::Star => in_polygon(&star_polygon(), x, y),
        Shape::Ring => (RING_INNER_RADIUS * RING_INNER_RADIUS..=1.0).contains(&r2),
        Shape::Cross => {
            let (ax, ay) = (x.abs(), y.abs());
            (ax <= CROSS_HALF_WIDTH && ay <= CROSS_HALF_LENGTH)
                || (ay <= CROSS_HALF_WIDTH && ax <= CROSS_HALF_LENGTH)
        }
        Shape::Heart => {
            let lobe = |cx: f32| {
                (x - cx).powi(2) + (y - HEART_LOBE_Y).powi(2) <= HEART_LOBE_RADIUS.powi(2)
            };
            lobe(-HEART_LOBE_X) || lobe(HEART_LOBE_X) || in_polygon(&HEART_TIP, x, y)
        }
        Shape::Moon => r2 <= 1.0 && (x - MOON_CUT_X).powi(2) + y * y > MOON_CUT_RADIUS.powi(2),
    }
}

/// The five-pointed star's outline, first point straight up.
fn star_polygon() -> [(f32, f32); 10] {
    let mut points = [(0.0, 0.0); 10];
    for (i, point) in points.iter_mut().enumerate() {
        let radius = if i % 2 == 0 { 1.0 } else { STAR_INNER_RADIUS };
        let angle = (-90.0 + 36.0 * i as f32).to_radians();
        *point = (radius * angle.cos(), radius * angle.sin());
    }
    points
}

/// Even-odd point-in-polygon test.
fn in_polygon(points: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut previous = points.len().wrapping_sub(1);
    for (i, &(xi, yi)) in points.iter().enumerate() {
        let Some(&(xj, yj)) = points.get(previous) else {
            return false;
        };
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        previous = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for pixels far from a digit's pen edge gives exactly the coverage of
    /// testing all samples, at every size, rotation and position.
    #[test]
    fn shortcut_coverage_equals_full_supersampling() {
        use crate::{Dataset, Split};
        let data = Dataset::new(3, Split::Train, 64).unwrap();
        let mut digits = 0;
        for i in 0..100 {
            for object in &data.scene(i).objects {
                if !matches!(object.glyph, Glyph::Digit(_)) {
                    continue;
                }
                digits += 1;
                for size in [32u32, 64] {
                    let fast = coverage(object, size);
                    let scale = size as f32;
                    let frame = PixelFrame {
                        centre: (object.centre().0 * scale, object.centre().1 * scale),
                        radius: object.radius() * scale,
                        rotation: object.jitter.rotation_degrees.to_radians().sin_cos(),
                    };
                    let test = GlyphTest::new(object.glyph);
                    let side = size as usize;
                    for row in 0..side {
                        for column in 0..side {
                            let full = pixel_hits(&frame, &test, row, column) as f32
                                / (SUPERSAMPLING * SUPERSAMPLING) as f32;
                            assert_eq!(
                                fast[row * side + column],
                                full,
                                "{i} {size} {row} {column}"
                            );
                        }
                    }
                }
            }
        }
        assert!(digits > 30, "{digits}");
    }

    #[test]
    fn polygon_test() {
        assert!(in_polygon(&TRIANGLE, 0.0, 0.0));
        assert!(!in_polygon(&TRIANGLE, 0.9, -0.9));
        let star = star_polygon();
        assert!(in_polygon(&star, 0.0, 0.0));
        assert!(in_polygon(&star, 0.0, -0.9));
        assert!(!in_polygon(&star, 0.6, -0.6));
    }

    #[test]
    fn every_glyph_lies_within_the_bound() {
        // Sample the unit frame densely: every inked point must be within GLYPH_BOUND of the
        // centre (the non-overlap guarantee of pairs rests on it).
        for glyph in Glyph::EVALUATED {
            let test = GlyphTest::new(glyph);
            let mut inked = 0;
            for i in 0..200 {
                for j in 0..200 {
                    let (x, y) = (-1.5 + 3.0 * i as f32 / 199.0, -1.5 + 3.0 * j as f32 / 199.0);
                    if test.contains(x, y) {
                        inked += 1;
                        let r = (x * x + y * y).sqrt();
                        assert!(r <= crate::scene::GLYPH_BOUND, "{glyph} at ({x}, {y})");
                    }
                }
            }
            assert!(inked > 1000, "{glyph} is almost empty: {inked}");
        }
    }
}
