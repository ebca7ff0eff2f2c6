//! Adding a per-channel bias (`y = x + b` with `b` broadcast along every axis but one) with
//! a fast gradient for `b`.
//!
//! `x.broadcast_add(b)` is exact but its backward pass sums the output gradient over the
//! broadcast axes with candle's generic reduction, which pays two integer divisions per
//! element when the kept axis is not the last one (a convolution's `[B, C, H, W]`, a linear
//! layer's `[B, T, C]` summed over B and T). In `perf` those sums were about 15 % of a UNet
//! training step. Here the bias gradient is one pass over contiguous runs instead.
//! Inference (nothing tracks gradients), other devices and other dtypes keep
//! `broadcast_add`; the forward values are identical either way.

use super::cpu_f32::{contiguous_f32, cpu_f32_training};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows of a last-axis bias (a linear layer's `[rows, C]`) per parallel task.
const ROWS_PER_TASK: usize = 256;

/// `x + bias`, where `bias` (`[C]`) lines up with axis `dim` of `x` (`x.dim(dim) == C`).
pub fn add_channel_bias(x: &Tensor, bias: &Tensor, dim: usize) -> Result<Tensor> {
    let channels = x.dim(dim)?;
    if bias.dims() != [channels] {
        bail!(
            "channel bias: {:?} does not match axis {dim} of {:?}",
            bias.dims(),
            x.dims()
        );
    }
    if cpu_f32_training(&[x, bias]) {
        return x
            .contiguous()?
            .apply_op2(&bias.contiguous()?, ChannelBias { dim });
    }
    let mut shape = vec![1; x.rank()];
    shape[dim] = channels;
    x.broadcast_add(&bias.reshape(shape)?)
}

/// The sizes before, at and after axis `dim`: `(outer, channels, inner)`.
fn split_at_axis(dims: &[usize], dim: usize) -> Result<(usize, usize, usize)> {
    if dim >= dims.len() {
        bail!("channel bias: axis {dim} of a rank-{} tensor", dims.len());
    }
    let outer = dims[..dim].iter().product();
    let inner = dims[dim + 1..].iter().product();
    Ok((outer, dims[dim], inner))
}

/// The forward op: `x` and `bias`, both contiguous f32.
struct ChannelBias {
    dim: usize,
}

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "kakusan-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "channel bias: input")?;
        let bias = contiguous_f32(s2, l2, "channel bias: bias")?;
        let (_, channels, inner) = split_at_axis(l1.dims(), self.dim)?;
        if bias.len() != channels || inner == 0 || channels == 0 {
            return Ok((CpuStorage::F32(x.to_vec()), l1.shape().clone()));
        }
        let mut out = x.to_vec();
        if inner == 1 {
            // The last axis (a linear layer): whole rows of C, vectorised, in parallel.
            out.par_chunks_mut(channels * ROWS_PER_TASK)
                .for_each(|block| {
                    for row in block.chunks_mut(channels) {
                        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                    }
                });
        } else {
            for (run, chunk) in out.chunks_mut(inner).enumerate() {
                let b = bias[run % channels];
                chunk.iter_mut().for_each(|v| *v += b);
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_bias = grad
            .contiguous()?
            .apply_op1_no_bwd(&SumPerChannel { dim: self.dim })?;
        Ok((Some(grad.clone()), Some(grad_bias)))
    }
}

/// `[.., C, ..]` -> `[C]`: the sum over every axis but `dim` (the bias gradient).
struct SumPerChannel {
    dim: usize,
}

impl CustomOp1 for SumPerChannel {
    fn name(&self) -> &'static str {
        "kakusan-sum-per-channel"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s, l, "channel bias: gradient")?;
        let (_, channels, inner) = split_at_axis(l.dims(), self.dim)?;
        // f64 totals: a bias gradient sums up to B*H*W terms.
        let mut totals = vec![0f64; channels];
        if inner == 1 && channels > 0 {
            // The last axis: f32 sums over blocks of rows (in parallel), then the blocks'
            // sums in f64, in block order (deterministic).
            let blocks: Vec<Vec<f32>> = g
                .par_chunks(channels * ROWS_PER_TASK)
                .map(|block| {
                    let mut acc = vec![0f32; channels];
                    for row in block.chunks(channels) {
                        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                    }
                    acc
                })
                .collect();
            for block in &blocks {
                totals
                    .iter_mut()
                    .zip(block)
                    .for_each(|(t, v)| *t += f64::from(*v));
            }
        } else if inner > 0 && channels > 0 {
            for (run, chunk) in g.chunks(inner).enumerate() {
                totals[run % channels] += chunk.iter().sum::<f32>() as f64;
            }
        }
        let out = totals.into_iter().map(|t| t as f32).collect();
        Ok((CpuStorage::F32(out), Shape::from(channels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_util::max_abs_diff;
    use candle_core::{DType, Device, Var};

    /// Forward and both gradients against `broadcast_add`, for the kept axis first, in the
    /// middle and last.
    #[test]
    fn matches_broadcast_add_with_gradients() {
        let dev = Device::Cpu;
        for (dims, dim) in [
            (vec![3usize, 5, 4, 2], 1usize),
            (vec![2, 7, 6], 2),
            (vec![6, 2, 3], 0),
            // A linear layer's last axis over more rows than one parallel block.
            (vec![3, 200, 5], 2),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap())
                .unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, dims[dim], &dev).unwrap()).unwrap();
            let ours = add_channel_bias(x.as_tensor(), b.as_tensor(), dim).unwrap();
            let mut shape = vec![1; dims.len()];
            shape[dim] = dims[dim];
            let theirs = x
                .as_tensor()
                .broadcast_add(&b.as_tensor().reshape(shape).unwrap())
                .unwrap();
            // The same single f32 addition per element: exact.
            assert_eq!(max_abs_diff(&ours, &theirs), 0.0);
            let r = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (&theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gx = max_abs_diff(go.get(&x).unwrap(), gt.get(&x).unwrap());
            assert_eq!(gx, 0.0, "x gradient, dims {dims:?} axis {dim}");
            // Sums of at most 600 terms of size ~1 in another order: 1e-4.
            let gb = max_abs_diff(go.get(&b).unwrap(), gt.get(&b).unwrap());
            assert!(gb < 1e-4, "bias gradient {gb}, dims {dims:?} axis {dim}");
        }
    }

    #[test]
    fn untracked_input_uses_broadcast_add_and_shape_errors_are_reported() {
        let dev = Device::Cpu;
        let x = Tensor::ones((2, 3, 4), DType::F32, &dev).unwrap();
        let b = Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap();
        let y = add_channel_bias(&x, &b, 1).unwrap();
        let row: Vec<f32> = y.get(0).unwrap().get(2).unwrap().to_vec1().unwrap();
        assert_eq!(row, vec![4.0; 4]);
        assert!(add_channel_bias(&x, &b, 2).is_err());
        assert!(add_channel_bias(&x, &b, 3).is_err());
    }
}
