//! An infinite, indexed dataset: sample `i` of a `(seed, split)` is always the same picture,
//! scene and caption, whatever order samples are asked for in, so training can resume at any
//! step and loaders can work in parallel.

use image::RgbImage;

use crate::attributes::{Glyph, Size};
use crate::caption::caption_naming_colour;
use crate::error::DataError;
use crate::render::render;
use crate::rng::SplitMix64;
use crate::scene::Scene;
use crate::split::Split;

/// The smallest picture side the glyphs stay legible at.
pub const MIN_IMAGE_SIZE: u32 = 16;
/// The picture side kakusan-mini trains on.
pub const DEFAULT_IMAGE_SIZE: u32 = 64;
/// The default share of two-object scenes.
pub const DEFAULT_TWO_OBJECT_FRACTION: f32 = 0.25;

/// The key of the side stream ([`Dataset::side_stream`]) that draws novel glyphs ("novel").
const NOVEL_GLYPH_KEY: u64 = 0x006e_6f76_656c;
/// The key of the side stream that decides colour omission ("colour").
const COLOUR_OMISSION_KEY: u64 = 0x636f_6c6f_7572;
/// The key of the side stream that redraws object sizes ("size").
const SMALL_FRACTION_KEY: u64 = 0x7369_7a65;

/// One labelled training example.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The rendered picture.
    pub image: RgbImage,
    /// Its caption (a training caption: random template and synonyms).
    pub caption: String,
    /// What the picture shows: the labels.
    pub scene: Scene,
}

/// Procedural samples of one split, addressed by index.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    seed: u64,
    split: Split,
    image_size: u32,
    two_object_fraction: f32,
    novel_glyph_fraction: f32,
    colour_omission: f32,
    small_fraction: Option<f32>,
}

impl Dataset {
    /// A dataset of `split` drawn from `seed`, with `image_size`×`image_size` pictures and
    /// [`DEFAULT_TWO_OBJECT_FRACTION`] of two-object scenes.
    pub fn new(seed: u64, split: Split, image_size: u32) -> Result<Self, DataError> {
        if image_size < MIN_IMAGE_SIZE {
            return Err(DataError::ImageSizeTooSmall {
                size: image_size,
                minimum: MIN_IMAGE_SIZE,
            });
        }
        Ok(Self {
            seed,
            split,
            image_size,
            two_object_fraction: DEFAULT_TWO_OBJECT_FRACTION,
            novel_glyph_fraction: 0.0,
            colour_omission: 0.0,
            small_fraction: None,
        })
    }

    /// The same dataset with `fraction` of two-object scenes (0 for single objects only, as a
    /// classifier wants).
    pub fn with_two_object_fraction(mut self, fraction: f32) -> Result<Self, DataError> {
        self.two_object_fraction = probability(fraction, DataError::BadTwoObjectFraction)?;
        Ok(self)
    }

    /// The same dataset with each object's glyph replaced, with probability `fraction`, by a
    /// glyph of [`Glyph::NOVEL`] (0, the default: the base data, which never draws them; 1:
    /// novel glyphs only, a fine-tuning set). The replacement has its own random stream, so
    /// every other attribute of sample `i` stays what it is without novel glyphs. (On the
    /// held-out split a replaced object no longer forms a held-out glyph and colour pair.)
    pub fn with_novel_glyphs(mut self, fraction: f32) -> Result<Self, DataError> {
        self.novel_glyph_fraction = probability(fraction, DataError::BadNovelGlyphFraction)?;
        Ok(self)
    }

    /// The same dataset whose one-object captions leave the object's colour out with
    /// probability `fraction` ("a small circle on blue"; 0, the default: always named), so
    /// the glyph's words are also seen without a colour beside them. The choice has its own
    /// random stream: picture, scene and every other word of sample `i` stay the same.
    pub fn with_colour_omission(mut self, fraction: f32) -> Result<Self, DataError> {
        self.colour_omission = probability(fraction, DataError::BadColourOmission)?;
        Ok(self)
    }

    /// The same dataset with each object small with probability `fraction` and large
    /// otherwise (without it, the default, sizes are even). The sizes are redrawn from their
    /// own random stream, so every other attribute of sample `i` stays what it is; the
    /// caption names the redrawn size.
    pub fn with_small_fraction(mut self, fraction: f32) -> Result<Self, DataError> {
        self.small_fraction = Some(probability(fraction, DataError::BadSmallFraction)?);
        Ok(self)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The picture side in pixels.
    pub fn image_size(&self) -> u32 {
        self.image_size
    }

    /// The share of two-object scenes.
    pub fn two_object_fraction(&self) -> f32 {
        self.two_object_fraction
    }

    /// The random stream of sample `index`: a function of (seed, split, index) only.
    fn rng(&self, index: u64) -> SplitMix64 {
        let split_key = match self.split {
            Split::Train => 0x0074_7261_696e, // "train"
            Split::HeldOut => 0x6865_6c64,    // "held"
        };
        SplitMix64::for_keys(&[self.seed, split_key, index])
    }

    /// A random stream of sample `index` for one optional choice (novel glyphs, colour
    /// omission), keyed by `key`: the first word of the sample's stream and the key, so that
    /// switching the choice on leaves the main stream, and with it everything else, as it is.
    fn side_stream(&self, index: u64, key: u64) -> SplitMix64 {
        SplitMix64::for_keys(&[self.rng(index).next_u64(), key])
    }

    /// The scene of sample `index` (cheap: no rendering).
    pub fn scene(&self, index: u64) -> Scene {
        self.scene_from(&mut self.rng(index), index)
    }

    fn scene_from(&self, rng: &mut SplitMix64, index: u64) -> Scene {
        let mut scene = Scene::sample(rng, self.split, self.two_object_fraction);
        if self.novel_glyph_fraction > 0.0 {
            let mut novel = self.side_stream(index, NOVEL_GLYPH_KEY);
            for object in &mut scene.objects {
                if novel.chance(self.novel_glyph_fraction) {
                    object.glyph = novel.pick(&Glyph::NOVEL, Glyph::NOVEL[0]);
                }
            }
        }
        if let Some(fraction) = self.small_fraction {
            let mut sizes = self.side_stream(index, SMALL_FRACTION_KEY);
            for object in &mut scene.objects {
                object.size = if sizes.chance(fraction) {
                    Size::Small
                } else {
                    Size::Large
                };
            }
        }
        scene
    }

    /// Sample `index`.
    pub fn sample(&self, index: u64) -> Sample {
        let mut rng = self.rng(index);
        let scene = self.scene_from(&mut rng, index);
        let omit_colour = self.colour_omission > 0.0
            && self
                .side_stream(index, COLOUR_OMISSION_KEY)
                .chance(self.colour_omission);
        let caption = caption_naming_colour(&scene, &mut rng, !omit_colour);
        let image = render(&scene, self.image_size);
        Sample {
            image,
            caption,
            scene,
        }
    }

    /// Samples `start`, `start + 1`, …, `start + n - 1`.
    pub fn batch(&self, start: u64, n: usize) -> Vec<Sample> {
        (0..n as u64)
            .map(|i| self.sample(start.wrapping_add(i)))
            .collect()
    }
}

/// `x` when it is a probability (0 to 1, both included), else the setting's own error.
fn probability(x: f32, error: fn(f32) -> DataError) -> Result<f32, DataError> {
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(error(x))
    }
}
