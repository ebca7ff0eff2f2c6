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
