//! A linear layer (`torch.nn.Linear`: `y = x W^T + b` over the last axis) whose training
//! backward pass avoids candle's slow broadcast reductions.
//!
//! The input is flattened to one matrix so the weight is never broadcast over a batch axis
//! (whose gradient would be a strided sum), and the bias goes through
//! [`add_channel_bias`]. Weights are created with the same initialisation hints as
//! `candle_nn::linear` when a builder creates variables. bf16 weights on the CPU (`--dtype
//! bf16`) multiply f32 activations through [`PackedBf16Linear`] (packed at load) on a CPU
//! with a bf16 dot-product kernel, else through [`Bf16Linear`].

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::bf16_geglu_linear_op::Bf16GegluLinear;
use super::bf16_linear_op::{Bf16Linear, PackedBf16Linear};
use super::channel_bias::add_channel_bias;
use super::prepacked_bf16::{prepack_linear, PrepackedLinear};

/// `weight` `[out, in]` and an optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

/// The weight as the layer multiplies it.
#[derive(Debug, Clone)]
enum LinearWeight {
    Tensor(Tensor),
    /// bf16 on a CPU with a bf16 dot-product kernel: packed once at load, the tensor dropped
    /// (`prepacked_bf16.rs`).
    Packed(PrepackedLinear),
}

/// A linear layer with bias.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_b(in_dim, out_dim, true, vb)
}

/// A linear layer with or without bias.
pub fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bias = if bias {
        let bound = 1.0 / (in_dim as f64).sqrt();
        Some(super::cpu_bf16::widen_small_parameter(vb.get_with_hints(
            out_dim,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?)?)
    } else {
        None
    };
    Linear::new(weight, bias)
}

impl Linear {
    /// A layer of `weight` `[out, in]` and `bias`; a bf16 weight on a CPU with a bf16
    /// dot-product kernel is packed for it now (and kept only in that form).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = match prepack_linear(&weight)? {
            Some(packed) => LinearWeight::Packed(packed),
            None => LinearWeight::Tensor(weight),
        };
        Ok(Self { weight, bias })
    }

    /// The weight tensor, `None` when it was packed at load (`--dtype bf16` on a CPU with
    /// a bf16 dot-product kernel).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            LinearWeight::Tensor(w) => Some(w),
            LinearWeight::Packed(_) => None,
        }
    }

    /// Whether the layer multiplies by bf16 weights on the CPU (`--dtype bf16`).
    pub(crate) fn is_cpu_bf16(&self) -> bool {
        match &self.weight {
            LinearWeight::Tensor(w) => super::cpu_bf16::is_cpu_bf16(w),
            LinearWeight::Packed(_) => true,
        }
    }

    /// The gated GELU of this projection's output `[value, gate]`, `value * gelu(gate)`, in
    /// one op (`bf16_geglu_linear_op.rs`) when the weight was packed at load, the layer has
    /// a bias and `x` is f32; `None` otherwise.
    pub(crate) fn forward_packed_geglu(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let (LinearWeight::Packed(projection), Some(bias)) = (&self.weight, &self.bias) else {
            return Ok(None);
        };
        if x.dtype() != DType::F32 || bias.dtype() != DType::F32 {
            return Ok(None);
        }
        let dims = x.dims().to_vec();
        let Some((&features, lead)) = dims.split_last() else {
            candle_core::bail!("linear: a scalar input");
        };
        let rows: usize = lead.iter().product();
        let op = Bf16GegluLinear { projection };
        let y = x
            .contiguous()?
            .reshape((rows, features))?
            .apply_op2_no_bwd(&bias.contiguous()?, &op)?;
        let mut shape = lead.to_vec();
        shape.push(projection.out / 2);
        Ok(Some(y.reshape(shape)?))
    }

    fn out_dim(&self) -> Result<usize> {
        match &self.weight {
            LinearWeight::Tensor(w) => w.dim(0),
            LinearWeight::Packed(p) => Ok(p.out),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&features, lead)) = dims.split_last() else {
            candle_core::bail!("linear: a scalar input");
        };
        let rows: usize = lead.iter().product();
        let x2 = x.contiguous()?.reshape((rows, features))?;
        let y = match &self.weight {
            LinearWeight::Packed(p) if x.dtype() == DType::F32 => {
                x2.apply_op1_no_bwd(&PackedBf16Linear(p))?
            }
            LinearWeight::Packed(p) => x2
                .to_dtype(DType::F32)?
                .apply_op1_no_bwd(&PackedBf16Linear(p))?
                .to_dtype(x.dtype())?,
            LinearWeight::Tensor(w)
                if super::cpu_bf16::is_cpu_bf16(w) && x.dtype() == DType::F32 =>
            {
                x2.apply_op2_no_bwd(w, &Bf16Linear)?
            }
            LinearWeight::Tensor(w) => x2.matmul(&w.t()?)?,
        };
        let out_dim = self.out_dim()?;
        let mut out_shape = lead.to_vec();
        out_shape.push(out_dim);
        let y = y.reshape(out_shape)?;
        match &self.bias {
            Some(b) => add_channel_bias(&y, b, dims.len() - 1),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_util::{max_abs, max_abs_diff};
    use candle_core::{DType, Device, Var};

    /// Forward and gradients against candle_nn's Linear, on 2-, 3- and 4-D inputs and a
    /// non-contiguous one.
    #[test]
    fn matches_candle_linear_with_gradients() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (5, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 5, &dev).unwrap()).unwrap();
        let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())).unwrap();
        let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let inputs = [
            Tensor::randn(0f32, 1.0, (4, 3), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 4, 3), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 2, 4, 3), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 3, 4), &dev)
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        ];
        for x in inputs {
            let x = Var::from_tensor(&x).unwrap();
            let yo = ours.forward(x.as_tensor()).unwrap();
            let yt = theirs.forward(x.as_tensor()).unwrap();
            assert_eq!(yo.dims(), yt.dims());
            // Dot products of 3 terms, possibly summed in another order by the GEMM.
            assert!(max_abs_diff(&yo, &yt) <= 1e-6 * max_abs(&yt).max(1.0));
            let r = Tensor::randn(0f32, 1.0, yo.dims(), &dev).unwrap();
            let go = (&yo * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (&yt * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &b] {
                let (a, e) = (go.get(v).unwrap(), gt.get(v).unwrap());
                // Sums of at most 16 products in another order.
                assert!(max_abs_diff(a, e) <= 1e-5 * max_abs(e).max(1.0));
            }
        }
    }

    /// bf16 weights loaded on the CPU: the weight stays bf16, the bias is widened, and a
    /// 3-D f32 input gives the f32 product of its bf16-rounded values plus the bias.
    #[test]
    fn bf16_weights_multiply_f32_activations() {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.3, (6, 10), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let bias = Tensor::randn(0f32, 0.3, 6, &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let map = std::collections::HashMap::from([
            ("weight".to_string(), weight.clone()),
            ("bias".to_string(), bias),
        ]);
        let lin = linear(10, 6, VarBuilder::from_tensors(map, DType::BF16, &dev)).unwrap();
        assert!(lin.is_cpu_bf16());
        // Packed at load (and the tensor dropped) exactly where the CPU has a bf16
        // dot-product kernel.
        assert_eq!(
            lin.weight().is_none(),
            super::super::bf16_gemm::Kernel::native().is_some()
        );
        let b = lin.bias.clone().unwrap();
        assert_eq!(b.dtype(), DType::F32);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 10), &dev).unwrap();
        let y = lin.forward(&x).unwrap();
        assert_eq!((y.dims(), y.dtype()), (&[2, 3, 6][..], DType::F32));
        let expected = x
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .broadcast_matmul(&weight.to_dtype(DType::F32).unwrap().t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        // Sums of 10 exact products in another order.
        assert!(max_abs_diff(&y, &expected) <= 1e-6 * max_abs(&expected).max(1.0));
    }

    #[test]
    fn loads_without_bias_and_rejects_scalars() {
        let dev = Device::Cpu;
        let vb = VarBuilder::zeros(DType::F32, &dev);
        let lin = linear_b(3, 2, false, vb).unwrap();
        assert!(lin.bias.is_none());
        assert!(lin.forward(&Tensor::new(1f32, &dev).unwrap()).is_err());
        let y = lin
            .forward(&Tensor::ones((4, 3), DType::F32, &dev).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[4, 2]);
    }
}
