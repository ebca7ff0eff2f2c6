//! diffusers' `FeedForward` with the "geglu" activation used by Stable Diffusion's
//! transformer blocks: `net.0` is a GEGLU (`proj` to twice the inner width, split into a
//! value half and a gate half, `value * gelu(gate)` with exact GELU), `net.1` a dropout (a
//! no-op here), `net.2` the projection back.

use super::linear::{linear, Linear};
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Module, VarBuilder};

/// Gated GELU: `proj(x) = [value, gate]`, output `value * gelu(gate)`.
#[derive(Debug, Clone)]
pub struct Geglu {
    proj: Linear,
    inner: usize,
}

impl Geglu {
    /// Loads `proj` (`dim -> 2 * inner`).
    pub fn new(dim: usize, inner: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj: linear(dim, 2 * inner, vb.pp("proj"))?,
            inner,
        })
    }

    /// The projection to `[value, gate]`.
    pub fn projection(&self) -> &Linear {
        &self.proj
    }

    /// `[..., dim]` -> `[..., inner]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `--dtype bf16` on a CPU with a bf16 dot-product kernel: projection and gate fused.
        if let Some(y) = self.proj.forward_packed_geglu(x)? {
            return Ok(y);
        }
        let h = self.proj.forward(x)?;
        // Training on the CPU in f32: one fused op with an analytic backward. bf16 weights
        // on the CPU (`--dtype bf16`, held to PSNR, not to PyTorch's f32 parity) take it too:
        // one vectorised pass instead of libm's scalar `erf` and two more tensors.
        let bf16_inference = self.proj.is_cpu_bf16() && h.dtype() == DType::F32;
        if bf16_inference || super::cpu_f32::cpu_f32_training(&[&h]) {
            let op = super::geglu_op::GegluOp { inner: self.inner };
            return h.contiguous()?.apply_op1(op);
        }
        let value = h.narrow(D::Minus1, 0, self.inner)?;
        let gate = h.narrow(D::Minus1, self.inner, self.inner)?;
        value * gate.gelu_erf()?
    }
}

/// `net.0` (GEGLU) then `net.2` (linear back to `dim`).
#[derive(Debug, Clone)]
pub struct FeedForward {
    geglu: Geglu,
    out: Linear,
}

impl FeedForward {
    /// Loads `net.0.proj` and `net.2` with inner width `mult * dim`.
    pub fn new(dim: usize, mult: usize, vb: VarBuilder) -> Result<Self> {
        let inner = dim * mult;
        Ok(Self {
            geglu: Geglu::new(dim, inner, vb.pp("net.0"))?,
            out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }

    /// `[..., dim]` -> `[..., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.geglu.forward(x)?)
    }
}
