//! kakusan's stroke font for the digits 0–9: each digit is a set of centre lines (straight
//! segments, circular arcs and quadratic curves, flattened to short segments) drawn with a
//! round pen of fixed thickness. No font files.
//!
//! Coordinates are the glyph's local frame: x to the right, y downwards, the digit's body
//! inside `[-0.55, 0.55] × [-0.95, 0.95]`; the pen's half-width is [`PEN_HALF_WIDTH`]. The
//! renderer scales the frame by [`DIGIT_SCALE`] so the inked digit fits the unit box like the
//! shapes do.

use crate::attributes::Digit;

/// Half the stroke thickness in the local frame (before [`DIGIT_SCALE`]).
pub const PEN_HALF_WIDTH: f32 = 0.15;

/// The factor from the font frame to the glyph's unit box: the digit and its pen fit
/// `[-1, 1]` vertically.
pub const DIGIT_SCALE: f32 = 0.95;

/// A point of the local frame.
pub type Point = (f32, f32);

/// A straight piece of a centre line.
pub type Segment = (Point, Point);

/// How many straight pieces a full circle is flattened into (arcs get their share).
const CIRCLE_PIECES: usize = 48;

/// How many straight pieces a quadratic curve is flattened into.
const CURVE_PIECES: usize = 16;

/// Collects the flattened centre lines of one digit.
#[derive(Default)]
struct Strokes {
    segments: Vec<Segment>,
}

impl Strokes {
    fn line(&mut self, a: Point, b: Point) -> &mut Self {
        self.segments.push((a, b));
        self
    }

    fn polyline(&mut self, points: &[Point]) -> &mut Self {
        for pair in points.windows(2) {
            self.segments.push((pair[0], pair[1]));
        }
        self
    }

    /// An elliptical arc around `centre` with radii `(rx, ry)`, from angle `from` to `to`
    /// (degrees; 0 = right, 90 = down since y grows downwards).
    fn arc(&mut self, centre: Point, radii: (f32, f32), from: f32, to: f32) -> &mut Self {
        let sweep = (to - from).abs();
        let pieces = ((sweep / 360.0 * CIRCLE_PIECES as f32).ceil() as usize).max(2);
        let points: Vec<Point> = (0..=pieces)
            .map(|i| {
                let angle = (from + (to - from) * i as f32 / pieces as f32).to_radians();
                (
                    centre.0 + radii.0 * angle.cos(),
                    centre.1 + radii.1 * angle.sin(),
                )
            })
            .collect();
        self.polyline(&points)
    }

    /// A quadratic Bézier curve from `a` to `b` pulled towards `control`.
    fn curve(&mut self, a: Point, control: Point, b: Point) -> &mut Self {
        let points: Vec<Point> = (0..=CURVE_PIECES)
            .map(|i| {
                let t = i as f32 / CURVE_PIECES as f32;
                let (u, v, w) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
                (
                    u * a.0 + v * control.0 + w * b.0,
                    u * a.1 + v * control.1 + w * b.1,
                )
            })
            .collect();
        self.polyline(&points)
    }
}

/// The point at `angle` degrees on the ellipse around `centre` with radii `radii`.
fn on_ellipse(centre: Point, radii: (f32, f32), angle: f32) -> Point {
    let a = angle.to_radians();
    (centre.0 + radii.0 * a.cos(), centre.1 + radii.1 * a.sin())
}

/// The flattened centre lines of `digit`, in the font frame.
pub fn digit_segments(digit: Digit) -> Vec<Segment> {
    let mut s = Strokes::default();
    match digit.value() {
        0 => {
            s.arc((0.0, 0.0), (0.5, 0.9), 0.0, 360.0);
        }
        1 => {
            s.line((0.05, -0.9), (0.05, 0.9))
                .line((0.05, -0.9), (-0.3, -0.6))
                .line((-0.35, 0.9), (0.45, 0.9));
        }
        2 => {
            let (centre, radii) = ((0.0, -0.42), (0.47, 0.47));
            let end = on_ellipse(centre, radii, 30.0);
            s.arc(centre, radii, 190.0, 390.0)
                .line(end, (-0.5, 0.9))
                .line((-0.5, 0.9), (0.52, 0.9));
        }
        3 => {
            s.arc((0.0, -0.47), (0.43, 0.43), 160.0, 450.0).arc(
                (0.0, 0.43),
                (0.5, 0.47),
                270.0,
                520.0,
            );
        }
        4 => {
            s.line((0.22, 0.9), (0.22, -0.9))
                .line((0.22, -0.9), (-0.55, 0.35))
                .line((-0.55, 0.35), (0.55, 0.35));
        }
        5 => {
            let (centre, radii) = ((-0.02, 0.38), (0.5, 0.52));
            let start = on_ellipse(centre, radii, 225.0);
            s.line((0.48, -0.9), (-0.38, -0.9))
                .line((-0.38, -0.9), start)
                .arc(centre, radii, 225.0, 490.0);
        }
        6 => {
            s.arc((0.0, 0.42), (0.48, 0.48), 0.0, 360.0).curve(
                (0.4, -0.85),
                (-0.5, -0.75),
                (-0.48, 0.42),
            );
        }
        7 => {
            s.line((-0.52, -0.9), (0.52, -0.9))
                .line((0.52, -0.9), (-0.12, 0.9));
        }
        8 => {
            s.arc((0.0, -0.5), (0.4, 0.4), 0.0, 360.0)
                .arc((0.0, 0.42), (0.5, 0.48), 0.0, 360.0);
        }
        _ => {
            s.arc((0.0, -0.42), (0.48, 0.48), 0.0, 360.0).curve(
                (0.48, -0.42),
                (0.5, 0.75),
                (-0.4, 0.85),
            );
        }
    }
    s.segments
}

/// The distance from `p` to the segment `(a, b)`.
pub fn distance_to_segment(p: Point, (a, b): Segment) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / length_sq).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (ex, ey) = (p.0 - (a.0 + t * dx), p.1 - (a.1 + t * dy));
    (ex * ex + ey * ey).sqrt()
}

/// Whether the point `p` of the font frame is inked by the pen along `segments`.
pub fn is_inked(p: Point, segments: &[Segment]) -> bool {
    segments
        .iter()
        .any(|&segment| distance_to_segment(p, segment) <= PEN_HALF_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_digit_stays_in_its_box() {
        for digit in Digit::ALL {
            let segments = digit_segments(digit);
            assert!(!segments.is_empty());
            for (a, b) in segments {
                for (x, y) in [a, b] {
                    assert!(x.abs() <= 0.6 && y.abs() <= 0.96, "{digit}: ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn segment_distance() {
        let seg = ((0.0, 0.0), (1.0, 0.0));
        assert!((distance_to_segment((0.5, 0.3), seg) - 0.3).abs() < 1e-6);
        assert!((distance_to_segment((2.0, 0.0), seg) - 1.0).abs() < 1e-6);
    }
}
