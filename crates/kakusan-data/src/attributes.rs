//! The labelled vocabulary of a scene: glyphs (shapes and digits), colours, sizes and positions.
//!
//! Every attribute has `ALL` (the fixed order of its classes), `index()` / `from_index()` (the
//! class label a classifier predicts; stable across versions: new classes are only appended),
//! `name()` (the canonical English word, which is also its `Display`). Backgrounds use the
//! same [`Colour`] palette; an object's colour always differs from its background.

use std::fmt;

/// A geometric shape, drawn analytically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// A filled disk.
    Circle,
    /// A filled square.
    Square,
    /// A filled triangle pointing up.
    Triangle,
    /// A filled five-pointed star.
    Star,
    /// An annulus (a disk with a round hole).
    Ring,
    /// A plus-shaped cross with equal arms.
    Cross,
    /// A filled heart.
    Heart,
    /// A crescent moon opening to the right: a disk with an offset disk cut away. A *novel*
    /// shape ([`Shape::NOVEL`]): the base training data never draws it, so it is what a
    /// fine-tuning demonstration teaches the model; the evaluator knows it.
    Moon,
}

impl Shape {
    /// Every shape of the base data, in label order.
    pub const ALL: [Shape; 7] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Ring,
        Shape::Cross,
        Shape::Heart,
    ];

    /// The shapes the base data never draws (see [`Glyph::NOVEL`]).
    pub const NOVEL: [Shape; 1] = [Shape::Moon];

    /// The canonical English word.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Ring => "ring",
            Shape::Cross => "cross",
            Shape::Heart => "heart",
            Shape::Moon => "moon",
        }
    }

    /// The class label among shapes: base shapes `0..Shape::ALL.len()`, novel shapes after
    /// them.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The shape of a class label (base or novel).
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.iter().chain(&Self::NOVEL).nth(index).copied()
    }
}

/// A decimal digit 0–9, drawn with kakusan's stroke font.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digit(u8);

impl Digit {
    /// Every digit, 0 to 9.
    pub const ALL: [Digit; 10] = [
        Digit(0),
        Digit(1),
        Digit(2),
        Digit(3),
        Digit(4),
        Digit(5),
        Digit(6),
        Digit(7),
        Digit(8),
        Digit(9),
    ];

    /// The digit `value`, or `None` above 9.
    pub fn new(value: u8) -> Option<Self> {
        (value <= 9).then_some(Digit(value))
    }

    /// Its value, 0–9.
    pub fn value(self) -> u8 {
        self.0
    }

    /// Its English number word ("zero" … "nine").
    pub fn word(self) -> &'static str {
        const WORDS: [&str; 10] = [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        ];
        WORDS[usize::from(self.0 % 10)]
    }

    /// Its numeral ("0" … "9").
    pub fn numeral(self) -> &'static str {
        const NUMERALS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        NUMERALS[usize::from(self.0 % 10)]
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.numeral())
    }
}

/// What an object is: a shape or a digit. Class labels: the shapes first, then digits 0–9,
/// then the novel glyphs ([`Glyph::EVALUATED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Glyph {
    /// A geometric shape.
    Shape(Shape),
    /// A digit.
    Digit(Digit),
}

impl Glyph {
    /// Every glyph, in label order: the seven shapes, then the digits 0–9.
    pub const ALL: [Glyph; 17] = [
        Glyph::Shape(Shape::Circle),
        Glyph::Shape(Shape::Square),
        Glyph::Shape(Shape::Triangle),
        Glyph::Shape(Shape::Star),
        Glyph::Shape(Shape::Ring),
        Glyph::Shape(Shape::Cross),
        Glyph::Shape(Shape::Heart),
        Glyph::Digit(Digit(0)),
        Glyph::Digit(Digit(1)),
        Glyph::Digit(Digit(2)),
        Glyph::Digit(Digit(3)),
        Glyph::Digit(Digit(4)),
        Glyph::Digit(Digit(5)),
        Glyph::Digit(Digit(6)),
        Glyph::Digit(Digit(7)),
        Glyph::Digit(Digit(8)),
        Glyph::Digit(Digit(9)),
    ];

    /// Glyphs the base training data never draws (the procedural data draws them only when
    /// asked, [`crate::Dataset::with_novel_glyphs`]): fine-tuning demonstrations teach them to
    /// a trained model, and the evaluator, which knows them, measures whether it learned.
    pub const NOVEL: [Glyph; 1] = [Glyph::Shape(Shape::Moon)];

    /// The evaluator's glyph classes in label order: [`Glyph::ALL`], then [`Glyph::NOVEL`].
    pub const EVALUATED: [Glyph; 18] = {
        let mut all = [Glyph::Shape(Shape::Circle); 18];
        let mut i = 0;
        while i < Glyph::ALL.len() {
            all[i] = Glyph::ALL[i];
            i += 1;
        }
        while i < all.len() {
            all[i] = Glyph::NOVEL[i - Glyph::ALL.len()];
            i += 1;
        }
        all
    };

    /// Whether the base data draws this glyph (false for [`Glyph::NOVEL`]).
    pub fn is_base(self) -> bool {
        !Self::NOVEL.contains(&self)
    }

    /// The glyph called `name` (a shape word or a digit's numeral), base or novel.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::EVALUATED
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(name))
    }

    /// The canonical English name: the shape's word, or the digit's numeral.
    pub fn name(self) -> &'static str {
        match self {
            Glyph::Shape(shape) => shape.name(),
            Glyph::Digit(digit) => digit.numeral(),
        }
    }

    /// The class label, `0..Glyph::EVALUATED.len()`: base glyphs below `Glyph::ALL.len()`.
    pub fn index(self) -> usize {
        match self {
            Glyph::Shape(shape) if shape.index() >= Shape::ALL.len() => {
                Glyph::ALL.len() + shape.index() - Shape::ALL.len()
            }
            Glyph::Shape(shape) => shape.index(),
            Glyph::Digit(digit) => Shape::ALL.len() + usize::from(digit.value()),
        }
    }

    /// The glyph of a class label.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::EVALUATED.get(index).copied()
    }
}

/// A colour of the palette, for objects and backgrounds alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    /// Red.
    Red,
    /// Orange.
    Orange,
    /// Yellow.
    Yellow,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Purple.
    Purple,
    /// Pink.
    Pink,
    /// White.
    White,
    /// Black.
    Black,
    /// Grey.
    Grey,
}

impl Colour {
    /// Every colour, in label order.
    pub const ALL: [Colour; 10] = [
        Colour::Red,
        Colour::Orange,
        Colour::Yellow,
        Colour::Green,
        Colour::Blue,
        Colour::Purple,
        Colour::Pink,
        Colour::White,
        Colour::Black,
        Colour::Grey,
    ];

    /// The canonical English word (British spelling for grey).
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
            Colour::Pink => "pink",
            Colour::White => "white",
            Colour::Black => "black",
            Colour::Grey => "grey",
        }
    }

    /// The nominal sRGB value. Chosen so every two colours are far apart (the closest pair,
    /// orange and yellow or red and pink, still differ by more than 90 in some channel), so
    /// a classifier and a person can tell them apart after jitter and generation noise.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 35],
            Colour::Orange => [250, 140, 20],
            Colour::Yellow => [250, 235, 40],
            Colour::Green => [30, 170, 60],
            Colour::Blue => [35, 70, 220],
            Colour::Purple => [125, 30, 180],
            Colour::Pink => [250, 150, 205],
            Colour::White => [245, 245, 245],
            Colour::Black => [15, 15, 15],
            Colour::Grey => [128, 128, 128],
        }
    }

    /// The class label, `0..Colour::ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The colour of a class label.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }
}

/// How big an object is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// About a quarter of the picture across.
    Small,
    /// About two fifths of the picture across.
    Large,
}

impl Size {
    /// Both sizes, in label order.
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    /// The canonical English word.
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// The nominal radius (half the extent of the glyph's box) as a fraction of the picture's
    /// side, before jitter.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 0.13,
            Size::Large => 0.2,
        }
    }

    /// The class label, `0..Size::ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The size of a class label.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }
}

/// Where an object sits: one of nine cells of a 3×3 layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    /// Upper left corner.
    TopLeft,
    /// Top edge, centred horizontally.
    Top,
    /// Upper right corner.
    TopRight,
    /// Left edge, centred vertically.
    Left,
    /// The middle.
    Centre,
    /// Right edge, centred vertically.
    Right,
    /// Lower left corner.
    BottomLeft,
    /// Bottom edge, centred horizontally.
    Bottom,
    /// Lower right corner.
    BottomRight,
}

/// The off-centre coordinate of the 3×3 layout, as a fraction of the side; the others are
/// `0.5` and `1 - EDGE`.
const EDGE: f32 = 0.26;

impl Position {
    /// Every position, in label order (row by row, top to bottom).
    pub const ALL: [Position; 9] = [
        Position::TopLeft,
        Position::Top,
        Position::TopRight,
        Position::Left,
        Position::Centre,
        Position::Right,
        Position::BottomLeft,
        Position::Bottom,
        Position::BottomRight,
    ];

    /// The canonical English words.
    pub fn name(self) -> &'static str {
        match self {
            Position::TopLeft => "top left",
            Position::Top => "top",
            Position::TopRight => "top right",
            Position::Left => "left",
            Position::Centre => "centre",
            Position::Right => "right",
            Position::BottomLeft => "bottom left",
            Position::Bottom => "bottom",
            Position::BottomRight => "bottom right",
        }
    }

    /// The nominal centre `(x, y)` as fractions of the picture's side (y grows downwards).
    pub fn centre(self) -> (f32, f32) {
        let coordinate = |cell: usize| match cell {
            0 => EDGE,
            1 => 0.5,
            _ => 1.0 - EDGE,
        };
        let index = self.index();
        (coordinate(index % 3), coordinate(index / 3))
    }

    /// The position whose nominal centre is nearest to `(x, y)` (fractions of the side).
    pub fn nearest(x: f32, y: f32) -> Self {
        let cell = |v: f32| {
            if v < (EDGE + 0.5) / 2.0 {
                0
            } else if v < (1.5 - EDGE) / 2.0 {
                1
            } else {
                2
            }
        };
        Self::ALL[cell(y) * 3 + cell(x)]
    }

    /// The class label, `0..Position::ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The position of a class label.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }
}

macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}

display_by_name!(Shape, Glyph, Colour, Size, Position);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip() {
        for (i, g) in Glyph::EVALUATED.iter().enumerate() {
            assert_eq!(g.index(), i);
            assert_eq!(Glyph::from_index(i), Some(*g));
            assert_eq!(Glyph::from_name(g.name()), Some(*g));
            assert_eq!(g.is_base(), i < Glyph::ALL.len());
        }
        assert_eq!(&Glyph::EVALUATED[..Glyph::ALL.len()], &Glyph::ALL);
        for (i, s) in Shape::ALL.iter().chain(&Shape::NOVEL).enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Shape::from_index(i), Some(*s));
        }
        assert_eq!(Glyph::from_name(" MOON "), Some(Glyph::Shape(Shape::Moon)));
        for (i, c) in Colour::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Colour::from_index(i), Some(*c));
        }
        for (i, p) in Position::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(Position::from_index(i), Some(*p));
            let (x, y) = p.centre();
            assert_eq!(Position::nearest(x, y), *p);
        }
        for (i, s) in Size::ALL.iter().enumerate() {
            assert_eq!(Size::from_index(i), Some(*s));
        }
        assert_eq!(Glyph::from_index(Glyph::EVALUATED.len()), None);
        assert_eq!(Digit::new(10), None);
    }

    #[test]
    fn palette_colours_are_far_apart() {
        // Every pair must differ by at least 90 in some channel, so ±8 of tint jitter on both
        // sides never makes two colours confusable.
        for (i, a) in Colour::ALL.iter().enumerate() {
            for b in &Colour::ALL[i + 1..] {
                let (x, y) = (a.rgb(), b.rgb());
                let max_diff = (0..3)
                    .map(|c| (i32::from(x[c]) - i32::from(y[c])).abs())
                    .max()
                    .unwrap_or(0);
                assert!(max_diff >= 90, "{a} and {b} differ by only {max_diff}");
            }
        }
    }
}
