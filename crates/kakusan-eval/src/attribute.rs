//! The five things the classifier reads off a picture, one output head each, and the class
//! labels of an object (kakusan-data's `index()` of each attribute enum).

use kakusan_data::{Colour, Glyph, ObjectSpec, Position, Size};

/// One output head of the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Which shape or digit ([`Glyph`], 17 classes).
    Glyph,
    /// The object's colour ([`Colour`], 10 classes).
    Colour,
    /// The background colour ([`Colour`], 10 classes).
    Background,
    /// Which cell of the 3×3 layout ([`Position`], 9 classes).
    Position,
    /// Small or large ([`Size`], 2 classes).
    Size,
}

impl Attribute {
    /// Every head, in the order of [`Labels`] and the classifier's outputs.
    pub const ALL: [Attribute; 5] = [
        Attribute::Glyph,
        Attribute::Colour,
        Attribute::Background,
        Attribute::Position,
        Attribute::Size,
    ];

    /// The number of classes of this head.
    pub fn classes(self) -> usize {
        match self {
            Attribute::Glyph => Glyph::ALL.len(),
            Attribute::Colour | Attribute::Background => Colour::ALL.len(),
            Attribute::Position => Position::ALL.len(),
            Attribute::Size => Size::ALL.len(),
        }
    }

    /// Its name, also the head's weight prefix (`heads.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Glyph => "glyph",
            Attribute::Colour => "colour",
            Attribute::Background => "background",
            Attribute::Position => "position",
            Attribute::Size => "size",
        }
    }

    /// Its place in [`Attribute::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The class label of each head, in [`Attribute::ALL`] order.
pub type Labels = [u32; 5];

/// The labels of `object` drawn on `background`.
pub fn labels(object: &ObjectSpec, background: Colour) -> Labels {
    [
        object.glyph.index(),
        object.colour.index(),
        background.index(),
        object.position.index(),
        object.size.index(),
    ]
    .map(|i| i as u32)
}
