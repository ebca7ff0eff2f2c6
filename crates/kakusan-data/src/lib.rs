//! Procedural training data for kakusan-mini: one- and two-object scenes of shapes and digits
//! (drawn in code, no font files) in colours, sizes and positions on a background, with jitter,
//! rendered anti-aliased and captioned from templates with synonyms and word orders.
//!
//! Everything is deterministic: [`Dataset::sample`] depends only on `(seed, split, index)`, never
//! on the order samples are asked for, so training can resume and loading can run in parallel.
//! [`Split::HeldOut`] holds attribute combinations (glyph × colour pairs) that
//! [`Split::Train`] never shows; see [`split`] for the rule.
//!
//! Modules: [`attributes`] (the labelled vocabulary), [`scene`] (what is in a picture and how it
//! is sampled), [`mod@render`] (rasterisation), [`stroke_font`] (the digits), [`mod@caption`]
//! (templates), [`split`] (held-out combinations), [`dataset`] (indexed samples),
//! [`preview`] (captioned grid PNG), [`labelled_grid`] (pictures under labels), [`bitmap_font`] (the preview's text), [`rng`].

pub mod attributes;
pub mod bitmap_font;
pub mod caption;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod labelled_grid;
pub mod preview;
pub mod render;
pub mod rng;
pub mod scene;
pub mod split;
pub mod stroke_font;

pub use attributes::{Colour, Digit, Glyph, Position, Shape, Size};
pub use caption::{canonical_prompt, caption, caption_naming_colour};
pub use dataset::{Dataset, Sample};
pub use error::DataError;
pub use folder::write_captioned_folder;
pub use labelled_grid::labelled_grid;
pub use preview::{preview_grid, write_preview};
pub use render::render;
pub use rng::SplitMix64;
pub use scene::{Jitter, ObjectSpec, Relation, Scene};
pub use split::Split;
