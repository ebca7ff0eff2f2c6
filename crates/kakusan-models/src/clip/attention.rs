//! Multi-head self-attention of a CLIP encoder layer, with a causal mask.

use crate::nn::{linear, Linear};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::ClipTextConfig;

/// `q_proj`, `k_proj`, `v_proj`, `out_proj` and the head split.
#[derive(Debug, Clone)]
pub(crate) struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl ClipAttention {
    pub(crate) fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: linear(d, d, vb.pp("q_proj"))?,
            k_proj: linear(d, d, vb.pp("k_proj"))?,
            v_proj: linear(d, d, vb.pp("v_proj"))?,
            out_proj: linear(d, d, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            scale: (cfg.head_dim() as f64).powf(-0.5),
        })
    }

    /// `x`: [batch, seq, hidden]; `mask`: [seq, seq] f32 of 0 and -inf, added to the scores.
    /// Scores and softmax are computed in f32 whatever the weights' dtype.
    pub(crate) fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let heads = |t: Tensor| {
            t.reshape((b, s, self.num_heads, d / self.num_heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(x)?)?;
        let k = heads(self.k_proj.forward(x)?)?;
        let v = heads(self.v_proj.forward(x)?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? * self.scale)?
            .to_dtype(DType::F32)?
            .broadcast_add(mask)?;
        let probs = crate::nn::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, d))?;
        self.out_proj.forward(&out)
    }
}

/// The [seq, seq] causal mask: 0 on and below the diagonal, -inf above (a token sees
/// itself and the tokens before it).
pub(crate) fn causal_mask(seq: usize, device: &candle_core::Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, seq), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn causal_mask_shape_and_values() {
        let m = causal_mask(3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_eq!(m[1], [0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(m[2], [0.0, 0.0, 0.0]);
    }
}
