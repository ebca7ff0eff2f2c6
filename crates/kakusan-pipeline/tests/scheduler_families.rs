//! One whole generation per diffusers scheduler family against diffusers itself
//! (tools/parity/make_scheduler_families.py, tests/fixtures/scheduler-families-sd1-tiny.*):
//! `StableDiffusionPipeline` on the tiny SD1 model with `Class.from_config(folder config)`,
//! and `kakusan generate` with the matching sampler on the `model` schedule (the folder's
//! diffusers scheduler config read as that class reads it).
//!
//! Tolerance: final latents within 2.5e-5 of max(1, max |ref|), as the other whole-run
//! parity tests (pipeline_parity.rs explains it: diffusers' own f32 result moves by ~1e-6 of
//! the range under a 1e-6 change of the noise; a wrong timestep, sigma or update moves it by
//! 1e-3 or more).

use kakusan_pipeline::{Job, LoadOptions, ScheduleKind, StableDiffusion};
use safetensors::SafeTensors;
use serde_json::Value;

mod common;

use common::{f32_values, recorded_job, relative_error};

const LATENT_TOL: f64 = 2.5e-5;

/// The kakusan sampler a diffusers scheduler class is run with.
fn sampler_of(scheduler_class: &str) -> Option<&'static str> {
    Some(match scheduler_class {
        "EulerDiscreteScheduler" => "Euler",
        "EulerAncestralDiscreteScheduler" => "Euler a",
        "HeunDiscreteScheduler" => "Heun",
        "DPMSolverMultistepScheduler" => "DPM++ 2M",
        "DPMSolverSDEScheduler" => "DPM++ SDE",
        "LMSDiscreteScheduler" => "LMS",
        "DDIMScheduler" => "DDIM",
        "PNDMScheduler" => "PLMS",
        "UniPCMultistepScheduler" => "UniPC BH2",
        "LCMScheduler" => "LCM",
        "DDPMScheduler" => "DDPM",
        _ => return None,
    })
}

/// Every recorded family's error (or why it could not run), by family name.
fn family_errors() -> Vec<(String, Result<f64, String>)> {
    let dir = common::fixtures();
    let json: Value = serde_json::from_slice(
        &std::fs::read(dir.join("scheduler-families-sd1-tiny.json")).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(dir.join("scheduler-families-sd1-tiny.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let model = StableDiffusion::load(&common::sd1_tiny(), &LoadOptions::default()).unwrap();
    let runs = json["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 11, "one run per family: {:?}", runs.keys());
    let mut out = Vec::new();
    for (name, run) in runs {
        let class = run["scheduler"].as_str().unwrap();
        let Some(sampler) = sampler_of(class) else {
            out.push((name.clone(), Err(format!("no kakusan sampler for {class}"))));
            continue;
        };
        let job = Job {
            sampler: sampler.into(),
            schedule: ScheduleKind::Model,
            ..recorded_job(run)
        };
        let result = model
            .generate(&job, &mut |_| {})
            .map_err(|e| e.to_string())
            .map(|g| {
                let ours: Vec<f32> = g.latents.flatten_all().unwrap().to_vec1().unwrap();
                let t = tensors
                    .tensor(&format!("family.{name}.final_latents"))
                    .unwrap();
                relative_error(&ours, &f32_values(t.data()))
            });
        out.push((name.clone(), result));
    }
    out
}

#[test]
fn every_scheduler_family_matches_diffusers() {
    let errors = family_errors();
    for (name, e) in &errors {
        eprintln!("{name:10} {e:?}");
    }
    let failed: Vec<_> = errors
        .iter()
        .filter(|(_, e)| !matches!(e, Ok(err) if *err <= LATENT_TOL))
        .collect();
    assert!(failed.is_empty(), "off: {failed:?}");
}
