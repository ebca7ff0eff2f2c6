//! The activation functions diffusers' configs name in `act_fn` ("silu", "swish", "gelu",
//! "mish", "relu"), resolved once from the config string.

use candle_core::{Result, Tensor};

/// An element-wise non-linearity named by a diffusers config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)`; diffusers' "silu" and "swish".
    Silu,
    /// Exact (erf) GELU, as `torch.nn.GELU()`.
    Gelu,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `max(x, 0)`.
    Relu,
}

/// A config named an activation we do not implement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unsupported activation function {0:?} (supported: silu, swish, gelu, mish, relu)")]
pub struct UnknownActivation(pub String);

impl Activation {
    /// Resolves a diffusers `act_fn` string.
    pub fn from_name(name: &str) -> std::result::Result<Self, UnknownActivation> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu" => Ok(Self::Gelu),
            "mish" => Ok(Self::Mish),
            "relu" => Ok(Self::Relu),
            other => Err(UnknownActivation(other.to_string())),
        }
    }

    /// `self.apply(norm.forward(x))`; SiLU after a group norm is one fused op when
    /// training on the CPU ([`GroupNorm::forward_silu`]).
    pub fn after_group_norm(self, norm: &super::GroupNorm, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => norm.forward_silu(x),
            other => other.apply(&norm.forward(x)?),
        }
    }

    /// Applies the activation element-wise.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => x.silu(),
            Self::Gelu => x.gelu_erf(),
            Self::Mish => candle_nn::ops::mish(x),
            Self::Relu => x.relu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_names_are_reported() {
        assert_eq!(Activation::from_name("swish").unwrap(), Activation::Silu);
        assert_eq!(Activation::from_name("silu").unwrap(), Activation::Silu);
        let err = Activation::from_name("tanh").unwrap_err();
        assert!(err.to_string().contains("\"tanh\""));
    }

    #[test]
    fn silu_matches_formula() {
        let x = Tensor::new(&[-2.0f32, 0.0, 1.5], &candle_core::Device::Cpu).unwrap();
        let y: Vec<f32> = Activation::Silu.apply(&x).unwrap().to_vec1().unwrap();
        for (v, y) in [-2.0f32, 0.0, 1.5].iter().zip(y) {
            let want = v / (1.0 + (-v).exp());
            assert!((y - want).abs() < 1e-6, "{y} vs {want}");
        }
    }
}
