//! Helpers shared by kakusan-pipeline's integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

use candle_core::Tensor;

/// The repository's `tests/fixtures` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The tiny random-weight SD1 model of the fixtures.
pub fn sd1_tiny() -> PathBuf {
    fixtures().join("sd1-tiny")
}

/// The largest absolute value of `t`.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The largest absolute difference of `a` and `b`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// max |a - b| / max(1, max |b|): the whole-run parity tests' error measure.
pub fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference
        .iter()
        .fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    diff / scale
}

/// Little-endian f32 values of a tensor's raw bytes (safetensors data).
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The job of a recorded reference run (a fixture JSON object with `prompt`,
/// `negative_prompt`, `seed`, `steps`, `guidance_scale`, `width`, `height`); everything else
/// at `Job`'s defaults, for the caller to set (sampler, schedule, ...).
pub fn recorded_job(run: &serde_json::Value) -> kakusan_pipeline::Job {
    kakusan_pipeline::Job {
        prompt: run["prompt"].as_str().unwrap().into(),
        negative_prompt: run["negative_prompt"].as_str().unwrap().into(),
        seed: run["seed"].as_u64().unwrap(),
        steps: run["steps"].as_u64().unwrap() as usize,
        cfg_scale: run["guidance_scale"].as_f64().unwrap(),
        width: run["width"].as_u64().unwrap() as usize,
        height: run["height"].as_u64().unwrap() as usize,
        ..kakusan_pipeline::Job::default()
    }
}
