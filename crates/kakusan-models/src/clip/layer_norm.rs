//! Layer normalisation computed in f32 with a two-pass variance, as torch computes it.
//!
//! candle-nn's fused CPU kernel takes the variance as `E[x²] - E[x]²`, which loses digits
//! when a row's mean is large against its spread (CLIP's hidden states have a few large
//! channels); subtracting the mean first keeps fp32 results within the fixtures' 1e-5.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `size` from `vb`.
    pub(crate) fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight.to_dtype(DType::F32)?)?
            .broadcast_add(&self.bias.to_dtype(DType::F32)?)?
            .to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn normalises_rows_even_with_a_large_mean() {
        let dev = Device::Cpu;
        let ln = LayerNorm {
            weight: Tensor::new(&[1f32, 2., 1., 1.], &dev).unwrap(),
            bias: Tensor::new(&[0f32, 0., 0., 1.], &dev).unwrap(),
            eps: 1e-5,
        };
        // Row mean 1e4, spread ±1: E[x²]-E[x]² in f32 would lose everything.
        let x = Tensor::new(&[[9999f32, 10001., 9999., 10001.]], &dev).unwrap();
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let s = 1.0 / (1.0f32 + 1e-5).sqrt();
        let want = [-s, 2. * s, -s, s + 1.];
        for (a, b) in y[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{:?} vs {want:?}", y[0]);
        }
    }
}
