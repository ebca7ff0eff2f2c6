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

/// A tensor's f32 values in row-major order, borrowed from its storage when it is a
/// contiguous f32 CPU tensor (no copy: what the backward passes read most), else copied.
pub(crate) enum F32Values<'a> {
    /// The storage, read-locked for as long as the values are used, and the range of it.
    Borrowed(candle_core::StorageRef<'a>, std::ops::Range<usize>),
    Copied(Vec<f32>),
}

impl std::ops::Deref for F32Values<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            F32Values::Borrowed(storage, range) => match &**storage {
                candle_core::Storage::Cpu(CpuStorage::F32(data)) => &data[range.clone()],
                // `f32_view` borrows only f32 CPU storage, and the lock keeps it so.
                _ => unreachable!("F32Values::Borrowed holds f32 CPU storage"),
            },
            F32Values::Copied(values) => values,
        }
    }
}

/// The values of `t` as [`F32Values`]: borrowed when possible, else as [`f32_values`].
pub(crate) fn f32_view(t: &Tensor) -> Result<F32Values<'_>> {
    let (storage, layout) = t.storage_and_layout();
    if let (candle_core::Storage::Cpu(CpuStorage::F32(_)), Some((a, b))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(F32Values::Borrowed(storage, a..b));
    }
    drop(storage);
    Ok(F32Values::Copied(f32_values(t)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn views_borrow_contiguous_f32_and_copy_the_rest() {
        let dev = Device::Cpu;
        let t = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let whole = f32_view(&t).unwrap();
        assert!(matches!(whole, F32Values::Borrowed(..)));
        assert_eq!(
            &*whole,
            &t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..]
        );
        // A row of a contiguous tensor: borrowed, at its offset.
        let row = t.narrow(0, 1, 1).unwrap();
        let v = f32_view(&row).unwrap();
        assert!(matches!(v, F32Values::Borrowed(..)));
        assert_eq!(&*v, &[4.0, 5.0, 6.0, 7.0]);
        // Transposed (strided) and f64: copies, in row-major order of the view.
        let tt = t.t().unwrap();
        let v = f32_view(&tt).unwrap();
        assert!(matches!(v, F32Values::Copied(_)));
        assert_eq!(&v[..4], &[0.0, 4.0, 8.0, 1.0]);
        let wide = t.to_dtype(DType::F64).unwrap();
        assert!(matches!(f32_view(&wide).unwrap(), F32Values::Copied(_)));
    }
}
