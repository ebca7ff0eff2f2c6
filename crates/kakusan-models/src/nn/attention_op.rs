//! Scaled dot-product attention `softmax(q k^T * scale) v` as one CPU f32 custom op with an
//! analytic backward: training, and (without the backward) CPU f32 inference.
//!
//! The forward pass runs one rayon task per batch-and-head item and block of
//! [`QUERY_BLOCK`] queries: its scores, softmax and output with single-threaded GEMMs in a
//! scratch matrix of `QUERY_BLOCK x Lk` (1 MB for the 4096 keys of a 512x512 SD picture, so
//! it stays in the cache); nothing of size `Lq x Lk` is ever built or enters candle's
//! graph. The backward pass recomputes the probabilities `P` of the item and forms
//! `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(dP * P))`, `dQ = scale dS K` and
//! `dK = scale dS^T Q`. Against candle's composite (matmul, our softmax op, matmul), this
//! saves the score and probability tensors, their gradients and the gradient store's
//! zero-fill and accumulation of each.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::avx2::with_avx512;
use super::cpu_f32::{contiguous_f32, f32_view};
use super::fast_exp::exp_approx;
use super::small_gemm::{matmul, View};

/// Queries per task of the forward pass.
const QUERY_BLOCK: usize = 64;

/// Most probabilities the forward pass keeps for the backward (256 MB); above, the
/// backward recomputes them.
const MAX_KEPT_PROBABILITIES: usize = 64 << 20;

/// Most spare probability buffers kept between training steps (one per attention layer of a
/// UNet is what a step reuses; a handful of sizes).
const MAX_SPARE_BUFFERS: usize = 16;

/// Probability buffers the backward passes are done with, for the next forward pass of the
/// same size to fill without zeroing a fresh allocation (up to 64 MB each, every step).
static SPARE_PROBABILITIES: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `len` probabilities: a spare one of that length, else a fresh zeroed one.
/// Its contents are arbitrary: the caller overwrites every element.
fn probability_buffer(len: usize) -> Vec<f32> {
    let spare = SPARE_PROBABILITIES.lock().ok().and_then(|mut spare| {
        let i = spare.iter().position(|b| b.len() == len)?;
        Some(spare.swap_remove(i))
    });
    spare.unwrap_or_else(|| vec![0f32; len])
}

/// Hands `buffer` back for a later [`probability_buffer`] (dropped when enough are spare).
fn return_probability_buffer(buffer: Vec<f32>) {
    if let Ok(mut spare) = SPARE_PROBABILITIES.lock() {
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buffer);
        }
    }
}

/// `softmax(q k^T * scale) v` over `[N, Lq, d]`, `[N, Lk, d]`, `[N, Lk, dv]`.
pub(crate) struct AttentionOp {
    pub scale: f32,
    /// Training: the forward pass keeps the probabilities (`N x Lq x Lk`, when at most
    /// [`MAX_KEPT_PROBABILITIES`]) for the backward, which then need not recompute them.
    pub keep_probabilities: bool,
    /// The kept probabilities, taken by the backward.
    pub kept: std::sync::Mutex<Option<Vec<f32>>>,
}

impl AttentionOp {
    /// The op for inference (nothing kept).
    pub fn inference(scale: f32) -> Self {
        Self {
            scale,
            keep_probabilities: false,
            kept: std::sync::Mutex::new(None),
        }
    }

    /// The op for training (probabilities kept for the backward when small enough).
    pub fn training(scale: f32) -> Self {
        Self {
            keep_probabilities: true,
            ..Self::inference(scale)
        }
    }
}

/// An attention's sizes `(n, lq, lk, d, dv)`.
type Sizes = (usize, usize, usize, usize, usize);

/// The f32 data of an attention op's `q`, `k`, `v` (contiguous) and their sizes, checked:
/// what the f32 and the bf16 attention ops read.
pub(crate) fn operands<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
) -> Result<([&'a [f32]; 3], Sizes)> {
    let q = contiguous_f32(s1, l1, "attention: q")?;
    let k = contiguous_f32(s2, l2, "attention: k")?;
    let v = contiguous_f32(s3, l3, "attention: v")?;
    Ok(([q, k, v], sizes(l1.dims(), l2.dims(), l3.dims())?))
}

/// The sizes `(n, lq, lk, d, dv)` of an attention, checked.
fn sizes(q: &[usize], k: &[usize], v: &[usize]) -> Result<Sizes> {
    let (&[n, lq, d], &[nk, lk, dk], &[nv, lv, dv]) = (q, k, v) else {
        bail!("attention: q {q:?}, k {k:?}, v {v:?} must be 3-D");
    };
    if nk != n || nv != n || dk != d || lv != lk {
        bail!("attention shapes do not fit: q {q:?}, k {k:?}, v {v:?}");
    }
    if lk == 0 {
        bail!("attention over no keys: k {k:?}");
    }
    Ok((n, lq, lk, d, dv))
}

/// The probabilities `softmax(q k^T * scale)` of one item into `p` (`lq x lk`).
#[inline(always)]
fn probabilities(q: &[f32], k: &[f32], p: &mut [f32], lq: usize, lk: usize, d: usize, scale: f32) {
    // Subtracting the row maximum before scaling needs a positive scale (1 / sqrt(d)).
    debug_assert!(scale > 0.0);
    let (qv, kt) = (View::row_major(q, d), View::row_major(k, d).transposed());
    matmul(p, lq, lk, d, qv, kt, false);
    for row in p.chunks_exact_mut(lk) {
        let max = lane_max(row);
        // Separate passes, so that each one vectorises (a running sum in the exp loop is a
        // serial dependency that keeps the whole loop scalar).
        row.iter_mut()
            .for_each(|s| *s = exp_approx((*s - max) * scale));
        let inv = 1.0 / lane_sum(row);
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

/// Accumulator lanes of [`lane_max`] and [`lane_sum`] (one AVX register of f32).
const LANES: usize = 8;

/// The maximum of `v` (`-inf` when empty), over [`LANES`] independent running maxima.
#[inline(always)]
fn lane_max(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    tail.iter()
        .chain(&m)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// The dot product of `a` and `b`, over [`LANES`] independent partial sums.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The sum of `v`, over [`LANES`] independent partial sums.
#[inline(always)]
fn lane_sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().chain(tail).sum()
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "kakusan-attention"
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
        let ([q, k, v], (n, lq, lk, d, dv)) = operands((s1, l1), (s2, l2), (s3, l3))?;
        let mut out = vec![0f32; n * lq * dv];
        if self.keep_probabilities && n * lq * lk <= MAX_KEPT_PROBABILITIES {
            // Training: one task per item, its probabilities written where they are kept
            // (every element: `probabilities` overwrites its rows, so a spare buffer will do).
            let mut p = probability_buffer(n * lq * lk);
            out.par_chunks_mut((lq * dv).max(1))
                .zip(p.par_chunks_mut((lq * lk).max(1)))
                .enumerate()
                .for_each(|(i, (o, pi))| {
                    with_avx512(
                        #[inline(always)]
                        || {
                            let qi = &q[i * lq * d..(i + 1) * lq * d];
                            let ki = &k[i * lk * d..(i + 1) * lk * d];
                            let vi = &v[i * lk * dv..(i + 1) * lk * dv];
                            probabilities(qi, ki, pi, lq, lk, d, self.scale);
                            let (pv, vv) = (View::row_major(pi, lk), View::row_major(vi, dv));
                            matmul(o, lq, dv, lk, pv, vv, false);
                        },
                    )
                });
            if let Ok(mut kept) = self.kept.lock() {
                *kept = Some(p);
            }
            return Ok((CpuStorage::F32(out), Shape::from((n, lq, dv))));
        }
        let block = QUERY_BLOCK.min(lq).max(1);
        out.par_chunks_mut((lq * dv).max(1))
            .enumerate()
            .for_each(|(i, item)| {
                let ki = &k[i * lk * d..(i + 1) * lk * d];
                let vi = &v[i * lk * dv..(i + 1) * lk * dv];
                item.par_chunks_mut(block * dv.max(1))
                    .enumerate()
                    .for_each_init(
                        || vec![0f32; block * lk],
                        |p, (j, o)| {
                            let rows = o.len().checked_div(dv).unwrap_or(0);
                            let first = i * lq + j * block;
                            let qb = &q[first * d..(first + rows) * d];
                            let p = &mut p[..rows * lk];
                            with_avx512(
                                #[inline(always)]
                                || probabilities(qb, ki, p, rows, lk, d, self.scale),
                            );
                            let (pv, vv) = (View::row_major(p, lk), View::row_major(vi, dv));
                            matmul(o, rows, dv, lk, pv, vv, false);
                        },
                    );
            });
        Ok((CpuStorage::F32(out), Shape::from((n, lq, dv))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, lq, lk, d, dv) = sizes(q.dims(), k.dims(), v.dims())?;
        let views = (f32_view(q)?, f32_view(k)?, f32_view(v)?, f32_view(grad)?);
        let (qv, kv, vv, go): (&[f32], &[f32], &[f32], &[f32]) =
            (&views.0, &views.1, &views.2, &views.3);
        let (mut dq, mut dk, mut dvv) = (
            vec![0f32; n * lq * d],
            vec![0f32; n * lk * d],
            vec![0f32; n * lk * dv],
        );
        let scale = self.scale;
        let kept = self
            .kept
            .lock()
            .ok()
            .and_then(|mut k| k.take())
            .filter(|p| p.len() == n * lq * lk);
        dq.par_chunks_mut((lq * d).max(1))
            .zip(dk.par_chunks_mut((lk * d).max(1)))
            .zip(dvv.par_chunks_mut((lk * dv).max(1)))
            .enumerate()
            .for_each_init(
                || (vec![0f32; lq * lk], vec![0f32; lq * lk]),
                |(p, dp), (i, ((dqi, dki), dvi))| {
                    with_avx512(
                        #[inline(always)]
                        || {
                            let qi = &qv[i * lq * d..(i + 1) * lq * d];
                            let ki = &kv[i * lk * d..(i + 1) * lk * d];
                            let vi = &vv[i * lk * dv..(i + 1) * lk * dv];
                            let goi = &go[i * lq * dv..(i + 1) * lq * dv];
                            let p: &[f32] = match &kept {
                                Some(all) => &all[i * lq * lk..(i + 1) * lq * lk],
                                None => {
                                    probabilities(qi, ki, p, lq, lk, d, scale);
                                    p
                                }
                            };
                            let (pv, gov) = (View::row_major(p, lk), View::row_major(goi, dv));
                            // dV = P^T dO; dP = dO V^T.
                            matmul(dvi, lk, dv, lq, pv.transposed(), gov, false);
                            let vt = View::row_major(vi, dv).transposed();
                            matmul(dp, lq, lk, dv, gov, vt, false);
                            // dS = scale * P * (dP - rowsum(dP * P)), in place of dP.
                            for (drow, prow) in dp.chunks_exact_mut(lk).zip(p.chunks_exact(lk)) {
                                let dot = lane_dot(drow, prow);
                                for (g, &pp) in drow.iter_mut().zip(prow.iter()) {
                                    *g = scale * pp * (*g - dot);
                                }
                            }
                            let ds = View::row_major(dp, lk);
                            // dQ = dS K; dK = dS^T Q.
                            matmul(dqi, lq, d, lk, ds, View::row_major(ki, d), false);
                            matmul(
                                dki,
                                lk,
                                d,
                                lq,
                                ds.transposed(),
                                View::row_major(qi, d),
                                false,
                            );
                        },
                    )
                },
            );
        if let Some(p) = kept {
            return_probability_buffer(p);
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dvv, v.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn lane_reductions_cover_every_element() {
        for len in [0usize, 1, 7, 8, 9, 23, 64] {
            let v: Vec<f32> = (0..len).map(|i| ((i * 37) % 11) as f32 - 3.0).collect();
            let max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(&v), max, "{len}");
            assert_eq!(lane_sum(&v), v.iter().sum::<f32>(), "{len}");
            let w: Vec<f32> = (0..len).map(|i| (i % 3) as f32 - 1.0).collect();
            let dot: f32 = v.iter().zip(&w).map(|(a, b)| a * b).sum();
            assert_eq!(lane_dot(&v, &w), dot, "{len}");
        }
        // The largest element in the tail or in any lane.
        let mut v = vec![0f32; 19];
        for at in 0..19 {
            v.fill(0.0);
            v[at] = 5.0;
            assert_eq!(lane_max(&v), 5.0);
        }
    }

    /// Forward and all three gradients against the composite (matmul, softmax, matmul), for
    /// self- and cross-attention shapes.
    #[test]
    fn matches_the_composite_with_gradients() {
        let dev = Device::Cpu;
        for (n, lq, lk, d, dv) in [(3usize, 5usize, 5usize, 4usize, 4usize), (2, 7, 11, 3, 6)] {
            let var = |shape: (usize, usize, usize)| {
                Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
            };
            let (q, k, v) = (var((n, lq, d)), var((n, lk, d)), var((n, lk, dv)));
            let scale = 0.7f32;
            // Training keeps the probabilities for the backward; the inference op under
            // apply_op3 recomputes them there: both must give the composite's gradients.
            let kept = q
                .as_tensor()
                .apply_op3(k.as_tensor(), v.as_tensor(), AttentionOp::training(scale))
                .unwrap();
            let recomputed = q
                .as_tensor()
                .apply_op3(k.as_tensor(), v.as_tensor(), AttentionOp::inference(scale))
                .unwrap();
            let scores = (q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap()
                * scale as f64)
                .unwrap();
            let theirs = candle_nn::ops::softmax_last_dim(&scores)
                .unwrap()
                .matmul(v.as_tensor())
                .unwrap();
            let theirs = {
                // candle's fused softmax has no backward: the composite with exp / sum.
                let e = (&scores
                    - scores
                        .max_keepdim(2)
                        .unwrap()
                        .broadcast_as(scores.dims())
                        .unwrap())
                .unwrap()
                .exp()
                .unwrap();
                let p = e.broadcast_div(&e.sum_keepdim(2).unwrap()).unwrap();
                let check = p.matmul(v.as_tensor()).unwrap();
                let diff = (&check - &theirs)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
                check
            };
            let max = crate::nn::test_util::max_abs;
            assert_eq!(max(&(&kept - &recomputed).unwrap()), 0.0);
            assert!(max(&(&kept - &theirs).unwrap()) < 1e-5, "forward");
            let r = Tensor::randn(0f32, 1.0, (n, lq, dv), &dev).unwrap();
            let gt = crate::nn::test_util::weighted_sum_grads(&theirs, &r);
            for ours in [&kept, &recomputed] {
                let go = crate::nn::test_util::weighted_sum_grads(ours, &r);
                for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                    let (a, b) = (
                        go.get(x.as_tensor()).unwrap(),
                        gt.get(x.as_tensor()).unwrap(),
                    );
                    let dmax = max(&(a - b).unwrap());
                    assert!(dmax < 1e-4 * max(b).max(1.0), "{name}: {dmax}");
                }
            }
        }
    }

    /// A training step's backward hands its probability buffer back to the pool and the next
    /// forward of the same size fills it again: five forward + backward rounds on the same
    /// inputs give bit-identical outputs and gradients (a stale element left in a reused
    /// buffer, or a buffer handed out twice, would change them).
    #[test]
    fn reused_probability_buffers_give_identical_steps() {
        let dev = Device::Cpu;
        let (n, lq, lk, d, dv) = (4usize, 37usize, 29usize, 8usize, 8usize);
        let var = |shape: (usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
        };
        let (q, k, v) = (var((n, lq, d)), var((n, lk, d)), var((n, lk, dv)));
        let r = Tensor::randn(0f32, 1.0, (n, lq, dv), &dev).unwrap();
        let step = || {
            let y = q
                .as_tensor()
                .apply_op3(k.as_tensor(), v.as_tensor(), AttentionOp::training(0.35))
                .unwrap();
            let grads = crate::nn::test_util::weighted_sum_grads(&y, &r);
            let mut all = vec![y.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            for x in [&q, &k, &v] {
                let g = grads.get(x.as_tensor()).unwrap();
                all.push(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            all
        };
        let first = step();
        for round in 1..5 {
            let again = step();
            for (a, b) in first.iter().zip(&again) {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "round {round} differs");
            }
        }
    }
}
