//! Helpers shared by the parity tests against the tools/parity fixtures.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// `<workspace>/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The recorded reference tensors of a fixture model (`<model>-ref.safetensors`).
pub fn reference(model: &str) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("{model}-ref.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (made by tools/parity; see tests/fixtures/README.md)",
            path.display()
        )
    })
}

/// An f32 CPU `VarBuilder` over `<model>/<component>/<file>` and the component's folder.
pub fn component_vb(model: &str, component: &str, file: &str) -> (VarBuilder<'static>, PathBuf) {
    let dir = fixtures().join(model).join(component);
    let files = [dir.join(file)];
    // SAFETY: the fixture file is not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    (vb, dir)
}

/// max |got - want| / max(1, max |want|).
pub fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let max_abs = |t: &Tensor| -> f32 { t.abs().unwrap().max_all().unwrap().to_scalar().unwrap() };
    max_abs(&(got - want).unwrap()) / max_abs(want).max(1.0)
}
