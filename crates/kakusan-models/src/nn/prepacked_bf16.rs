//! CPU bf16 weights (`--dtype bf16`) packed once, when a layer is loaded, for the bf16
//! dot-product kernel (`bf16_gemm.rs`): a convolution's `[cout, C*k*k]` weight matrix as
//! [`PackedA`], a linear layer's `W^T` as [`PackedB`].
//!
//! Packing per call cost about 5 % of an SD 1.5 UNet step (more at the 1280-channel levels,
//! whose 29 MB weight matrices were repacked for products of a few milliseconds). The layer
//! keeps only the packed form, not the bf16 tensor: the same bytes (plus the zero padding
//! of a last, partial panel), so this costs no memory. Only on a CPU with the native
//! kernel: elsewhere the layers keep their bf16 tensors for the widened-weight f32 GEMM.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use half::bf16;

use super::bf16_gemm::{Kernel, PackedA, PackedB};

/// A convolution's weight `[cout, c, k, k]`, packed as the `A` of `y = W patches`.
#[derive(Clone)]
pub(crate) struct PrepackedConv {
    pub a: Arc<PackedA>,
    pub kernel: Kernel,
    /// The weight's shape, `[cout, c, k, k]`.
    pub dims: [usize; 4],
}

/// A linear layer's weight `[out, in]`, packed as the `B` of `y = x W^T`.
#[derive(Clone)]
pub(crate) struct PrepackedLinear {
    pub b: Arc<PackedB>,
    pub kernel: Kernel,
    pub out: usize,
    pub features: usize,
}

impl std::fmt::Debug for PrepackedConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrepackedConv(bf16 {:?}, {:?})", self.dims, self.kernel)
    }
}

impl std::fmt::Debug for PrepackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PrepackedLinear(bf16 [{}, {}], {:?})",
            self.out, self.features, self.kernel
        )
    }
}

/// The weight's bf16 values in row-major order, and the native kernel, when `weight` is a
/// bf16 tensor on a CPU that has one.
fn native_bf16_values(weight: &Tensor) -> Result<Option<(Vec<bf16>, Kernel)>> {
    if !super::cpu_bf16::is_cpu_bf16(weight) {
        return Ok(None);
    }
    let Some(kernel) = Kernel::native() else {
        return Ok(None);
    };
    Ok(Some((weight.flatten_all()?.to_vec1::<bf16>()?, kernel)))
}

/// Packs a convolution weight `[cout, c, k, k]` when it is bf16 on a CPU with the native
/// kernel; `None` otherwise (the layer keeps the tensor).
pub(crate) fn prepack_conv(weight: &Tensor) -> Result<Option<PrepackedConv>> {
    let &[cout, c, kh, kw] = weight.dims() else {
        return Ok(None);
    };
    let Some((w, kernel)) = native_bf16_values(weight)? else {
        return Ok(None);
    };
    Ok(Some(PrepackedConv {
        a: Arc::new(PackedA::from_bf16_rows(&w, cout, c * kh * kw)),
        kernel,
        dims: [cout, c, kh, kw],
    }))
}

/// Packs a linear weight `[out, in]` when it is bf16 on a CPU with the native kernel;
/// `None` otherwise (the layer keeps the tensor).
pub(crate) fn prepack_linear(weight: &Tensor) -> Result<Option<PrepackedLinear>> {
    let &[out, features] = weight.dims() else {
        return Ok(None);
    };
    if weight.dtype() != DType::BF16 {
        return Ok(None);
    }
    let Some((w, kernel)) = native_bf16_values(weight)? else {
        return Ok(None);
    };
    Ok(Some(PrepackedLinear {
        b: Arc::new(PackedB::from_bf16_transposed(&w, out, features)),
        kernel,
        out,
        features,
    }))
}
