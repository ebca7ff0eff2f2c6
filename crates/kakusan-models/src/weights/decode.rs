//! Turning the little-endian bytes of a stored tensor into a candle tensor of the requested
//! float dtype, in one pass: the bytes are read once and written once (no intermediate tensor
//! in the stored dtype when a cast is needed). Conversions go through f64, which holds every
//! F16/BF16/F32 value exactly, so each cast rounds once (round-to-nearest-even, like torch).

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

/// A float dtype a safetensors file may store weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F16,
    BF16,
    F32,
    F64,
}

impl StoredDtype {
    /// The stored dtype for a safetensors dtype, or `None` when it is not a float type we read.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        match dtype {
            safetensors::Dtype::F16 => Some(Self::F16),
            safetensors::Dtype::BF16 => Some(Self::BF16),
            safetensors::Dtype::F32 => Some(Self::F32),
            safetensors::Dtype::F64 => Some(Self::F64),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The candle dtype with the same representation.
    pub fn candle_dtype(self) -> DType {
        match self {
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::F32 => DType::F32,
            Self::F64 => DType::F64,
        }
    }
}

/// Whether `dtype` is a float dtype weights can be loaded as.
pub fn is_weight_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

/// Builds a tensor of `shape` and dtype `target` on `device` from `bytes` (little-endian
/// elements of `stored`). `bytes.len()` must equal the element count times the element size;
/// the caller (the store) guarantees it from the validated header.
pub fn decode(
    bytes: &[u8],
    stored: StoredDtype,
    shape: &[usize],
    target: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if stored.candle_dtype() == target {
        // Same representation: a single copy (candle handles unaligned buffers).
        return Tensor::from_raw_buffer(bytes, target, shape, device);
    }
    // Direct paths for the common conversions (the same single rounding as through f64,
    // several times faster): f32 files loaded as bf16 (`--dtype bf16`), f16 files as f32.
    match (stored, target) {
        (StoredDtype::F32, DType::BF16) => {
            let values = bytes
                .chunks_exact(4)
                .map(|c| bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            return Tensor::from_vec(values.collect::<Vec<_>>(), shape, device);
        }
        (StoredDtype::F16, DType::F32) => {
            let values = bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32());
            return Tensor::from_vec(values.collect::<Vec<_>>(), shape, device);
        }
        _ => {}
    }
    let values = elements_as_f64(bytes, stored);
    match target {
        DType::F32 => Tensor::from_vec(values.map(|v| v as f32).collect::<Vec<_>>(), shape, device),
        DType::F64 => Tensor::from_vec(values.collect::<Vec<_>>(), shape, device),
        DType::F16 => {
            Tensor::from_vec(values.map(f16::from_f64).collect::<Vec<_>>(), shape, device)
        }
        DType::BF16 => Tensor::from_vec(
            values.map(bf16::from_f64).collect::<Vec<_>>(),
            shape,
            device,
        ),
        other => Err(candle_core::Error::Msg(format!(
            "weights can only be loaded as F16, BF16, F32 or F64, not {other:?}"
        ))),
    }
}

/// The elements of `bytes` as f64 values (exact for every stored float type).
fn elements_as_f64(bytes: &[u8], stored: StoredDtype) -> impl Iterator<Item = f64> + '_ {
    let size = stored.size_in_bytes();
    bytes.chunks_exact(size).map(move |c| match stored {
        StoredDtype::F16 => f16::from_le_bytes([c[0], c[1]]).to_f64(),
        StoredDtype::BF16 => bf16::from_le_bytes([c[0], c[1]]).to_f64(),
        StoredDtype::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
        StoredDtype::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of_f32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn same_dtype_is_bit_exact() {
        let v = [1.5f32, -0.1, 3.0e-8, f32::MAX];
        let t = decode(
            &bytes_of_f32(&v),
            StoredDtype::F32,
            &[2, 2],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(t.dims(), &[2, 2]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
    }

    #[test]
    fn unaligned_bytes_decode() {
        let v = [0.25f32, -2.0];
        let mut b = vec![0u8];
        b.extend(bytes_of_f32(&v));
        let t = decode(&b[1..], StoredDtype::F32, &[2], DType::F32, &Device::Cpu).unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), v);
    }

    #[test]
    fn f16_and_bf16_widen_exactly() {
        let h = [
            f16::from_f32(0.1),
            f16::from_f32(-65504.0),
            f16::from_f32(6.0e-8),
        ];
        let b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = decode(&b, StoredDtype::F16, &[3], DType::F32, &Device::Cpu).unwrap();
        let want: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        assert_eq!(t.to_vec1::<f32>().unwrap(), want);

        let h = [bf16::from_f32(0.1), bf16::from_f32(-3.0e38)];
        let b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = decode(&b, StoredDtype::BF16, &[2], DType::F32, &Device::Cpu).unwrap();
        let want: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        assert_eq!(t.to_vec1::<f32>().unwrap(), want);
    }

    #[test]
    fn f32_narrows_to_f16_with_one_rounding() {
        let v = [0.1f32, 1.0 + 1.0 / 4096.0];
        let t = decode(
            &bytes_of_f32(&v),
            StoredDtype::F32,
            &[2],
            DType::F16,
            &Device::Cpu,
        )
        .unwrap();
        let got = t.to_vec1::<f16>().unwrap();
        assert_eq!(
            got,
            vec![f16::from_f32(0.1), f16::from_f32(1.0 + 1.0 / 4096.0)]
        );
    }

    /// The direct f32 -> bf16 path rounds like the general path through f64 (once, to
    /// nearest even), ties and overflow included.
    #[test]
    fn f32_narrows_to_bf16_like_the_f64_path() {
        let v = [
            0.1f32,
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::MAX,
            -1e-40,
        ];
        let t = decode(
            &bytes_of_f32(&v),
            StoredDtype::F32,
            &[5],
            DType::BF16,
            &Device::Cpu,
        )
        .unwrap();
        let want: Vec<bf16> = v.iter().map(|&x| bf16::from_f64(f64::from(x))).collect();
        assert_eq!(t.to_vec1::<bf16>().unwrap(), want);
    }

    #[test]
    fn integer_target_is_refused() {
        let r = decode(
            &bytes_of_f32(&[1.0]),
            StoredDtype::F32,
            &[1],
            DType::U8,
            &Device::Cpu,
        );
        assert!(r.is_err());
    }
}
