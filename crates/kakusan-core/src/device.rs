//! Which device and which floating-point type the models run on, as the user names them
//! (`cpu`, `cuda`, `cuda:1`; `f32`, `f16`, `bf16`), and their candle counterparts.
//!
//! Parsing is separate from opening: `"cuda:1".parse::<DeviceChoice>()` only checks the
//! spelling; [`DeviceChoice::to_candle`] is where a missing CUDA build or GPU is reported.

use std::fmt;
use std::str::FromStr;

/// A device named by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

/// Why a device could not be named or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The text is not a device name.
    #[error("unknown device {0:?}: expected \"cpu\", \"cuda\" or \"cuda:N\" (N = GPU number, e.g. \"cuda:1\")")]
    UnknownName(String),
    /// A CUDA device was asked for but this build has no CUDA support.
    #[error(
        "device cuda:{ordinal} was requested, but this kakusan was built without CUDA support; \
         rebuild with the `cuda` feature (`tools/cuda/build.sh` fetches what it needs) or use the cpu device"
    )]
    CudaNotCompiled {
        /// The GPU number asked for.
        ordinal: usize,
    },
    /// CUDA is compiled in but the GPU could not be opened (no driver, no such GPU, ...).
    #[error(
        "could not open CUDA device cuda:{ordinal}: {source}; check that the NVIDIA driver is \
         installed and that GPU {ordinal} exists (nvidia-smi lists them), or use the cpu device"
    )]
    CudaUnavailable {
        /// The GPU number asked for.
        ordinal: usize,
        /// What candle/CUDA reported.
        #[source]
        source: candle_core::Error,
    },
}

impl DeviceChoice {
    /// Opens the device in candle.
    ///
    /// Fails with [`DeviceError::CudaNotCompiled`] when a GPU is asked for and the crate was
    /// built without its `cuda` feature, and with [`DeviceError::CudaUnavailable`] when the
    /// GPU cannot be opened.
    pub fn to_candle(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
            DeviceChoice::Cuda(ordinal) => {
                if !cfg!(feature = "cuda") {
                    return Err(DeviceError::CudaNotCompiled { ordinal });
                }
                candle_core::Device::new_cuda(ordinal)
                    .map_err(|source| DeviceError::CudaUnavailable { ordinal, source })
            }
        }
    }

    /// True for the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, DeviceChoice::Cpu)
    }
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    /// Accepts `cpu`, `cuda` (GPU 0) and `cuda:N`, ignoring ASCII case and surrounding spaces.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || DeviceError::UnknownName(text.to_string());
        let lowered = text.trim().to_ascii_lowercase();
        match lowered.as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => {
                let number = other.strip_prefix("cuda:").ok_or_else(unknown)?;
                if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                number
                    .parse::<usize>()
                    .map(DeviceChoice::Cuda)
                    .map_err(|_| unknown())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A floating-point type for weights and activations, as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DTypeChoice {
    /// 32-bit IEEE float (the reference precision; default).
    #[default]
    F32,
    /// 16-bit IEEE half float.
    F16,
    /// 16-bit bfloat.
    BF16,
}

/// The text is not a dtype name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {0:?}: expected \"f32\", \"f16\" or \"bf16\" (also fp32/float32, fp16/half/float16, bfloat16)")]
pub struct DTypeParseError(pub String);

impl DTypeChoice {
    /// The candle dtype.
    pub fn to_candle(self) -> candle_core::DType {
        match self {
            DTypeChoice::F32 => candle_core::DType::F32,
            DTypeChoice::F16 => candle_core::DType::F16,
            DTypeChoice::BF16 => candle_core::DType::BF16,
        }
    }

    /// The short name used by `Display` and accepted by `FromStr`.
    pub fn as_str(self) -> &'static str {
        match self {
            DTypeChoice::F32 => "f32",
            DTypeChoice::F16 => "f16",
            DTypeChoice::BF16 => "bf16",
        }
    }
}

impl FromStr for DTypeChoice {
    type Err = DTypeParseError;

    /// Accepts `f32`/`fp32`/`float32`, `f16`/`fp16`/`float16`/`half`, `bf16`/`bfloat16`,
    /// ignoring ASCII case and surrounding spaces.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" | "float" => Ok(DTypeChoice::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(DTypeChoice::F16),
            "bf16" | "bfloat16" => Ok(DTypeChoice::BF16),
            _ => Err(DTypeParseError(text.to_string())),
        }
    }
}

impl fmt::Display for DTypeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(" CPU ".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:0".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!(
            "CUDA:12".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(12)
        );
    }

    #[test]
    fn bad_device_names_are_rejected_with_the_text() {
        for bad in [
            "", "cuda:", "cuda:-1", "cuda:x", "cuda:+1", "metal", "cuda1", "cpu:0",
        ] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(
                matches!(&err, DeviceError::UnknownName(t) if t == bad),
                "{bad:?}"
            );
            assert!(err.to_string().contains("cuda:N"), "{err}");
        }
    }

    #[test]
    fn device_display_round_trips() {
        for d in [
            DeviceChoice::Cpu,
            DeviceChoice::Cuda(0),
            DeviceChoice::Cuda(3),
        ] {
            assert_eq!(d.to_string().parse::<DeviceChoice>().unwrap(), d);
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_opens() {
        assert!(DeviceChoice::Cpu.to_candle().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_fix_it() {
        let err = DeviceChoice::Cuda(1).to_candle().unwrap_err();
        assert!(matches!(err, DeviceError::CudaNotCompiled { ordinal: 1 }));
        let message = err.to_string();
        assert!(
            message.contains("cuda:1") && message.contains("`cuda` feature"),
            "{message}"
        );
    }

    #[test]
    fn dtype_names_parse_and_display() {
        let cases = [
            ("f32", DTypeChoice::F32),
            ("FP32", DTypeChoice::F32),
            ("float32", DTypeChoice::F32),
            ("f16", DTypeChoice::F16),
            ("fp16", DTypeChoice::F16),
            ("half", DTypeChoice::F16),
            ("bf16", DTypeChoice::BF16),
            ("bfloat16", DTypeChoice::BF16),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<DTypeChoice>().unwrap(), want, "{text}");
        }
        for d in [DTypeChoice::F32, DTypeChoice::F16, DTypeChoice::BF16] {
            assert_eq!(d.to_string().parse::<DTypeChoice>().unwrap(), d);
        }
        assert_eq!(DTypeChoice::BF16.to_string(), "bf16");
        assert!("f64"
            .parse::<DTypeChoice>()
            .unwrap_err()
            .to_string()
            .contains("\"f64\""));
    }

    #[test]
    fn dtype_maps_to_candle() {
        assert_eq!(DTypeChoice::F32.to_candle(), candle_core::DType::F32);
        assert_eq!(DTypeChoice::F16.to_candle(), candle_core::DType::F16);
        assert_eq!(DTypeChoice::BF16.to_candle(), candle_core::DType::BF16);
    }
}
