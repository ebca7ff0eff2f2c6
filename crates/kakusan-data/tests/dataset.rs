//! Properties of the generated data: determinism, the held-out split, coverage of every
//! attribute, colours, where objects land, captions against the real CLIP vocabulary, and
//! distinct glyphs.

use std::collections::HashSet;
use std::path::PathBuf;

use kakusan_data::render::coverage;
use kakusan_data::split::is_held_out_pair;
use kakusan_data::{
    canonical_prompt, render, Colour, DataError, Dataset, Glyph, Jitter, ObjectSpec, Position,
    Scene, Size, Split,
};
use kakusan_models::clip::Tokenizer;

const SIZE: u32 = 64;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn samples_are_deterministic_and_order_independent() {
    let a = Dataset::new(11, Split::Train, SIZE).unwrap();
    let b = Dataset::new(11, Split::Train, SIZE).unwrap();
    // Ask in different orders: sample i must not depend on what was asked before.
    let forward: Vec<_> = (0..20).map(|i| a.sample(i)).collect();
    let backward: Vec<_> = (0..20).rev().map(|i| b.sample(i)).collect();
    for (x, y) in forward.iter().zip(backward.iter().rev()) {
        assert_eq!(x.image.as_raw(), y.image.as_raw());
        assert_eq!(x.caption, y.caption);
        assert_eq!(x.scene, y.scene);
    }
    let batch = a.batch(5, 3);
    assert_eq!(batch[0].image.as_raw(), forward[5].image.as_raw());
    assert_eq!(batch[2].caption, forward[7].caption);
    assert_eq!(a.scene(9), forward[9].scene);
    // Neighbouring indices, another seed and the other split give other pictures.
    for i in 0..19 {
        assert_ne!(forward[i].image.as_raw(), forward[i + 1].image.as_raw());
    }
    let other_seed = Dataset::new(12, Split::Train, SIZE).unwrap().sample(0);
    assert_ne!(other_seed.image.as_raw(), forward[0].image.as_raw());
    let held = Dataset::new(11, Split::HeldOut, SIZE).unwrap().sample(0);
    assert_ne!(held.image.as_raw(), forward[0].image.as_raw());
}

#[test]
fn bad_arguments_are_errors() {
    assert!(Dataset::new(0, Split::Train, 8).is_err());
    let d = Dataset::new(0, Split::Train, SIZE).unwrap();
    assert!(matches!(
        d.clone().with_two_object_fraction(1.5),
        Err(DataError::BadTwoObjectFraction(_))
    ));
    assert!(d.clone().with_two_object_fraction(f32::NAN).is_err());
    assert!(matches!(
        d.clone().with_novel_glyphs(-0.5),
        Err(DataError::BadNovelGlyphFraction(_))
    ));
    assert!(matches!(
        d.clone().with_colour_omission(-0.1),
        Err(DataError::BadColourOmission(_))
    ));
    assert!(d.clone().with_colour_omission(f32::NAN).is_err());
    assert!(matches!(
        d.clone().with_small_fraction(1.01),
        Err(DataError::BadSmallFraction(_))
    ));
    assert!(d.clone().with_small_fraction(f32::NAN).is_err());
    // Both ends are probabilities.
    assert!(d.clone().with_novel_glyphs(0.0).is_ok());
    assert!(d.with_colour_omission(1.0).is_ok());
}

#[test]
fn colour_omission_changes_only_some_one_object_captions() {
    let base = Dataset::new(5, Split::Train, SIZE).unwrap();
    let omitting = base.clone().with_colour_omission(0.3).unwrap();
    let (mut dropped, mut singles) = (0, 0);
    for i in 0..300 {
        let (a, b) = (base.sample(i), omitting.sample(i));
        assert_eq!(
            a.image.as_raw(),
            b.image.as_raw(),
            "sample {i}: the same picture"
        );
        assert_eq!(a.scene, b.scene, "sample {i}: the same scene");
        if a.scene.objects.len() != 1 {
            assert_eq!(a.caption, b.caption, "sample {i}: a pair names its colours");
            continue;
        }
        singles += 1;
        if a.caption != b.caption {
            dropped += 1;
            assert!(
                b.caption.len() < a.caption.len(),
                "{} -> {}",
                a.caption,
                b.caption
            );
        }
    }
    // 30 % of ~225 one-object captions: ~68, standard deviation ~7.
    let share = dropped as f64 / singles as f64;
    assert!(
        (0.2..0.4).contains(&share),
        "{dropped} of {singles} captions lost their colour"
    );
    // Deterministic, and nothing changes at 0.
    assert_eq!(omitting.sample(7).caption, omitting.sample(7).caption);
    let none = base.clone().with_colour_omission(0.0).unwrap();
    assert_eq!(none.sample(9).caption, base.sample(9).caption);
}

#[test]
fn small_fraction_redraws_only_the_sizes() {
    let base = Dataset::new(5, Split::Train, SIZE).unwrap();
    let mostly_small = base.clone().with_small_fraction(0.75).unwrap();
    let (mut small, mut objects, mut resized) = (0, 0, 0);
    for i in 0..300 {
        let (a, b) = (base.scene(i), mostly_small.scene(i));
        assert_eq!(a.objects.len(), b.objects.len(), "scene {i}");
        assert_eq!(a.background, b.background, "scene {i}");
        for (x, y) in a.objects.iter().zip(&b.objects) {
            let mut same_but_size = *y;
            same_but_size.size = x.size;
            assert_eq!(*x, same_but_size, "scene {i}: only the size may change");
            objects += 1;
            small += (y.size == Size::Small) as usize;
            resized += (y.size != x.size) as usize;
        }
    }
    // 75 % of ~340 objects: ~255, standard deviation ~8.
    let share = small as f64 / objects as f64;
    assert!((0.65..0.85).contains(&share), "{small} of {objects} small");
    assert!(resized > 0);
    // The picture and the caption follow the redrawn size.
    for i in 0..40 {
        let s = mostly_small.sample(i);
        assert_eq!(s.scene, mostly_small.scene(i));
        if let [o] = s.scene.objects.as_slice() {
            let says_large = s.caption.contains("large") || s.caption.contains("big ");
            let says_small = ["small", "little", "tiny"]
                .iter()
                .any(|w| s.caption.contains(w));
            match o.size {
                Size::Small => assert!(!says_large, "{}", s.caption),
                Size::Large => assert!(!says_small, "{}", s.caption),
            }
        }
    }
    // Both ends.
    let all_small = base.clone().with_small_fraction(1.0).unwrap();
    let all_large = base.with_small_fraction(0.0).unwrap();
    for i in 0..50 {
        assert!(all_small
            .scene(i)
            .objects
            .iter()
            .all(|o| o.size == Size::Small));
        assert!(all_large
            .scene(i)
            .objects
            .iter()
            .all(|o| o.size == Size::Large));
    }
}

#[test]
fn held_out_pairs_never_reach_training_and_always_reach_held_out() {
    let train = Dataset::new(1, Split::Train, SIZE).unwrap();
    let held = Dataset::new(1, Split::HeldOut, SIZE).unwrap();
    let mut held_pairs_seen = HashSet::new();
    for i in 0..5000 {
        let scene = train.scene(i);
        for o in &scene.objects {
            assert!(!is_held_out_pair(o.glyph, o.colour), "train {i}: {o:?}");
        }
        let scene = held.scene(i);
        assert!(Split::HeldOut.contains(&scene), "held-out {i}: {scene:?}");
        for o in &scene.objects {
            if is_held_out_pair(o.glyph, o.colour) {
                held_pairs_seen.insert((o.glyph, o.colour));
            }
        }
    }
    // All 21 held-out pairs are evaluated (5000 draws of 21 pairs miss one with p < 1e-80).
    assert_eq!(held_pairs_seen.len(), 21);
}

#[test]
fn training_shows_every_attribute_and_backgrounds_differ_from_objects() {
    let train = Dataset::new(2, Split::Train, SIZE).unwrap();
    let (mut glyphs, mut colours, mut positions, mut sizes, mut backgrounds) = (
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
    );
    let mut pairs = 0;
    for i in 0..3000 {
        let scene = train.scene(i);
        pairs += usize::from(scene.objects.len() == 2);
        backgrounds.insert(scene.background);
        for o in &scene.objects {
            assert_ne!(o.colour, scene.background, "sample {i}");
            glyphs.insert(o.glyph);
            colours.insert(o.colour);
            positions.insert(o.position);
            sizes.insert(o.size);
        }
    }
    assert_eq!(glyphs.len(), Glyph::ALL.len());
    assert_eq!(colours.len(), Colour::ALL.len());
    assert_eq!(positions.len(), Position::ALL.len());
    assert_eq!(sizes.len(), Size::ALL.len());
    assert_eq!(backgrounds.len(), Colour::ALL.len());
    // The default share of pairs is 25 %: 750 expected, σ ≈ 24.
    assert!((600..900).contains(&pairs), "{pairs} pairs");
}

/// The centroid (as fractions of the side) of pixels that differ from the background.
fn ink_centroid(image: &image::RgbImage, background: [u8; 3]) -> Option<(f32, f32)> {
    let (mut sx, mut sy, mut n) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y, p) in image.enumerate_pixels() {
        let distance: i32 = (0..3)
            .map(|c| (i32::from(p.0[c]) - i32::from(background[c])).abs())
            .sum();
        // Tint jitter moves a flat background by at most 3 × 8 = 24 from itself: 40 is ink.
        if distance > 40 {
            sx += x as f32 + 0.5;
            sy += y as f32 + 0.5;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| {
        (
            sx / n / image.width() as f32,
            sy / n / image.height() as f32,
        )
    })
}

#[test]
fn single_objects_land_where_their_position_says() {
    let singles = Dataset::new(3, Split::Train, SIZE)
        .unwrap()
        .with_two_object_fraction(0.0)
        .unwrap();
    for i in 0..400 {
        let sample = singles.sample(i);
        let object = sample.scene.objects[0];
        let background = sample.image.get_pixel(0, 0).0;
        let background = if object.position == Position::TopLeft {
            sample.image.get_pixel(SIZE - 1, SIZE - 1).0
        } else {
            background
        };
        let (x, y) = ink_centroid(&sample.image, background).expect("an object is drawn");
        assert_eq!(
            Position::nearest(x, y),
            object.position,
            "sample {i}: centroid ({x:.2}, {y:.2}), {}",
            sample.caption
        );
    }
}

#[test]
fn pair_objects_land_in_their_halves() {
    let pairs = Dataset::new(4, Split::Train, SIZE)
        .unwrap()
        .with_two_object_fraction(1.0)
        .unwrap();
    for i in 0..200 {
        let scene = pairs.scene(i);
        let masks: Vec<Vec<f32>> = scene.objects.iter().map(|o| coverage(o, SIZE)).collect();
        for (o, mask) in scene.objects.iter().zip(&masks) {
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for (k, &c) in mask.iter().enumerate() {
                sx += c * ((k as u32 % SIZE) as f32 + 0.5);
                sy += c * ((k as u32 / SIZE) as f32 + 0.5);
                n += c;
            }
            let (x, y) = (sx / n / SIZE as f32, sy / n / SIZE as f32);
            assert_eq!(Position::nearest(x, y), o.position, "scene {i}");
        }
        // Non-overlapping: no pixel is covered by both.
        assert!(masks[0]
            .iter()
            .zip(&masks[1])
            .all(|(a, b)| *a == 0.0 || *b == 0.0));
    }
}

#[test]
fn captions_use_clip_words_and_fit_in_77_tokens() {
    let tokenizer = Tokenizer::from_folder(fixtures().join("tokenizer")).unwrap();
    let mut longest = 0;
    let mut words_seen = HashSet::new();
    for split in [Split::Train, Split::HeldOut] {
        let dataset = Dataset::new(5, split, 16).unwrap();
        for i in 0..3000 {
            let sample = dataset.sample(i);
            for text in [sample.caption.clone(), canonical_prompt(&sample.scene)] {
                assert_eq!(text, text.to_lowercase());
                let tokens = tokenizer.encode(&text).len() + 2; // BOS and EOS
                longest = longest.max(tokens);
                for word in text.split_whitespace() {
                    words_seen.insert(word.trim_end_matches(',').to_owned());
                }
            }
        }
    }
    for word in &words_seen {
        assert!(
            tokenizer.token_id(&format!("{word}</w>")).is_some(),
            "\"{word}\" is not a whole word of the CLIP vocabulary"
        );
    }
    eprintln!(
        "longest caption: {longest} tokens; {} distinct words",
        words_seen.len()
    );
    assert!(longest <= 77, "a caption needs {longest} tokens");
    // Synonyms and word orders are in use: far more than the ~60 words of a single template.
    assert!(words_seen.len() > 70, "{} distinct words", words_seen.len());
}

#[test]
fn canonical_prompts_read_as_documented() {
    let object = |glyph, colour, size, position| ObjectSpec {
        glyph,
        colour,
        size,
        position,
        jitter: Jitter::NONE,
    };
    let five = Glyph::ALL[7 + 5];
    let scene = Scene {
        objects: vec![object(five, Colour::Red, Size::Large, Position::TopLeft)],
        background: Colour::Blue,
        background_tint: [0; 3],
    };
    assert_eq!(
        canonical_prompt(&scene),
        "a large red 5 in the top left on a blue background"
    );
    let square = Glyph::ALL[1];
    let star = Glyph::ALL[3];
    let scene = Scene {
        objects: vec![
            object(square, Colour::Orange, Size::Small, Position::Left),
            object(star, Colour::Green, Size::Large, Position::Right),
        ],
        background: Colour::Black,
        background_tint: [0; 3],
    };
    assert_eq!(
        canonical_prompt(&scene),
        "a small orange square left of a large green star on a black background"
    );
    let scene = Scene {
        background: Colour::Orange,
        ..scene
    };
    assert!(canonical_prompt(&scene).ends_with("on an orange background"));
}

#[test]
fn one_scene_gets_many_captions() {
    // Templates × synonyms × omissions: a fixed scene must get varied captions that all still
    // name its colour.
    let scene = Dataset::new(9, Split::Train, SIZE).unwrap().scene(0);
    let colour = scene.objects[0].colour.name();
    let mut seen = HashSet::new();
    for seed in 0..200 {
        let text = kakusan_data::caption(&scene, &mut kakusan_data::SplitMix64::new(seed));
        let grey_alias = colour == "grey" && text.contains("gray");
        assert!(text.contains(colour) || grey_alias, "{text}");
        seen.insert(text);
    }
    assert!(seen.len() >= 50, "only {} distinct captions", seen.len());
}

/// The coverage of `glyph` drawn large, centred, without jitter.
fn nominal_mask(glyph: Glyph) -> Vec<f32> {
    let object = ObjectSpec {
        glyph,
        colour: Colour::White,
        size: Size::Large,
        position: Position::Centre,
        jitter: Jitter::NONE,
    };
    coverage(&object, SIZE)
}

#[test]
fn glyphs_are_distinct_from_each_other() {
    // Count pixels inked (coverage > 0.5) in one glyph and not the other, over all 17 glyphs.
    // Measured: the closest pair is 3 / 8 with 49 pixels (they differ by the left halves of
    // two loops). A whole stroke at this size (3.6 px thick, ≥ 8 px long) is ≥ 30 pixels, so
    // 30 fails when two glyphs come to differ by less than one stroke (e.g. a mere serif).
    let masks: Vec<(Glyph, Vec<f32>)> = Glyph::ALL.iter().map(|&g| (g, nominal_mask(g))).collect();
    let mut closest = (usize::MAX, String::new());
    for (i, (a, ma)) in masks.iter().enumerate() {
        for (b, mb) in &masks[i + 1..] {
            let differing = ma
                .iter()
                .zip(mb)
                .filter(|(x, y)| (*x > &0.5) != (*y > &0.5))
                .count();
            if differing < closest.0 {
                closest = (differing, format!("{a} / {b}"));
            }
        }
    }
    eprintln!("closest glyph pair: {} ({} pixels)", closest.1, closest.0);
    assert!(
        closest.0 >= 30,
        "{} differ in only {} pixels",
        closest.1,
        closest.0
    );
}

#[test]
fn rendering_is_exact_for_the_nominal_pose() {
    // A circle of radius 0.2 × 64 = 12.8 px covers π·12.8² ≈ 514.7 px²; supersampling 4×4
    // estimates area to well within 1 %.
    let area: f32 = nominal_mask(Glyph::ALL[0]).iter().sum();
    assert!((area - 514.7).abs() < 5.0, "area {area}");
    // Rendering draws the object's colour in its middle and the background at the corner.
    let scene = Scene {
        objects: vec![ObjectSpec {
            glyph: Glyph::ALL[0],
            colour: Colour::Red,
            size: Size::Large,
            position: Position::Centre,
            jitter: Jitter::NONE,
        }],
        background: Colour::Blue,
        background_tint: [0; 3],
    };
    let image = render(&scene, SIZE);
    assert_eq!(image.get_pixel(32, 32).0, Colour::Red.rgb());
    assert_eq!(image.get_pixel(0, 0).0, Colour::Blue.rgb());
}

#[test]
fn preview_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preview.png");
    let held_out = Dataset::new(7, Split::HeldOut, SIZE).unwrap();
    kakusan_data::write_preview(&held_out, 5, 3, &path).unwrap();
    let image = image::open(&path).unwrap().to_rgb8();
    // 3 columns of 128-px cells with 6-px gaps.
    assert_eq!(image.width(), 6 + 3 * (128 + 6));
    assert!(kakusan_data::write_preview(&held_out, 0, 3, &path).is_err());
}

#[test]
fn novel_glyphs_appear_only_when_asked_and_change_nothing_else() {
    let base = Dataset::new(21, Split::Train, SIZE).unwrap();
    let mixed = base.clone().with_novel_glyphs(0.3).unwrap();
    let only = base.clone().with_novel_glyphs(1.0).unwrap();
    assert!(base.clone().with_novel_glyphs(1.5).is_err());
    let (mut objects, mut novel) = (0, 0);
    for i in 0..1000 {
        let (b, m, o) = (base.scene(i), mixed.scene(i), only.scene(i));
        assert!(b.objects.iter().all(|x| x.glyph.is_base()), "sample {i}");
        assert!(o.objects.iter().all(|x| !x.glyph.is_base()), "sample {i}");
        // Everything but the glyph is the base sample's.
        assert_eq!(m.background, b.background);
        for (x, y) in m.objects.iter().zip(&b.objects) {
            assert_eq!(
                (x.colour, x.size, x.position),
                (y.colour, y.size, y.position)
            );
            assert!(x.glyph == y.glyph || !x.glyph.is_base());
            objects += 1;
            novel += usize::from(!x.glyph.is_base());
        }
    }
    // 30 % of ~1,250 objects: ~375, sigma ~16.
    let share = novel as f64 / objects as f64;
    assert!((0.25..0.35).contains(&share), "{novel} of {objects}");
    // The caption names the novel glyph with one of its words.
    let sample = only.sample(3);
    assert!(
        ["moon", "crescent"]
            .iter()
            .any(|w| sample.caption.contains(w)),
        "{}",
        sample.caption
    );
}
