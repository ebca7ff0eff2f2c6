//! The held-out split: glyph × colour combinations that training never shows, so evaluation
//! can measure whether the model composes attributes it has only seen apart.
//!
//! **The rule.** The pair (glyph, colour) is held out when
//! `(glyph.index() + 3 · colour.index()) mod 8 == 5`. With 17 glyphs and 10 colours this holds
//! out 21 of the 170 pairs (12.4 %); every glyph keeps at least 8 training colours and every
//! colour at least 14 training glyphs (checked by the tests), so each attribute is well learnt
//! on its own. Backgrounds, sizes and positions are not split.
//!
//! A scene belongs to [`Split::Train`] when none of its objects uses a held-out pair, and to
//! [`Split::HeldOut`] when at least one does (the other object of a pair may be anything).

use crate::attributes::{Colour, Glyph};
use crate::scene::Scene;

/// Which part of the attribute space a dataset draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Scenes without any held-out glyph × colour pair.
    Train,
    /// Scenes with at least one held-out glyph × colour pair.
    HeldOut,
}

/// The modulus of the rule; about `1 / HELD_OUT_MODULUS` of the pairs are held out.
const HELD_OUT_MODULUS: usize = 8;
/// The residue that marks a held-out pair.
const HELD_OUT_RESIDUE: usize = 5;

/// Whether `glyph` in `colour` is held out of training.
pub fn is_held_out_pair(glyph: Glyph, colour: Colour) -> bool {
    (glyph.index() + 3 * colour.index()) % HELD_OUT_MODULUS == HELD_OUT_RESIDUE
}

/// Every held-out pair, in label order.
pub fn held_out_pairs() -> Vec<(Glyph, Colour)> {
    Glyph::ALL
        .iter()
        .flat_map(|&g| Colour::ALL.iter().map(move |&c| (g, c)))
        .filter(|&(g, c)| is_held_out_pair(g, c))
        .collect()
}

/// The colours `glyph` may have in training.
pub fn training_colours(glyph: Glyph) -> Vec<Colour> {
    Colour::ALL
        .iter()
        .copied()
        .filter(|&c| !is_held_out_pair(glyph, c))
        .collect()
}

impl Split {
    /// A short stable tag, used to derive per-sample random streams and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::HeldOut => "held-out",
        }
    }

    /// Whether `scene` belongs to this split (see the module docs for the rule).
    pub fn contains(self, scene: &Scene) -> bool {
        let any_held_out = scene
            .objects
            .iter()
            .any(|o| is_held_out_pair(o.glyph, o.colour));
        match self {
            Split::Train => !any_held_out,
            Split::HeldOut => any_held_out,
        }
    }

    /// The split a scene belongs to.
    pub fn of(scene: &Scene) -> Split {
        if Split::HeldOut.contains(scene) {
            Split::HeldOut
        } else {
            Split::Train
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_an_eighth_is_held_out_and_every_attribute_stays_in_training() {
        let held = held_out_pairs();
        assert_eq!(held.len(), 21, "the module docs state 21 pairs");
        for g in Glyph::ALL {
            assert!(training_colours(g).len() >= 8, "{g}");
        }
        for c in Colour::ALL {
            let glyphs = Glyph::ALL
                .iter()
                .filter(|&&g| !is_held_out_pair(g, c))
                .count();
            assert!(glyphs >= 14, "{c}: {glyphs}");
        }
    }
}
