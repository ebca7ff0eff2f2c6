//! The contiguous f32 data of a CPU storage, as the CPU kernels of the custom ops read it,
//! and the f32 values of a tensor, as their backward passes read them.

use candle_core::{bail, CpuStorage, DType, Layout, Result, Tensor};

/// The f32 slice `l` covers in `s`; `what` names the operand in the error (e.g.
/// `"softmax: input"`) when it is not f32 or not contiguous.
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("{what} must be f32")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// The values of a tensor as one f32 vector in row-major order (a copy): what the custom
/// ops' backward passes read their inputs and gradients as.
pub(crate) fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Whether these operands take a layer's CPU f32 training path: all on the CPU in f32, and
/// at least one tracking gradients (inference keeps the exact, generic path).
pub(crate) fn cpu_f32_training(tensors: &[&Tensor]) -> bool {
    tensors.iter().any(|t| t.track_op())
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}
