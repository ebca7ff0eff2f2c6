//! What is in a picture: one or two objects (glyph, colour, size, position and a little
//! jitter) on a background colour, and how such scenes are sampled for a [`Split`].
//!
//! Sampling rules:
//! - glyphs, sizes, positions and backgrounds are uniform; an object's colour is uniform among
//!   the colours the split allows for its glyph ([`Split::HeldOut`] draws its held-out object
//!   uniformly from the held-out pairs);
//! - the background differs from every object's colour;
//! - two-object scenes are side by side (left / right) or stacked (top / bottom) and never
//!   overlap: their objects are drawn at [`PAIR_SCALE`] of the usual size with less position
//!   noise, so each stays inside its half of the picture (see [`ObjectSpec::bounding_radius`]).

use crate::attributes::{Colour, Glyph, Position, Size};
use crate::rng::SplitMix64;
use crate::split::{held_out_pairs, training_colours, Split};

/// The largest rotation jitter, in degrees either way.
pub const MAX_ROTATION_DEGREES: f32 = 10.0;
/// The size jitter: the radius is multiplied by a factor in `1 ± SCALE_JITTER`.
pub const SCALE_JITTER: f32 = 0.08;
/// The position noise of a single object, as a fraction of the side, either way.
pub const SINGLE_OFFSET_JITTER: f32 = 0.03;
/// The position noise of each object of a pair, as a fraction of the side, either way.
pub const PAIR_OFFSET_JITTER: f32 = 0.015;
/// How much smaller objects of a pair are drawn than single objects of the same [`Size`].
pub const PAIR_SCALE: f32 = 0.85;
/// The largest tint jitter of a colour, per channel, either way.
pub const MAX_TINT: i8 = 8;
/// Every glyph lies within this many radii of its centre at any rotation (the triangle's and
/// the heart's far points are the farthest).
pub const GLYPH_BOUND: f32 = 1.15;

/// The small random deviations that make every picture different.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// Horizontal offset from the position's nominal centre, as a fraction of the side.
    pub dx: f32,
    /// Vertical offset (downwards), as a fraction of the side.
    pub dy: f32,
    /// Factor on the size's nominal radius.
    pub scale: f32,
    /// Rotation in degrees (clockwise on screen).
    pub rotation_degrees: f32,
    /// Added to each channel of the colour (clamped to 0–255).
    pub tint: [i8; 3],
}

impl Jitter {
    /// No jitter: the nominal pose and colour.
    pub const NONE: Jitter = Jitter {
        dx: 0.0,
        dy: 0.0,
        scale: 1.0,
        rotation_degrees: 0.0,
        tint: [0; 3],
    };

    fn sample(rng: &mut SplitMix64, offset: f32, scale: f32) -> Self {
        Jitter {
            dx: rng.uniform(-offset, offset),
            dy: rng.uniform(-offset, offset),
            scale: scale * rng.uniform(1.0 - SCALE_JITTER, 1.0 + SCALE_JITTER),
            rotation_degrees: rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES),
            tint: sample_tint(rng),
        }
    }
}

fn sample_tint(rng: &mut SplitMix64) -> [i8; 3] {
    let span = 2 * MAX_TINT as usize + 1;
    [0; 3].map(|_: i8| (rng.below(span) as i8).wrapping_sub(MAX_TINT))
}

/// One object of a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectSpec {
    /// What it is.
    pub glyph: Glyph,
    /// Its colour.
    pub colour: Colour,
    /// Its size class.
    pub size: Size,
    /// Its position class.
    pub position: Position,
    /// Its exact pose and tint.
    pub jitter: Jitter,
}

impl ObjectSpec {
    /// Its centre `(x, y)` as fractions of the side.
    pub fn centre(&self) -> (f32, f32) {
        let (x, y) = self.position.centre();
        (x + self.jitter.dx, y + self.jitter.dy)
    }

    /// Its radius (half the extent of the glyph's unit box) as a fraction of the side.
    pub fn radius(&self) -> f32 {
        self.size.radius() * self.jitter.scale
    }

    /// A radius, as a fraction of the side, that contains the whole glyph at its rotation.
    pub fn bounding_radius(&self) -> f32 {
        GLYPH_BOUND * self.radius()
    }
}

/// How the first object of a two-object scene relates to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The first object is left of the second.
    LeftOf,
    /// The first object is above the second.
    Above,
}

/// A picture's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// One or two objects; in a pair the first is the left or the upper one.
    pub objects: Vec<ObjectSpec>,
    /// The background colour, different from every object's.
    pub background: Colour,
    /// The background's tint jitter.
    pub background_tint: [i8; 3],
}

impl Scene {
    /// The same scene with every object drawn as `glyph` (colours, sizes, positions and
    /// the background kept).
    pub fn with_glyph(mut self, glyph: Glyph) -> Self {
        for object in &mut self.objects {
            object.glyph = glyph;
        }
        self
    }

    /// Samples a scene of `split`: two objects with probability `two_object_fraction`, else
    /// one.
    pub fn sample(rng: &mut SplitMix64, split: Split, two_object_fraction: f32) -> Self {
        if rng.chance(two_object_fraction) {
            Self::sample_pair(rng, split)
        } else {
            Self::sample_single(rng, split)
        }
    }

    /// Samples a one-object scene of `split`.
    pub fn sample_single(rng: &mut SplitMix64, split: Split) -> Self {
        let (glyph, colour) = match split {
            Split::Train => sample_training_pair(rng),
            Split::HeldOut => sample_held_out_pair(rng),
        };
        let object = ObjectSpec {
            glyph,
            colour,
            size: rng.pick(&Size::ALL, Size::Small),
            position: rng.pick(&Position::ALL, Position::Centre),
            jitter: Jitter::sample(rng, SINGLE_OFFSET_JITTER, 1.0),
        };
        Self::with_background(rng, vec![object])
    }

    /// Samples a two-object scene of `split`, side by side or stacked.
    pub fn sample_pair(rng: &mut SplitMix64, split: Split) -> Self {
        let pairs = match split {
            Split::Train => [sample_training_pair(rng), sample_training_pair(rng)],
            Split::HeldOut => {
                let held = sample_held_out_pair(rng);
                let other = sample_any_pair(rng);
                if rng.chance(0.5) {
                    [held, other]
                } else {
                    [other, held]
                }
            }
        };
        let positions = if rng.chance(0.5) {
            [Position::Left, Position::Right]
        } else {
            [Position::Top, Position::Bottom]
        };
        let objects = pairs
            .iter()
            .zip(positions)
            .map(|(&(glyph, colour), position)| ObjectSpec {
                glyph,
                colour,
                size: rng.pick(&Size::ALL, Size::Small),
                position,
                jitter: Jitter::sample(rng, PAIR_OFFSET_JITTER, PAIR_SCALE),
            })
            .collect();
        Self::with_background(rng, objects)
    }

    fn with_background(rng: &mut SplitMix64, objects: Vec<ObjectSpec>) -> Self {
        let free: Vec<Colour> = Colour::ALL
            .iter()
            .copied()
            .filter(|c| objects.iter().all(|o| o.colour != *c))
            .collect();
        Scene {
            background: rng.pick(&free, Colour::Grey),
            background_tint: sample_tint(rng),
            objects,
        }
    }

    /// The relation of a two-object scene's first object to its second, from their
    /// positions; `None` for a single object.
    pub fn relation(&self) -> Option<Relation> {
        match self.objects.as_slice() {
            [a, b] => {
                let ((ax, ay), (bx, by)) = (a.position.centre(), b.position.centre());
                Some(if (bx - ax).abs() >= (by - ay).abs() {
                    Relation::LeftOf
                } else {
                    Relation::Above
                })
            }
            _ => None,
        }
    }
}

fn sample_training_pair(rng: &mut SplitMix64) -> (Glyph, Colour) {
    let glyph = rng.pick(&Glyph::ALL, Glyph::ALL[0]);
    let colour = rng.pick(&training_colours(glyph), Colour::Red);
    (glyph, colour)
}

fn sample_held_out_pair(rng: &mut SplitMix64) -> (Glyph, Colour) {
    let pairs = held_out_pairs();
    rng.pick(&pairs, (Glyph::ALL[0], Colour::Red))
}

fn sample_any_pair(rng: &mut SplitMix64) -> (Glyph, Colour) {
    (
        rng.pick(&Glyph::ALL, Glyph::ALL[0]),
        rng.pick(&Colour::ALL, Colour::Red),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_never_overlap_and_stay_in_their_half() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..2000 {
            let scene = Scene::sample_pair(&mut rng, Split::Train);
            let [a, b] = scene.objects.as_slice() else {
                panic!("a pair has two objects");
            };
            let ((ax, ay), (bx, by)) = (a.centre(), b.centre());
            let distance = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt();
            assert!(distance > a.bounding_radius() + b.bounding_radius());
            assert!(scene.relation().is_some());
        }
    }

    #[test]
    fn background_differs_from_objects() {
        let mut rng = SplitMix64::new(4);
        for split in [Split::Train, Split::HeldOut] {
            for _ in 0..2000 {
                let scene = Scene::sample(&mut rng, split, 0.5);
                assert!(scene.objects.iter().all(|o| o.colour != scene.background));
                assert!(split.contains(&scene));
            }
        }
    }
}
