//! Single-pass CPU kernels for the f32 group and layer norms. The forward computes exactly
//! what the tensor-op paths in `group_norm.rs` / `layer_norm.rs` compute (f64 statistics,
//! then `x * scale + shift` in f32), in one allocation instead of six; the backward is the
//! analytic gradient in one pass per group (f64 accumulators), so training does not go
//! through candle's op-by-op autograd of the f64 formula. They are used for contiguous f32
//! CPU tensors; everything else (GPU, half precision) takes the tensor-op path.

use super::avx2::with_avx512;
use super::cpu_f32::{contiguous_f32, f32_values as values, f32_view};
use super::fast_exp::exp_approx;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Gradients of `y = (x - mean) * rstd * w + b` over one normalised group of `x` whose
/// channels (each `positions` values long, weight `w[ch]`) start at channel `first_ch`;
/// `(mean, rstd)` are the group's [`moments`]. Adds into `dw` / `db` and writes `dx`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_backward(
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    first_ch: usize,
    positions: usize,
    (mean, rstd): (f64, f64),
    dx: &mut [f32],
    dw: &mut [f64],
    db: &mut [f64],
) {
    let n = x.len().max(1) as f64;
    let (mut sum_g, mut sum_g_xhat) = (0f64, 0f64);
    for (k, (xc, gc)) in x
        .chunks_exact(positions)
        .zip(dy.chunks_exact(positions))
        .enumerate()
    {
        let ch = first_ch + k;
        // sum(g) and sum(g * x) over lanes; sum(g * xhat) = rstd (sum(g x) - mean sum(g)).
        let (s_g, s_gx) = lane_sums2(xc, gc);
        let s_g_xhat = rstd * (s_gx - mean * s_g);
        db[ch] += s_g;
        dw[ch] += s_g_xhat;
        let w = weight[ch] as f64;
        sum_g += s_g * w;
        sum_g_xhat += s_g_xhat * w;
    }
    let (mean_g, mean_g_xhat) = (sum_g / n, sum_g_xhat / n);
    // dx = rstd (g w - mean_g - xhat mean_g_xhat) = a g + b x + c per channel, the
    // coefficients formed in f64, the element loop in f32 (vectorised).
    for (k, ((xc, gc), dc)) in x
        .chunks_exact(positions)
        .zip(dy.chunks_exact(positions))
        .zip(dx.chunks_exact_mut(positions))
        .enumerate()
    {
        let w = weight[first_ch + k] as f64;
        let a = (rstd * w) as f32;
        let b = (-rstd * rstd * mean_g_xhat) as f32;
        let c = (rstd * (rstd * mean * mean_g_xhat - mean_g)) as f32;
        for ((&xv, &g), d) in xc.iter().zip(gc).zip(dc.iter_mut()) {
            *d = a * g + b * xv + c;
        }
    }
}

/// Independent f64 accumulators of the lane sums (an AVX2 register holds 4 f64, two of
/// them hide the add latency; an AVX-512 register holds all 8). The lane structure fixes
/// the summation order, so every vector width gives the same sums.
const LANES: usize = 8;

/// `sum(f(v))` over `values`, accumulated in f64 over [`LANES`] lanes so that the loop
/// vectorises (a single running sum is a serial dependency).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `(sum(g), sum(g * x))` in f64 over [`LANES`] lanes.
#[inline(always)]
fn lane_sums2(x: &[f32], g: &[f32]) -> (f64, f64) {
    let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
    let (cx, cg) = (x.chunks_exact(LANES), g.chunks_exact(LANES));
    let (mut tg, mut tgx) = (0f64, 0f64);
    for (&xv, &gv) in cx.remainder().iter().zip(cg.remainder()) {
        tg += gv as f64;
        tgx += gv as f64 * xv as f64;
    }
    for (xs, gs) in cx.zip(cg) {
        for i in 0..LANES {
            let gv = gs[i] as f64;
            sg[i] += gv;
            sgx[i] += gv * xs[i] as f64;
        }
    }
    (sg.iter().sum::<f64>() + tg, sgx.iter().sum::<f64>() + tgx)
}

/// The weight and bias gradients of parallel tasks, summed in task order (deterministic).
fn summed(partials: &[(Vec<f64>, Vec<f64>)], channels: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut dw, mut db) = (vec![0f64; channels], vec![0f64; channels]);
    for (pw, pb) in partials {
        for (a, b) in dw.iter_mut().zip(pw) {
            *a += b;
        }
        for (a, b) in db.iter_mut().zip(pb) {
            *a += b;
        }
    }
    (dw, db)
}

type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// Packs the computed gradients as tensors shaped like the inputs.
fn grads(x: &Tensor, weight: &Tensor, dx: Vec<f32>, dw: Vec<f64>, db: Vec<f64>) -> Result<Grads3> {
    let dev = x.device();
    let to32 = |v: Vec<f64>| v.into_iter().map(|g| g as f32).collect::<Vec<f32>>();
    Ok((
        Some(Tensor::from_vec(dx, x.shape(), dev)?),
        Some(Tensor::from_vec(to32(dw), weight.shape(), dev)?),
        Some(Tensor::from_vec(to32(db), weight.shape(), dev)?),
    ))
}

/// Whether the fused kernels can run on these tensors.
pub(crate) fn fused_applies(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous())
}

/// Mean and `1 / sqrt(var + eps)` of a slice, accumulated in f64 in two passes.
#[inline(always)]
fn moments(values: &[f32], eps: f64) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = lane_sum(values, |v| v as f64) / n;
    let var = lane_sum(values, |v| {
        let d = v as f64 - mean;
        d * d
    }) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Group norm over `[B, C, ...]` with per-channel weight and bias; with `silu` (training
/// only), followed by SiLU `v / (1 + exp(-v))` in the same pass with the vectorisable
/// [`exp_approx`] (within a few ulp of candle's `silu`), so training keeps no separate
/// activation tensor and gradient.
pub(crate) struct FusedGroupNorm {
    pub groups: usize,
    pub eps: f64,
    pub silu: bool,
    /// Each (picture, group)'s `(mean, rstd)` from the forward pass, taken by the
    /// backward so that it need not recompute them (two passes over the input).
    kept: std::sync::Mutex<Option<Vec<(f64, f64)>>>,
}

impl FusedGroupNorm {
    /// The op; `silu` appends SiLU.
    pub fn new(groups: usize, eps: f64, silu: bool) -> Self {
        Self {
            groups,
            eps,
            silu,
            kept: std::sync::Mutex::new(None),
        }
    }
}

/// A channel's normalisation as `x * scale + shift` in f32 (the arrangement PyTorch's CPU
/// kernel uses): `scale = rstd * w`, `shift = b - mean * scale`, both formed in f64.
#[inline(always)]
fn channel_affine((mean, rstd): (f64, f64), weight: f32, bias: f32) -> (f32, f32) {
    let scale = rstd * weight as f64;
    (scale as f32, (bias as f64 - mean * scale) as f32)
}

/// SiLU's derivative at `v`: `s (1 + v (1 - s))` with `s = sigmoid(v)`.
#[inline(always)]
fn silu_slope(v: f32) -> f32 {
    let s = 1.0 / (1.0 + exp_approx(-v));
    s * (1.0 + v * (1.0 - s))
}

/// Multiplies `dy` of one group by SiLU's derivative at the group's normalised values,
/// recomputed from `x` as the forward pass computed them (`x * scale + shift` in f32).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn silu_backward(
    x: &[f32],
    dy: &mut [f32],
    first_ch: usize,
    positions: usize,
    (mean, rstd): (f64, f64),
    weight: &[f32],
    bias: &[f32],
) {
    for (k, (dc, xc)) in dy
        .chunks_exact_mut(positions)
        .zip(x.chunks_exact(positions))
        .enumerate()
    {
        let (scale, shift) = channel_affine((mean, rstd), weight[first_ch + k], bias[first_ch + k]);
        for (g, &v) in dc.iter_mut().zip(xc) {
            *g *= silu_slope(v * scale + shift);
        }
    }
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
        let x = contiguous_f32(s1, l1, "fused norm: input")?;
        let weight = contiguous_f32(s2, l2, "fused norm: weight")?;
        let bias = contiguous_f32(s3, l3, "fused norm: bias")?;
        let dims = l1.dims();
        if dims.len() < 2 {
            bail!("fused group norm: input rank {} < 2", dims.len());
        }
        let channels = dims[1];
        let positions: usize = dims[2..].iter().product();
        if self.groups == 0
            || !channels.is_multiple_of(self.groups)
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
        let per_item = channels * positions;
        let mut out = vec![0f32; x.len()];
        // One picture of the batch per task.
        let stats: Vec<Vec<(f64, f64)>> = out
            .par_chunks_mut(per_item.max(1))
            .zip(x.par_chunks(per_item.max(1)))
            .map(|(out, x)| {
                with_avx512(
                    #[inline(always)]
                    || {
                        let mut stats = Vec::with_capacity(self.groups);
                        for g in 0..self.groups {
                            let start = g * group_len;
                            let (mean, rstd) = moments(&x[start..start + group_len], self.eps);
                            stats.push((mean, rstd));
                            for k in 0..per_group {
                                let ch = g * per_group + k;
                                let (scale, shift) =
                                    channel_affine((mean, rstd), weight[ch], bias[ch]);
                                let from = start + k * positions;
                                let src = &x[from..from + positions];
                                let dst = &mut out[from..from + positions];
                                if self.silu {
                                    for (d, &v) in dst.iter_mut().zip(src) {
                                        let y = v * scale + shift;
                                        *d = y / (1.0 + exp_approx(-y));
                                    }
                                } else {
                                    for (d, &v) in dst.iter_mut().zip(src) {
                                        *d = v * scale + shift;
                                    }
                                }
                            }
                        }
                        stats
                    },
                )
            })
            .collect();
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(stats.into_iter().flatten().collect());
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let dims = x.dims();
        let channels = dims[1];
        let positions: usize = dims[2..].iter().product();
        let per_group = channels / self.groups;
        let group_len = per_group * positions;
        let (x_view, w_view) = (f32_view(x)?, f32_view(weight)?);
        let (xv, w): (&[f32], &[f32]) = (&x_view, &w_view);
        let mut dy = values(grad)?;
        let b = if self.silu { values(bias)? } else { Vec::new() };
        let mut dx = vec![0f32; xv.len()];
        let per_item = (channels * positions).max(1);
        let pictures = xv.len() / per_item;
        let kept = self
            .kept
            .lock()
            .ok()
            .and_then(|mut k| k.take())
            .filter(|k| k.len() == pictures * self.groups);
        // One picture of the batch per task, each with its own weight and bias gradients,
        // summed in batch order afterwards (deterministic).
        let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
            .par_chunks_mut(per_item)
            .zip(xv.par_chunks(per_item).zip(dy.par_chunks_mut(per_item)))
            .enumerate()
            .map(|(picture, (dx, (xv, dy)))| {
                with_avx512(
                    #[inline(always)]
                    || {
                        let (mut dw, mut db) = (vec![0f64; channels], vec![0f64; channels]);
                        for g in 0..self.groups {
                            let range = g * group_len..(g + 1) * group_len;
                            let stats = match &kept {
                                Some(k) => k[picture * self.groups + g],
                                None => moments(&xv[range.clone()], self.eps),
                            };
                            if self.silu {
                                // Through the SiLU first: dy *= silu'(the normalised value).
                                silu_backward(
                                    &xv[range.clone()],
                                    &mut dy[range.clone()],
                                    g * per_group,
                                    positions,
                                    stats,
                                    w,
                                    &b,
                                );
                            }
                            group_backward(
                                &xv[range.clone()],
                                &dy[range.clone()],
                                w,
                                g * per_group,
                                positions,
                                stats,
                                &mut dx[range],
                                &mut dw,
                                &mut db,
                            );
                        }
                        (dw, db)
                    },
                )
            })
            .collect();
        let (dw, db) = summed(&partials, channels);
        grads(x, weight, dx, dw, db)
    }
}

/// Rows of a layer norm per parallel task (a fixed count, so that the backward's summed
/// weight and bias gradients do not depend on the number of threads).
const LAYER_NORM_ROWS_PER_TASK: usize = 256;

/// Layer norm over the last dimension with weight and bias (rows in parallel).
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
        let x = contiguous_f32(s1, l1, "fused norm: input")?;
        let weight = contiguous_f32(s2, l2, "fused norm: weight")?;
        let bias = contiguous_f32(s3, l3, "fused norm: bias")?;
        let dim = weight.len();
        if dim == 0 || bias.len() != dim || l1.dims().last() != Some(&dim) {
            bail!(
                "fused layer norm: input {:?}, weight {dim}, bias {}",
                l1.dims(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        let block = dim * LAYER_NORM_ROWS_PER_TASK;
        out.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(out, x)| {
                with_avx512(
                    #[inline(always)]
                    || {
                        for (src, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
                            let (mean, rstd) = moments(src, self.eps);
                            let shift = (-(mean * rstd)) as f32;
                            let rstd = rstd as f32;
                            let params = weight.iter().zip(bias);
                            for ((d, &v), (&w, &b)) in dst.iter_mut().zip(src).zip(params) {
                                *d = (v * rstd + shift) * w + b;
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let dim = weight.elem_count();
        let views = (f32_view(x)?, f32_view(grad)?, f32_view(weight)?);
        let (xv, dy, w): (&[f32], &[f32], &[f32]) = (&views.0, &views.1, &views.2);
        let mut dx = vec![0f32; xv.len()];
        // Blocks of rows on all threads, each with its own weight and bias gradients, summed
        // in block order afterwards: the blocks do not depend on the thread count, so the
        // sums are deterministic.
        let block = dim * LAYER_NORM_ROWS_PER_TASK;
        let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
            .par_chunks_mut(block)
            .zip(xv.par_chunks(block).zip(dy.par_chunks(block)))
            .map(|(dx, (xv, dy))| {
                with_avx512(
                    #[inline(always)]
                    || {
                        let (mut dw, mut db) = (vec![0f64; dim], vec![0f64; dim]);
                        let rows = xv.chunks_exact(dim).zip(dy.chunks_exact(dim));
                        for ((xs, gs), d) in rows.zip(dx.chunks_exact_mut(dim)) {
                            // One row is a group of `dim` channels of one position each.
                            let stats = moments(xs, self.eps);
                            group_backward(xs, gs, w, 0, 1, stats, d, &mut dw, &mut db);
                        }
                        (dw, db)
                    },
                )
            })
            .collect();
        let (dw, db) = summed(&partials, dim);
        grads(x, weight, dx, dw, db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The backward with the forward's kept statistics and the backward recomputing them
    /// (an op whose forward never ran) give the same gradients.
    #[test]
    fn kept_statistics_give_the_recomputed_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0.3f32, 1.5, (3, 8, 5, 7), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.3, 8, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 8, &dev).unwrap();
        let g = Tensor::randn(0f32, 1.0, (3, 8, 5, 7), &dev).unwrap();
        for silu in [false, true] {
            let op = FusedGroupNorm::new(4, 1e-5, silu);
            let y = x.apply_op3_no_bwd(&w, &b, &op).unwrap();
            assert!(op.kept.lock().unwrap().is_some());
            let kept = op.bwd(&x, &w, &b, &y, &g).unwrap();
            assert!(op.kept.lock().unwrap().is_none(), "taken by the backward");
            let fresh = FusedGroupNorm::new(4, 1e-5, silu);
            let recomputed = fresh.bwd(&x, &w, &b, &y, &g).unwrap();
            let pairs = [
                (kept.0, recomputed.0),
                (kept.1, recomputed.1),
                (kept.2, recomputed.2),
            ];
            for (a, c) in pairs {
                let d = crate::nn::test_util::max_abs(&(a.unwrap() - c.unwrap()).unwrap());
                assert_eq!(d, 0.0, "silu {silu}");
            }
        }
    }
}
