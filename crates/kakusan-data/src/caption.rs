//! Captions: English descriptions of a [`Scene`] from templates with synonyms and varied word
//! orders (for training), and one fixed template per scene ([`canonical_prompt`], for
//! evaluation prompts).
//!
//! Every word used is a whole word of the CLIP vocabulary (checked by the tests), captions are
//! lower case, and they stay far below CLIP's 77 tokens. Training captions always name each
//! object's glyph, and its colour unless asked not to ([`caption_naming_colour`]: a dataset's
//! colour omission, for one-object captions); they name its size, its position and the
//! background most of the time ([`SIZE_MENTION`], [`POSITION_MENTION`], [`BACKGROUND_MENTION`]),
//! so the model also learns prompts that leave things open.

use crate::attributes::{Colour, Glyph, Position, Shape, Size};
use crate::rng::SplitMix64;
use crate::scene::{ObjectSpec, Relation, Scene};

/// How often a training caption names an object's size.
pub const SIZE_MENTION: f32 = 0.7;
/// How often a training caption names a single object's position.
pub const POSITION_MENTION: f32 = 0.85;
/// How often a training caption names the background.
pub const BACKGROUND_MENTION: f32 = 0.9;

/// A training caption for `scene`, drawn with `rng` (deterministic given the rng's state).
pub fn caption(scene: &Scene, rng: &mut SplitMix64) -> String {
    caption_naming_colour(scene, rng, true)
}

/// [`caption`], or with `name_colour` false the same caption without the object's colour
/// ("a small circle in the top left on a blue background") when the scene has one object
/// (a pair's caption names both colours: they tell its objects apart). Both draw the same
/// random numbers, so every other word is the same either way.
pub fn caption_naming_colour(scene: &Scene, rng: &mut SplitMix64, name_colour: bool) -> String {
    let background = rng
        .chance(BACKGROUND_MENTION)
        .then(|| colour_word(rng, scene.background));
    let text = match (scene.objects.as_slice(), scene.relation()) {
        ([a, b], Some(relation)) => pair_caption(rng, a, b, relation, background.as_deref()),
        ([object, ..], _) => {
            let name_colour = name_colour || scene.objects.len() > 1;
            single_caption(rng, object, background.as_deref(), name_colour)
        }
        ([], _) => match &background {
            Some(colour) => with_article(&format!("empty {colour} background")),
            None => "an empty background".to_owned(),
        },
    };
    tidy(&text)
}

/// The evaluation prompt of `scene`: one fixed template naming every attribute, e.g.
/// "a large red 5 in the top left on a blue background" or
/// "a small red square left of a large green star on a black background".
pub fn canonical_prompt(scene: &Scene) -> String {
    let phrase = |o: &ObjectSpec| {
        with_article(&format!(
            "{} {} {}",
            o.size.name(),
            o.colour.name(),
            o.glyph.name()
        ))
    };
    let background = scene.background.name();
    let on_background = format!("on {}", with_article(&format!("{background} background")));
    let text = match (scene.objects.as_slice(), scene.relation()) {
        ([a, b], Some(relation)) => {
            let words = match relation {
                Relation::LeftOf => "left of",
                Relation::Above => "above",
            };
            format!("{} {words} {} {on_background}", phrase(a), phrase(b))
        }
        ([o, ..], _) => format!(
            "{} {} {on_background}",
            phrase(o),
            canonical_position(o.position)
        ),
        ([], _) => format!("an empty {background} background"),
    };
    tidy(&text)
}

/// The fixed position phrase of [`canonical_prompt`].
pub fn canonical_position(position: Position) -> &'static str {
    match position {
        Position::TopLeft => "in the top left",
        Position::Top => "at the top",
        Position::TopRight => "in the top right",
        Position::Left => "on the left",
        Position::Centre => "in the centre",
        Position::Right => "on the right",
        Position::BottomLeft => "in the bottom left",
        Position::Bottom => "at the bottom",
        Position::BottomRight => "in the bottom right",
    }
}

fn single_caption(
    rng: &mut SplitMix64,
    o: &ObjectSpec,
    background: Option<&str>,
    name_colour: bool,
) -> String {
    let size = rng
        .chance(SIZE_MENTION)
        .then(|| size_word(rng, o.size).to_owned());
    let position = rng
        .chance(POSITION_MENTION)
        .then(|| position_phrase(rng, o.position));
    let colour = colour_word(rng, o.colour);
    let colour = name_colour.then_some(colour.as_str());
    let noun = noun(rng, o.glyph);
    let adjectival = with_article(&join(&[size.as_deref(), colour, Some(&noun)]));
    let position = position.as_deref();
    match rng.below(6) {
        // "a small red circle in the top left on a blue background"
        0 => join(&[
            Some(&adjectival),
            position,
            background.map(|b| background_phrase(rng, b)).as_deref(),
        ]),
        // "blue background, small red circle in the top left"
        1 => {
            let object = if rng.chance(0.5) {
                adjectival.clone()
            } else {
                join(&[size.as_deref(), colour, Some(&noun)])
            };
            match background {
                Some(b) => join(&[Some(&format!("{b} background,")), Some(&object), position]),
                None => join(&[Some(&object), position]),
            }
        }
        // "the digit 5 in yellow, in the top left, on black"
        2 => {
            let head = match o.glyph {
                Glyph::Digit(_) if size.is_none() => format!("the {noun}"),
                _ => with_article(&join(&[size.as_deref(), Some(&noun)])),
            };
            let tail = background.map(|b| format!(", {}", background_phrase(rng, b)));
            join(&[
                Some(&match colour {
                    Some(colour) => format!("{head} in {colour}"),
                    None => head,
                }),
                position.map(|p| format!(", {p}")).as_deref(),
                tail.as_deref(),
            ])
        }
        // "in the top left, a red circle on blue"
        3 => {
            let tail = background.map(|b| background_phrase(rng, b));
            match position {
                Some(p) => join(&[Some(&format!("{p},")), Some(&adjectival), tail.as_deref()]),
                None => join(&[Some(&adjectival), tail.as_deref()]),
            }
        }
        // "a small red circle on a blue background, top left"
        4 => {
            let tail = background.map(|b| background_phrase(rng, b));
            join(&[
                Some(&adjectival),
                tail.as_deref(),
                position.map(|p| format!(", {p}")).as_deref(),
            ])
        }
        // "a picture of a small red circle in the top left against a blue background"
        _ => {
            let lead = rng.pick(
                &["a picture of", "an image of", "a drawing of"],
                "a picture of",
            );
            join(&[
                Some(lead),
                Some(&adjectival),
                position,
                background.map(|b| background_phrase(rng, b)).as_deref(),
            ])
        }
    }
}

fn pair_caption(
    rng: &mut SplitMix64,
    a: &ObjectSpec,
    b: &ObjectSpec,
    relation: Relation,
    background: Option<&str>,
) -> String {
    let mut phrase = |o: &ObjectSpec| {
        let size = rng
            .chance(SIZE_MENTION)
            .then(|| size_word(rng, o.size).to_owned());
        let colour = colour_word(rng, o.colour);
        let noun = noun(rng, o.glyph);
        with_article(&join(&[size.as_deref(), Some(&colour), Some(&noun)]))
    };
    let (first, second) = (phrase(a), phrase(b));
    // Name the objects in either order, with the relation word for that order.
    let swap = rng.chance(0.5);
    let (x, y) = if swap {
        (&second, &first)
    } else {
        (&first, &second)
    };
    let background_tail = background.map(|b| background_phrase(rng, b));
    match rng.below(3) {
        // "a red square left of a green star on a blue background"
        0 => {
            let word = relation_words(rng, relation, swap);
            join(&[Some(x), Some(word), Some(y), background_tail.as_deref()])
        }
        // "blue background, a red square above a green star"
        1 => {
            let word = relation_words(rng, relation, swap);
            match background {
                Some(b) => join(&[
                    Some(&format!("{b} background,")),
                    Some(x),
                    Some(word),
                    Some(y),
                ]),
                None => join(&[Some(x), Some(word), Some(y)]),
            }
        }
        // "a red square on the left and a green star on the right, on blue"
        _ => {
            let (near_first, near_second) = match relation {
                Relation::LeftOf => ("on the left", "on the right"),
                Relation::Above => ("at the top", "at the bottom"),
            };
            let (px, py) = if swap {
                (near_second, near_first)
            } else {
                (near_first, near_second)
            };
            join(&[
                Some(&format!("{x} {px} and {y} {py}")),
                background_tail.map(|t| format!(", {t}")).as_deref(),
            ])
        }
    }
}

fn relation_words(rng: &mut SplitMix64, relation: Relation, swapped: bool) -> &'static str {
    let choices: &[&'static str] = match (relation, swapped) {
        (Relation::LeftOf, false) => &["left of", "to the left of", "on the left of"],
        (Relation::LeftOf, true) => &["right of", "to the right of", "on the right of"],
        (Relation::Above, false) => &["above", "over", "on top of"],
        (Relation::Above, true) => &["below", "under", "beneath"],
    };
    rng.pick(choices, "beside")
}

fn colour_word(rng: &mut SplitMix64, colour: Colour) -> String {
    match colour {
        Colour::Grey => rng.pick(&["grey", "gray"], "grey").to_owned(),
        other => other.name().to_owned(),
    }
}

fn size_word(rng: &mut SplitMix64, size: Size) -> &'static str {
    match size {
        Size::Small => rng.pick(&["small", "little", "tiny"], "small"),
        Size::Large => rng.pick(&["large", "big"], "large"),
    }
}

/// The glyph's noun: a shape word or synonym, or a digit as "5", "five", "digit 5",
/// "number five", ….
fn noun(rng: &mut SplitMix64, glyph: Glyph) -> String {
    match glyph {
        Glyph::Shape(shape) => {
            let choices: &[&str] = match shape {
                Shape::Circle => &["circle", "circle", "disk"],
                Shape::Ring => &["ring", "ring", "donut"],
                Shape::Cross => &["cross", "cross", "plus sign"],
                Shape::Moon => &["moon", "crescent", "crescent moon"],
                other => &[other.name()],
            };
            rng.pick(choices, shape.name()).to_owned()
        }
        Glyph::Digit(digit) => {
            let (numeral, word) = (digit.numeral(), digit.word());
            match rng.below(6) {
                0 | 1 => numeral.to_owned(),
                2 => word.to_owned(),
                3 => format!("digit {numeral}"),
                4 => format!("number {numeral}"),
                _ => format!("number {word}"),
            }
        }
    }
}

fn position_phrase(rng: &mut SplitMix64, position: Position) -> String {
    let corner = |rng: &mut SplitMix64, vertical: [&str; 2], horizontal: &str| {
        let v = rng.pick(&vertical, vertical[0]);
        match rng.below(3) {
            0 => format!("in the {v} {horizontal}"),
            1 => format!("in the {v} {horizontal} corner"),
            _ => format!("at the {v} {horizontal}"),
        }
    };
    let pick = |rng: &mut SplitMix64, choices: &[&str]| rng.pick(choices, "").to_owned();
    match position {
        Position::TopLeft => corner(rng, ["top", "upper"], "left"),
        Position::TopRight => corner(rng, ["top", "upper"], "right"),
        Position::BottomLeft => corner(rng, ["bottom", "lower"], "left"),
        Position::BottomRight => corner(rng, ["bottom", "lower"], "right"),
        Position::Top => pick(rng, &["at the top", "near the top", "at the top middle"]),
        Position::Bottom => pick(
            rng,
            &["at the bottom", "near the bottom", "at the bottom middle"],
        ),
        Position::Left => pick(rng, &["on the left", "at the left", "on the left side"]),
        Position::Right => pick(rng, &["on the right", "at the right", "on the right side"]),
        Position::Centre => pick(rng, &["in the centre", "in the center", "in the middle"]),
    }
}

fn background_phrase(rng: &mut SplitMix64, colour: &str) -> String {
    match rng.below(4) {
        0 | 1 => format!("on {}", with_article(&format!("{colour} background"))),
        2 => format!("against {}", with_article(&format!("{colour} background"))),
        _ => format!("on {colour}"),
    }
}

/// `phrase` with "a" or "an" in front, by its first word's sound.
fn with_article(phrase: &str) -> String {
    let first = phrase.split_whitespace().next().unwrap_or("");
    let vowel_sound = first == "8"
        || first == "11"
        || first
            .chars()
            .next()
            .is_some_and(|c| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u'));
    let article = if vowel_sound { "an" } else { "a" };
    format!("{article} {phrase}")
}

/// The present parts, joined by single spaces.
fn join(parts: &[Option<&str>]) -> String {
    parts
        .iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Single spaces, no space before a comma, no leading comma or space.
fn tidy(text: &str) -> String {
    let spaced = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let joined = spaced.replace(" ,", ",");
    joined.trim_start_matches([',', ' ']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles() {
        assert_eq!(with_article("orange circle"), "an orange circle");
        assert_eq!(with_article("8"), "an 8");
        assert_eq!(with_article("eight"), "an eight");
        assert_eq!(with_article("red 5"), "a red 5");
        let mut rng = SplitMix64::new(0);
        for _ in 0..20 {
            let phrase = background_phrase(&mut rng, "orange");
            assert!(!phrase.contains(" a orange"), "{phrase}");
        }
    }

    /// The words of `text` with "an" counted as "a" (an omitted colour can change the article).
    fn words(text: &str) -> Vec<String> {
        let mut w: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(|w| if w == "an" { "a".into() } else { w.into() })
            .collect();
        w.sort();
        w
    }

    #[test]
    fn a_caption_without_colour_drops_only_the_colour() {
        use crate::split::Split;
        for i in 0..400u64 {
            let scene = Scene::sample(&mut SplitMix64::new(i), Split::Train, 0.3);
            let mut rng = SplitMix64::new(1000 + i);
            let with = caption(&scene, &mut rng.clone());
            let without = caption_naming_colour(&scene, &mut rng, false);
            if scene.objects.len() != 1 {
                assert_eq!(with, without, "a pair's caption names its colours");
                continue;
            }
            // The same words less the colour word (and the "in" of "the 5 in red").
            let mut rest = words(&with);
            for w in words(&without) {
                let at = rest.iter().position(|r| *r == w);
                assert!(at.is_some(), "{without:?} has {w:?}, {with:?} has not");
                rest.remove(at.unwrap_or(0));
            }
            let colour = colour_word(&mut SplitMix64::new(0), scene.objects[0].colour);
            let colour_words = ["grey", "gray", colour.as_str()];
            assert!(
                rest.iter().any(|w| colour_words.contains(&w.as_str()))
                    && rest
                        .iter()
                        .all(|w| colour_words.contains(&w.as_str()) || w == "in"),
                "{with:?} -> {without:?} dropped {rest:?}"
            );
        }
    }

    #[test]
    fn tidy_fixes_commas() {
        assert_eq!(tidy("a red 5 , on blue"), "a red 5, on blue");
        assert_eq!(tidy("  a  b "), "a b");
    }
}
