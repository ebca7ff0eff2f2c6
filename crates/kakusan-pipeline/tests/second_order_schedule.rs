//! Prompt editing under A1111's second-order samplers: the schedule spans twice the steps and
//! advances per model call. `[red:blue:6]` at 5 steps never reaches step 6 with Euler (the
//! same picture as "red"), but with Heun (9 model calls over a 10-step schedule) the last two
//! calls see "blue".

mod common;

use common::{max_abs_diff, sd1_tiny};
use kakusan_pipeline::{Job, LoadOptions, StableDiffusion};

#[test]
fn second_order_samplers_schedule_prompts_over_twice_the_steps() {
    let model = StableDiffusion::load(&sd1_tiny(), &LoadOptions::default()).unwrap();
    let latents = |prompt: &str, sampler: &str| {
        let job = Job {
            prompt: prompt.into(),
            steps: 5,
            width: 64,
            height: 64,
            seed: 11,
            sampler: sampler.into(),
            ..Job::default()
        };
        model.generate(&job, &mut |_| {}).unwrap().latents
    };
    let euler_edit = latents("a [red:blue:6] cat", "Euler");
    let euler_red = latents("a red cat", "Euler");
    assert_eq!(max_abs_diff(&euler_edit, &euler_red), 0.0);
    let heun_edit = latents("a [red:blue:6] cat", "Heun");
    let heun_red = latents("a red cat", "Heun");
    assert!(max_abs_diff(&heun_edit, &heun_red) > 1e-6);
    // Up to call 8 (the last of 9) it is still "red" when the edit comes at 8.
    let heun_late = latents("a [red:blue:8] cat", "Heun");
    assert_eq!(max_abs_diff(&heun_late, &heun_red), 0.0);
}
