//! Layer normalisation over the last dimension (`torch.nn.LayerNorm(dim, eps)` with weight
//! and bias), with statistics in f64 and the affine step in the input's dtype, arranged as
//! PyTorch's CPU kernel does: `(x * rstd - mean * rstd) * weight + bias`.

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::VarBuilder;

/// `LayerNorm(dim, eps, elementwise_affine=True)`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` (both `[dim]`).
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let widen = super::cpu_bf16::widen_small_parameter;
        Ok(Self {
            weight: widen(vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?)?,
            bias: widen(vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?)?,
            eps,
        })
    }

    /// Builds the layer from tensors already at hand.
    pub fn from_tensors(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalises over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.dim(0)?;
        if x.dim(D::Minus1)? != dim {
            bail!(
                "layer norm expects a last dimension of {dim}, got {:?}",
                x.dims()
            );
        }
        if super::fused_norms::fused_applies(&[x, &self.weight, &self.bias]) {
            let op = super::fused_norms::FusedLayerNorm { eps: self.eps };
            return x.apply_op3(&self.weight, &self.bias, op);
        }
        self.forward_tensor_ops(x)
    }

    /// The device- and dtype-generic path (also the reference for the fused kernel).
    fn forward_tensor_ops(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.dim(0)?;
        let x64 = x.to_dtype(DType::F64)?;
        let mean = (x64.sum_keepdim(D::Minus1)? / dim as f64)?;
        let var = (x64.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / dim as f64)?;
        let rstd = (var + self.eps)?.sqrt()?.recip()?;
        let shift = (mean * &rstd)?.neg()?;
        let rstd = rstd.to_dtype(x.dtype())?;
        let shift = shift.to_dtype(x.dtype())?;
        x.broadcast_mul(&rstd)?
            .broadcast_add(&shift)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_formula() {
        let dev = Device::Cpu;
        let rows = 3;
        let dim = 8;
        let x: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.7 + 5.0)
            .collect();
        let w: Vec<f32> = (0..dim).map(|i| 1.0 + i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..dim).map(|i| i as f32 * 0.05).collect();
        let norm = LayerNorm::from_tensors(
            Tensor::new(w.as_slice(), &dev).unwrap(),
            Tensor::new(b.as_slice(), &dev).unwrap(),
            1e-5,
        );
        let y: Vec<f32> = norm
            .forward(&Tensor::from_vec(x.clone(), (rows, dim), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for r in 0..rows {
            let row: Vec<f64> = x[r * dim..(r + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64;
            for k in 0..dim {
                let want = (row[k] - mean) / (var + 1e-5).sqrt() * w[k] as f64 + b[k] as f64;
                let got = y[r * dim + k] as f64;
                // O(1) values computed in f32: a few ulp.
                assert!(
                    (got - want).abs() < 1e-5,
                    "row {r} col {k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn fused_kernel_equals_tensor_ops_bit_for_bit() {
        let dev = Device::Cpu;
        let x = Tensor::randn(3f32, 2.0, (2, 7, 12), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.3, 12, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 12, &dev).unwrap();
        let norm = LayerNorm::from_tensors(w, b, 1e-5);
        let fused = norm.forward(&x).unwrap();
        let plain = norm.forward_tensor_ops(&x).unwrap();
        let diff = crate::nn::test_util::max_abs_diff(&fused, &plain);
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn fused_backward_equals_autograd_of_the_tensor_ops() {
        use candle_core::Var;
        let dev = Device::Cpu;
        // 14 rows, and 900 (several parallel blocks of rows, the last one partial).
        for rows in [7, 450] {
            let x = Var::from_tensor(&Tensor::randn(0.7f32, 1.5, (2, rows, 12), &dev).unwrap())
                .unwrap();
            let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 12, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 12, &dev).unwrap()).unwrap();
            // A random upstream gradient, so no symmetry hides a wrong term.
            let r = Tensor::randn(0f32, 1.0, (2, rows, 12), &dev).unwrap();
            let norm = LayerNorm::from_tensors(w.as_tensor().clone(), b.as_tensor().clone(), 1e-5);
            crate::nn::test_util::assert_same_gradients(
                &norm.forward(x.as_tensor()).unwrap(),
                &norm.forward_tensor_ops(x.as_tensor()).unwrap(),
                &r,
                &[("x", &x), ("weight", &w), ("bias", &b)],
                &format!("{rows} rows"),
            );
        }
    }
}
