//! The Job's dialect and emphasis mode reach the conditioning: NovelAI's `{red}` is A1111's
//! `(red:1.05)` (the same weights, so the same latents bit for bit), and differs from A1111
//! reading the braces as text; "No norm" changes a weighted prompt's result.

mod common;

use candle_core::Tensor;
use common::{max_abs_diff, sd1_tiny};
use kakusan_pipeline::{Job, LoadOptions, StableDiffusion};
use kakusan_prompt::{Dialect, EmphasisMode};

fn latents(model: &StableDiffusion, job: &Job) -> Tensor {
    model.generate(job, &mut |_| {}).unwrap().latents
}

#[test]
fn dialect_and_emphasis_are_used() {
    let model = StableDiffusion::load(&sd1_tiny(), &LoadOptions::default()).unwrap();
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
    assert_eq!(max_abs_diff(&nai, &a1111_weighted), 0.0);
    assert!(max_abs_diff(&nai, &a1111_text) > 1e-6);
    let no_norm = latents(
        &model,
        &job("a (red:1.5) cat", Dialect::A1111, EmphasisMode::NoNorm),
    );
    let original = latents(
        &model,
        &job("a (red:1.5) cat", Dialect::A1111, EmphasisMode::Original),
    );
    assert!(max_abs_diff(&no_norm, &original) > 1e-6);
}
