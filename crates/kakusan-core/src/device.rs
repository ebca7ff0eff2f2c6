//! Which device and dtype a model runs in, as the user names them.

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {0:?}; valid: cpu, cuda, cuda:N")]
    UnknownDevice(String),
    #[error("unknown dtype {0:?}; valid: f32, f16, bf16")]
    UnknownDType(String),
    #[error("CUDA device {0} is not available (this build has CUDA: {1}); rebuild with --features cuda on a machine with a GPU, or use --device cpu")]
    CudaUnavailable(usize, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let l = s.trim().to_ascii_lowercase();
        match l.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => l
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::UnknownDevice(s.into())),
        }
    }
}

impl DeviceChoice {
    pub fn to_candle(&self) -> Result<candle_core::Device, DeviceError> {
        match *self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(i) => candle_core::Device::new_cuda(i).map_err(|_| {
                DeviceError::CudaUnavailable(i, candle_core::utils::cuda_is_available())
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeChoice {
    F32,
    F16,
    BF16,
}

impl std::str::FromStr for DTypeChoice {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            _ => Err(DeviceError::UnknownDType(s.into())),
        }
    }
}

impl DTypeChoice {
    pub fn to_candle(&self) -> candle_core::DType {
        match self {
            Self::F32 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::BF16 => candle_core::DType::BF16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!("fp16".parse::<DTypeChoice>().unwrap(), DTypeChoice::F16);
        assert!("f8".parse::<DTypeChoice>().is_err());
    }
}
