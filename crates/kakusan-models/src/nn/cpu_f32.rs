//! The contiguous f32 data of a CPU storage, as the CPU kernels of the custom ops read it.

use candle_core::{bail, CpuStorage, Layout, Result};

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
