//! The shipped evaluator (`models/kakusan-eval/`) is trustworthy: ≥ 98 % per attribute on
//! held-out procedural pictures (glyph × colour pairs its training never showed).

use std::path::PathBuf;

use kakusan_data::{Dataset, Split};
use kakusan_eval::{accuracy, novel_glyph_accuracy, pair_accuracy, Attribute, Evaluator};

fn shipped() -> Evaluator {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/kakusan-eval");
    Evaluator::load(&dir).unwrap()
}

/// 2,000 held-out one-object pictures (about 15 s in a debug build). The threshold is the
/// requirement, 98 %. As an estimate of the true accuracy p, the share over n = 2000
/// pictures has a standard error of sqrt(p(1-p)/n): 0.31 points at p = 98 %, 0.16 at
/// 99.5 %. The set is fixed (seed 20240601, distinct from the seed-99 pictures the training
/// run was measured on), so the test is deterministic; the margin between the measured
/// accuracies and 98 % is what says the pass is not luck of the draw.
#[test]
fn at_least_98_percent_per_attribute_on_held_out_pictures() {
    let evaluator = shipped();
    let result = accuracy(evaluator.classifier(), Split::HeldOut, 2000, 20_240_601).unwrap();
    for attribute in Attribute::ALL {
        assert!(
            result.of(attribute) >= 0.98,
            "{attribute}: {:.2} % ({result})",
            100.0 * result.of(attribute)
        );
    }
}

/// The novel glyph (the crescent moon, which only fine-tuning teaches the built-in model)
/// is read as reliably: ≥ 98 % per attribute on 500 held-out one-object pictures of it
/// (standard error 0.6 points at 98 %; the base glyphs' test above shows the new class did
/// not take their pictures).
#[test]
fn at_least_98_percent_per_attribute_on_the_novel_glyph() {
    let evaluator = shipped();
    let result = novel_glyph_accuracy(evaluator.classifier(), Split::HeldOut, 500, 31).unwrap();
    for attribute in Attribute::ALL {
        assert!(
            result.of(attribute) >= 0.98,
            "{attribute}: {:.2} % ({result})",
            100.0 * result.of(attribute)
        );
    }
}

/// Two-object pictures, each object read from its masked half: reported, with a looser
/// bar (95 %), as two-object prompts are reported separately.
#[test]
fn reads_both_objects_of_held_out_pairs() {
    let evaluator = shipped();
    let result = pair_accuracy(evaluator.classifier(), Split::HeldOut, 100, 7).unwrap();
    assert_eq!(result.total, 200);
    assert!(result.worst() >= 0.95, "{result}");
}

/// `classify` takes pictures of any size (resized to 64×64) and `classify_pairs` reads both
/// objects in prompt order.
#[test]
fn classify_resizes_and_classify_pairs_keeps_order() {
    let evaluator = shipped();
    let singles = Dataset::new(3, Split::HeldOut, 128)
        .unwrap()
        .with_two_object_fraction(0.0)
        .unwrap();
    let samples = singles.batch(0, 24);
    let images: Vec<_> = samples.iter().map(|s| s.image.clone()).collect();
    let predictions = evaluator.classify(&images).unwrap();
    let right = samples
        .iter()
        .zip(&predictions)
        .filter(|(s, p)| {
            let o = &s.scene.objects[0];
            (p.glyph, p.colour, p.background, p.position, p.size)
                == (o.glyph, o.colour, s.scene.background, o.position, o.size)
        })
        .count();
    // All five attributes right on at least 22 of 24 pictures rendered at 128×128.
    assert!(right >= 22, "{right} of 24");

    let pairs = Dataset::new(4, Split::HeldOut, 64)
        .unwrap()
        .with_two_object_fraction(1.0)
        .unwrap()
        .batch(0, 12);
    let images: Vec<_> = pairs.iter().map(|s| s.image.clone()).collect();
    let relations: Vec<_> = pairs.iter().map(|s| s.scene.relation().unwrap()).collect();
    let read = evaluator.classify_pairs(&images, &relations).unwrap();
    let right = pairs
        .iter()
        .zip(&read)
        .filter(|(s, [a, b])| {
            let (x, y) = (&s.scene.objects[0], &s.scene.objects[1]);
            (a.glyph, a.colour, b.glyph, b.colour) == (x.glyph, x.colour, y.glyph, y.colour)
        })
        .count();
    assert!(right >= 11, "{right} of 12");
    assert!(evaluator.classify_pairs(&images, &relations[1..]).is_err());
}
