//! The Job's dialect and emphasis mode reach the conditioning: NovelAI's `{red}` is A1111's
//! `(red:1.05)` (the same weights, so the same latents bit for bit), and differs from A1111
//! reading the braces as text; "No norm" changes a weighted prompt's result.

use std::path::PathBuf;

use candle_core::Tensor;
use kakusan_pipeline::{Job, LoadOptions, StableDiffusion};
use kakusan_prompt::{Dialect, EmphasisMode};

fn latents(model: &StableDiffusion, job: &Job) -> Tensor {
    model.generate(job, &mut |_| {}).unwrap().latents
}

fn diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn dialect_and_emphasis_are_used() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd1-tiny");
    let model = StableDiffusion::load(&path, &LoadOptions::default()).unwrap();
    let job = |prompt: &str, dialect, emphasis| Job {
        prompt: prompt.into(),
        steps: 3,
        width: 64,
        height: 64,
        seed: 7,
        dialect,
        emphasis,
        ..Job::default()
    };
    let nai = latents(
        &model,
        &job("a {red} cat", Dialect::NovelAi, EmphasisMode::Original),
    );
    let a1111_weighted = latents(
        &model,
        &job("a (red:1.05) cat", Dialect::A1111, EmphasisMode::Original),
    );
    let a1111_text = latents(
        &model,
        &job("a {red} cat", Dialect::A1111, EmphasisMode::Original),
    );
    assert_eq!(diff(&nai, &a1111_weighted), 0.0);
    assert!(diff(&nai, &a1111_text) > 1e-6);
    let no_norm = latents(
        &model,
        &job("a (red:1.5) cat", Dialect::A1111, EmphasisMode::NoNorm),
    );
    let original = latents(
        &model,
        &job("a (red:1.5) cat", Dialect::A1111, EmphasisMode::Original),
    );
    assert!(diff(&no_norm, &original) > 1e-6);
}
