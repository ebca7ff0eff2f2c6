//! Group normalisation (`torch.nn.GroupNorm` with affine weight and bias).
//!
//! The per-group mean and variance are accumulated in f64 so that large groups (hundreds of
//! thousands of elements at 512x512) do not lose precision; the result is applied as
//! `x * scale + shift` per channel in the input's dtype, the same arrangement PyTorch's CPU
//! kernel uses.

use candle_core::{bail, DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::norm_statistics::{intercept, Intercept};

/// `GroupNorm(num_groups, num_channels, eps, affine=True)`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    channels: usize,
    eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` (both `[channels]`).
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            bail!(
                "group norm at {:?}: {groups} groups do not divide {channels} channels",
                vb.prefix()
            );
        }
        let widen = super::cpu_bf16::widen_small_parameter;
        let weight = widen(vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?)?;
        let bias = widen(vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?)?;
        Ok(Self {
            weight,
            bias,
            groups,
            channels,
            eps,
        })
    }

    /// Builds the layer from tensors already at hand (tests, synthetic layers).
    pub fn from_tensors(weight: Tensor, bias: Tensor, groups: usize, eps: f64) -> Result<Self> {
        let channels = weight.dims1()?;
        if bias.dims1()? != channels {
            bail!(
                "group norm bias has {} entries, weight {channels}",
                bias.dims1()?
            );
        }
        if groups == 0 || !channels.is_multiple_of(groups) {
            bail!("group norm: {groups} groups do not divide {channels} channels");
        }
        Ok(Self {
            weight,
            bias,
            groups,
            channels,
            eps,
        })
    }

    /// Normalises `x` of shape `[B, C, ...]` over each group of `C / groups` channels and
    /// all trailing positions.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        if let Intercept::Fixed { mean, var } = intercept(x, self.groups)? {
            return self.normalize_with(x, &mean, &var, false);
        }
        self.forward_own_statistics(x)
    }

    /// [`Self::forward`] by the input's own statistics, whatever the statistics tape says.
    fn forward_own_statistics(&self, x: &Tensor) -> Result<Tensor> {
        if super::fused_norms::fused_applies(&[x, &self.weight, &self.bias]) {
            return self.fused(x, false);
        }
        self.forward_tensor_ops(x)
    }

    /// `x` must be `[B, channels, ...]`.
    fn check_input(&self, x: &Tensor) -> Result<()> {
        let dims = x.dims();
        if dims.len() < 2 || dims[1] != self.channels {
            bail!(
                "group norm expects [batch, {}, ...], got {:?}",
                self.channels,
                dims
            );
        }
        Ok(())
    }

    /// The fused CPU kernel, followed by SiLU when `silu`.
    fn fused(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let op = super::fused_norms::FusedGroupNorm::new(self.groups, self.eps, silu);
        x.apply_op3(&self.weight, &self.bias, op)
    }

    /// `silu(self.forward(x))`; on the CPU in f32 one fused op (one pass over the output
    /// less, and in training no separate activation tensor or gradient; SiLU's `exp`
    /// approximated to ~2e-7).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        if let Intercept::Fixed { mean, var } = intercept(x, self.groups)? {
            return self.normalize_with(x, &mean, &var, true);
        }
        if super::fused_norms::fused_applies(&[x, &self.weight, &self.bias]) {
            return self.fused(x, true);
        }
        self.forward_own_statistics(x)?.silu()
    }

    /// Normalises with given per-(picture, group) means and variances (row-major
    /// `[B, groups]`), then SiLU when `silu`: the tiles of one picture under
    /// [`super::norm_statistics::replay`].
    fn normalize_with(&self, x: &Tensor, mean: &[f64], var: &[f64], silu: bool) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let per_group = self.channels / self.groups;
        let weight = self.weight.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let bias = self.bias.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let mut scale = Vec::with_capacity(batch * self.channels);
        let mut shift = Vec::with_capacity(batch * self.channels);
        for p in 0..batch {
            for c in 0..self.channels {
                let g = p * self.groups + c / per_group;
                let s = weight[c] / (var[g] + self.eps).sqrt();
                scale.push(s);
                shift.push(bias[c] - mean[g] * s);
            }
        }
        let per_channel = |v: Vec<f64>| Tensor::from_vec(v, (batch, self.channels), x.device());
        let y = self.apply_per_channel(x, &per_channel(scale)?, &per_channel(shift)?)?;
        if silu {
            y.silu()
        } else {
            Ok(y)
        }
    }

    /// The device- and dtype-generic path (also the reference for the fused kernel).
    fn forward_tensor_ops(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let batch = dims[0];
        let x64 = x.to_dtype(DType::F64)?.reshape((batch, self.groups, ()))?;
        let count = x64.dim(2)? as f64;
        let mean = (x64.sum_keepdim(2)? / count)?;
        let var = (x64.broadcast_sub(&mean)?.sqr()?.sum_keepdim(2)? / count)?;
        let rstd = (var + self.eps)?.sqrt()?.recip()?;

        // Per (batch, channel): scale = rstd * weight, shift = bias - mean * scale.
        let per_group = self.channels / self.groups;
        let spread = |t: &Tensor| -> Result<Tensor> {
            t.broadcast_as((batch, self.groups, per_group))?
                .reshape((batch, self.channels))
        };
        let scale = spread(&rstd)?.broadcast_mul(&self.weight.to_dtype(DType::F64)?)?;
        let shift = self
            .bias
            .to_dtype(DType::F64)?
            .broadcast_sub(&(spread(&mean)? * &scale)?)?;

        self.apply_per_channel(x, &scale, &shift)
    }

    /// `x * scale + shift` in `x`'s dtype, with `scale` and `shift` `[B, channels]` (f64)
    /// broadcast over the trailing positions.
    fn apply_per_channel(&self, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let mut bc_shape = vec![1usize; x.rank()];
        bc_shape[0] = x.dim(0)?;
        bc_shape[1] = self.channels;
        let scale = scale.to_dtype(x.dtype())?.reshape(bc_shape.as_slice())?;
        let shift = shift.to_dtype(x.dtype())?.reshape(bc_shape.as_slice())?;
        x.broadcast_mul(&scale)?.broadcast_add(&shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused group norm + SiLU against the two ops, forward and the input,
    /// weight and bias gradients.
    #[test]
    fn fused_silu_matches_norm_then_silu_with_gradients() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 6, 5, 4), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 6, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 6, &dev).unwrap()).unwrap();
        let norm =
            GroupNorm::from_tensors(w.as_tensor().clone(), b.as_tensor().clone(), 3, 1e-5).unwrap();
        let ours = norm.forward_silu(x.as_tensor()).unwrap();
        let theirs = norm.forward(x.as_tensor()).unwrap().silu().unwrap();
        let max = crate::nn::test_util::max_abs;
        // The same formula on the same normalised values, exp to ~2e-7 relative.
        assert!(max(&(&ours - &theirs).unwrap()) < 1e-6);
        let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
        let go = crate::nn::test_util::weighted_sum_grads(&ours, &r);
        let gt = crate::nn::test_util::weighted_sum_grads(&theirs, &r);
        for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
            let (a, c) = (
                go.get(v.as_tensor()).unwrap(),
                gt.get(v.as_tensor()).unwrap(),
            );
            let d = max(&(a - c).unwrap());
            assert!(d < 1e-5 * max(c).max(1.0), "{name}: {d}");
        }
        // Without gradients (inference) the same fused op runs: the same values.
        let frozen =
            GroupNorm::from_tensors(w.as_tensor().detach(), b.as_tensor().detach(), 3, 1e-5)
                .unwrap();
        let plain = frozen.forward_silu(&x.as_tensor().detach()).unwrap();
        assert_eq!(max(&(&plain - &ours).unwrap()), 0.0);
        // Other dtypes take the two ops.
        let wide = GroupNorm::from_tensors(
            w.as_tensor().to_dtype(DType::F64).unwrap(),
            b.as_tensor().to_dtype(DType::F64).unwrap(),
            3,
            1e-5,
        )
        .unwrap()
        .forward_silu(&x.as_tensor().to_dtype(DType::F64).unwrap())
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert!(max(&(&wide - &theirs).unwrap()) < 1e-5);
    }

    /// Direct formula in f64: (x - mean_g) / sqrt(var_g + eps) * w_c + b_c.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        b: usize,
        c: usize,
        hw: usize,
        g: usize,
        w: &[f32],
        bias: &[f32],
        eps: f64,
    ) -> Vec<f64> {
        let mut out = vec![0f64; x.len()];
        let cpg = c / g;
        for n in 0..b {
            for gi in 0..g {
                let start = n * c * hw + gi * cpg * hw;
                let vals: Vec<f64> = x[start..start + cpg * hw]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                for (k, v) in vals.iter().enumerate() {
                    let ch = gi * cpg + k / hw;
                    out[start + k] =
                        (v - mean) / (var + eps).sqrt() * w[ch] as f64 + bias[ch] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_formula_with_an_offset_input() {
        let (b, c, h, w, g) = (2, 6, 3, 5, 3);
        let n = b * c * h * w;
        // A large common offset makes a one-pass E[x^2]-E[x]^2 variance visibly wrong.
        let x: Vec<f32> = (0..n)
            .map(|i| 100.0 + ((i * 37 % 23) as f32 - 11.0) * 0.013)
            .collect();
        let wt: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
        let bs: Vec<f32> = (0..c).map(|i| i as f32 * -0.1).collect();
        let dev = Device::Cpu;
        let norm = GroupNorm::from_tensors(
            Tensor::new(wt.as_slice(), &dev).unwrap(),
            Tensor::new(bs.as_slice(), &dev).unwrap(),
            g,
            1e-5,
        )
        .unwrap();
        let xt = Tensor::from_vec(x.clone(), (b, c, h, w), &dev).unwrap();
        let y: Vec<f32> = norm
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = naive(&x, b, c, h * w, g, &wt, &bs, 1e-5);
        let max_err = y
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        // Outputs are O(2). PyTorch's `x * scale + shift` arrangement (ours too) cancels two
        // terms of size |mean| / std ~ 1100 here, so f32 rounding costs ~1e-4; allow 1e-3.
        // A one-pass f32 variance (E[x^2] - E[x]^2 with E[x^2] = 1e4) would be off by O(1).
        assert!(max_err < 1e-3, "max error {max_err}");
    }

    #[test]
    fn fused_kernel_equals_tensor_ops_bit_for_bit() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0.5f32, 2.0, (2, 8, 5, 3), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.3, 8, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 8, &dev).unwrap();
        let norm = GroupNorm::from_tensors(w, b, 4, 1e-6).unwrap();
        let fused = norm.forward(&x).unwrap();
        let plain = norm.forward_tensor_ops(&x).unwrap();
        let diff = crate::nn::test_util::max_abs_diff(&fused, &plain);
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn rejects_wrong_channel_count_and_bad_groups() {
        let dev = Device::Cpu;
        let ones = Tensor::ones(4, DType::F32, &dev).unwrap();
        assert!(GroupNorm::from_tensors(ones.clone(), ones.clone(), 3, 1e-5).is_err());
        let norm = GroupNorm::from_tensors(ones.clone(), ones, 2, 1e-5).unwrap();
        let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &dev).unwrap();
        let err = norm.forward(&x).unwrap_err().to_string();
        assert!(err.contains("expects [batch, 4"), "{err}");
    }

    #[test]
    fn fused_backward_equals_autograd_of_the_tensor_ops() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0.7f32, 1.5, (2, 8, 5, 3), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 8, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 8, &dev).unwrap()).unwrap();
        // A random upstream gradient, so no symmetry hides a wrong term.
        let r = Tensor::randn(0f32, 1.0, (2, 8, 5, 3), &dev).unwrap();
        let norm =
            GroupNorm::from_tensors(w.as_tensor().clone(), b.as_tensor().clone(), 4, 1e-5).unwrap();
        crate::nn::test_util::assert_same_gradients(
            &norm.forward(x.as_tensor()).unwrap(),
            &norm.forward_tensor_ops(x.as_tensor()).unwrap(),
            &r,
            &[("x", &x), ("weight", &w), ("bias", &b)],
            "group norm",
        );
    }
}
