//! Single-pass CPU kernels for the f32 group and layer norms of inference. They compute
//! exactly what the tensor-op paths in `group_norm.rs` / `layer_norm.rs` compute (f64
//! statistics, then `x * scale + shift` in f32), in one allocation instead of six. They
//! are used only for contiguous f32 CPU tensors that do not need gradients; everything
//! else (GPU, half precision, training) takes the tensor-op path.

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// Whether the fused kernels can run on these tensors.
pub(crate) fn fused_applies(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| {
        t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous() && !t.track_op()
    })
}

/// Contiguous f32 slice of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("fused norm: {what} must be f32")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("fused norm: {what} must be contiguous"),
    }
}

/// Mean and `1 / sqrt(var + eps)` of a slice, accumulated in f64 in two passes.
fn moments(values: &[f32], eps: f64) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Group norm over `[B, C, ...]` with per-channel weight and bias.
pub(crate) struct FusedGroupNorm {
    pub groups: usize,
    pub eps: f64,
}

impl CustomOp3 for FusedGroupNorm {
    fn name(&self) -> &'static str {
        "kakusan-fused-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "input")?;
        let weight = f32_slice(s2, l2, "weight")?;
        let bias = f32_slice(s3, l3, "bias")?;
        let dims = l1.dims();
        if dims.len() < 2 {
            bail!("fused group norm: input rank {} < 2", dims.len());
        }
        let (batch, channels) = (dims[0], dims[1]);
        let positions: usize = dims[2..].iter().product();
        if self.groups == 0
            || channels % self.groups != 0
            || weight.len() != channels
            || bias.len() != channels
        {
            bail!(
                "fused group norm: {channels} channels, {} groups, weight {}, bias {}",
                self.groups,
                weight.len(),
                bias.len()
            );
        }
        let per_group = channels / self.groups;
        let group_len = per_group * positions;
        let mut out = vec![0f32; x.len()];
        for n in 0..batch {
            for g in 0..self.groups {
                let start = (n * self.groups + g) * group_len;
                let (mean, rstd) = moments(&x[start..start + group_len], self.eps);
                for k in 0..per_group {
                    let ch = g * per_group + k;
                    let scale = rstd * weight[ch] as f64;
                    let shift = (bias[ch] as f64 - mean * scale) as f32;
                    let scale = scale as f32;
                    let from = start + k * positions;
                    let src = &x[from..from + positions];
                    let dst = &mut out[from..from + positions];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = v * scale + shift;
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Layer norm over the last dimension with weight and bias.
pub(crate) struct FusedLayerNorm {
    pub eps: f64,
}

impl CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "kakusan-fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "input")?;
        let weight = f32_slice(s2, l2, "weight")?;
        let bias = f32_slice(s3, l3, "bias")?;
        let dim = weight.len();
        if dim == 0 || bias.len() != dim || l1.dims().last() != Some(&dim) {
            bail!(
                "fused layer norm: input {:?}, weight {dim}, bias {}",
                l1.dims(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let (mean, rstd) = moments(src, self.eps);
            let shift = (-(mean * rstd)) as f32;
            let rstd = rstd as f32;
            for ((d, &v), (&w, &b)) in dst.iter_mut().zip(src).zip(weight.iter().zip(bias)) {
                *d = (v * rstd + shift) * w + b;
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
