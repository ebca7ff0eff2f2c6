//! Softmax over the last axis that trains.
//!
//! `candle_nn::ops::softmax_last_dim` is a fast fused kernel, but a custom op without a
//! backward pass: in a tracked graph it silently passes no gradient to its input. Attention
//! built on it never trained its query and key projections (the VAE's mid-block attention,
//! every UNet attention, the CLIP text encoder); `kakusan-train`'s test that every decoder
//! variable receives a gradient found it. Here:
//! - untracked input (inference) keeps candle's kernel, so generation is bit for bit as before;
//! - tracked f32 input on the CPU runs our own fused forward with an analytic backward,
//!   `dx = p * (g - sum(g * p))` per row, in one pass per row;
//! - anything else tracked (other devices, half precision) uses candle's composite
//!   `softmax`, whose backward candle derives.

use super::cpu_f32::contiguous_f32;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D,
};

/// `softmax(x)` along the last axis, with gradients when `x` is tracked.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(SoftmaxLastDim);
    }
    candle_nn::ops::softmax(x, D::Minus1)
}

fn last_dim(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("softmax: needs a non-empty last axis, got {:?}", l.dims()),
    }
}

/// The forward op, on contiguous f32 rows.
struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "kakusan-softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "softmax: input")?;
        let n = last_dim(l)?;
        let mut out = vec![0f32; x.len()];
        for (row, o) in x.chunks(n).zip(out.chunks_mut(n)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - max).exp();
                total += *o;
            }
            let inv = 1.0 / total;
            o.iter_mut().for_each(|v| *v *= inv);
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = res
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?;
        Ok(Some(dx))
    }
}

/// `(p, g) -> p * (g - sum(g * p))` per row: the gradient of softmax's input.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "kakusan-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = contiguous_f32(s1, l1, "softmax grad: probabilities")?;
        let g = contiguous_f32(s2, l2, "softmax grad: gradient")?;
        if l1.dims() != l2.dims() {
            bail!("softmax grad: {:?} vs {:?}", l1.dims(), l2.dims());
        }
        let n = last_dim(l1)?;
        let mut out = vec![0f32; p.len()];
        for ((p, g), o) in p.chunks(n).zip(g.chunks(n)).zip(out.chunks_mut(n)) {
            let dot: f32 = p.iter().zip(g).map(|(a, b)| a * b).sum();
            for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
                *o = p * (g - dot);
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_util::max_abs_diff;
    use candle_core::{Device, Var};

    /// Values and input gradients against candle's composite softmax (which candle
    /// differentiates itself), on rows of odd lengths and a transposed (non-contiguous) input.
    #[test]
    fn matches_candle_softmax_values_and_gradients() {
        let dev = Device::Cpu;
        for dims in [vec![3usize, 7], vec![2, 5, 33], vec![4, 1]] {
            let x = Var::from_tensor(
                &(Tensor::randn(0f32, 3.0, dims.as_slice(), &dev).unwrap() + 1.0).unwrap(),
            )
            .unwrap();
            let ours = softmax_last_dim(x.as_tensor()).unwrap();
            let theirs = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
            // exp and a sum of <= 33 terms in another order: a few ulps of values <= 1.
            assert!(max_abs_diff(&ours, &theirs) < 1e-6);
            let r = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (&theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (g_ours, g_theirs) = (go.get(&x).unwrap(), gt.get(&x).unwrap());
            let d = max_abs_diff(g_ours, g_theirs);
            // p (r - sum(p r)) with |r| up to ~4 (random, unseeded): a few ulps of the
            // largest gradient, relative (an absolute 1e-6 failed once in CI at 1.04e-6).
            let scale = crate::nn::test_util::max_abs(g_theirs).max(1.0);
            assert!(
                d < 1e-6 * scale,
                "gradient differs by {d} for {dims:?} (scale {scale})"
            );
        }
        // A transposed view goes through `contiguous` first.
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap()).unwrap();
        let t = x.as_tensor().t().unwrap();
        let ours = softmax_last_dim(&t).unwrap();
        let theirs = candle_nn::ops::softmax(&t, D::Minus1).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-6);
        let g = ours.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let h = theirs.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_abs_diff(g.get(&x).unwrap(), h.get(&x).unwrap()) < 1e-6);
    }

    /// Untracked input takes candle's kernel: identical numbers to before this module.
    #[test]
    fn inference_is_candles_kernel() {
        let x = Tensor::randn(0f32, 2.0, (3, 9), &Device::Cpu).unwrap();
        let ours = softmax_last_dim(&x).unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert_eq!(max_abs_diff(&ours, &theirs), 0.0);
    }
}
