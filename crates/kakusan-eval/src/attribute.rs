//! The five things the classifier reads off a picture, one output head each, and the class
//! labels of an object (kakusan-data's `index()` of each attribute enum).

use kakusan_data::{Colour, Glyph, ObjectSpec, Position, Size};

/// One output head of the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Which shape or digit ([`Glyph::EVALUATED`], 18 classes: the base glyphs and the
    /// novel ones that fine-tuning demonstrations teach).
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
            Attribute::Glyph => Glyph::EVALUATED.len(),
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

    /// The head called `name` (as [`Attribute::name`] spells it).
    pub fn from_name(name: &str) -> Option<Attribute> {
        Attribute::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The class names of this head in label order: shape words and numerals for the
    /// glyph, colour words, position and size names as kakusan-data spells them.
    pub fn class_names(self) -> Vec<&'static str> {
        match self {
            Attribute::Glyph => Glyph::EVALUATED.iter().map(|g| g.name()).collect(),
            Attribute::Colour | Attribute::Background => {
                Colour::ALL.iter().map(|c| c.name()).collect()
            }
            Attribute::Position => Position::ALL.iter().map(|p| p.name()).collect(),
            Attribute::Size => Size::ALL.iter().map(|s| s.name()).collect(),
        }
    }

    /// The label of the class called `name` (case-insensitive), if this head has one.
    pub fn class_index(self, name: &str) -> Option<usize> {
        let name = name.trim();
        self.class_names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_class_labels_round_trip() {
        for a in Attribute::ALL {
            assert_eq!(Attribute::from_name(a.name()), Some(a));
            let names = a.class_names();
            assert_eq!(names.len(), a.classes());
            for (i, n) in names.iter().enumerate() {
                assert_eq!(a.class_index(n), Some(i), "{a} {n}");
            }
        }
        assert_eq!(
            Attribute::Glyph.class_index("5"),
            Some(Glyph::ALL.len() - 5)
        );
        assert_eq!(Attribute::Glyph.class_index("moon"), Some(Glyph::ALL.len()));
        assert_eq!(
            Attribute::Colour.class_index("RED"),
            Attribute::Colour.class_index("red")
        );
        assert_eq!(Attribute::Colour.class_index("mauve"), None);
        assert_eq!(Attribute::from_name("shape"), None);
    }
}
