//! Scaled dot-product attention `softmax(q k^T * scale) v` for `--dtype bf16` on a CPU with
//! a bf16 dot-product kernel (`bf16_gemm.rs`): f32 `q`, `k`, `v` in, f32 out, both products
//! at bf16 precision with f32 sums, as PyTorch's CPU autocast runs attention in bf16. The
//! softmax itself stays f32. Inference only: no backward.
//!
//! One rayon task per batch-and-head item packs its keys and (transposed) values once, then
//! its queries go in blocks of [`NR`]: the block's transposed scores `S^T = K Q^T` (`Lk x
//! NR`, a column per query, so the softmax's maximum, exponentials and sums run across the
//! block's queries as vector lanes), the unnormalised `E^T = exp((S^T - max) * scale)`
//! packed as bf16 pairs in the same pass that sums them, for `O^T = V^T E^T`, and each query's output divided by its sum (the same
//! as normalising the probabilities first, up to f32 rounding). Nothing of size `Lq x Lk`
//! is built.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::attention_op::operands;
use super::avx2::with_avx512;
use super::bf16_gemm::{f32_pair, gemm_bf16, Kernel, PackedA, PackedB, NR};
use super::fast_exp::exp_approx;

/// `softmax(q k^T * scale) v` over `[N, Lq, d]`, `[N, Lk, d]`, `[N, Lk, dv]` at bf16
/// precision, on `kernel`.
pub(crate) struct Bf16Attention {
    pub scale: f32,
    pub kernel: Kernel,
}

/// What one thread reuses from query block to query block.
#[derive(Default)]
struct BlockBuffers {
    queries: PackedB,
    exps: PackedB,
    scores: Vec<f32>,
    out_t: Vec<f32>,
}

impl Bf16Attention {
    /// One block of `rows` (at most [`NR`]) queries `qb` (`rows x d`) of an item, into `o`
    /// (`rows x dv`).
    fn block(
        &self,
        buf: &mut BlockBuffers,
        keys: &PackedA,
        values_t: &PackedA,
        qb: &[f32],
        o: &mut [f32],
        (rows, lk, d, dv): (usize, usize, usize, usize),
    ) {
        buf.queries.pack_f32_transposed(qb, rows, d, d);
        buf.scores.resize(lk * NR, 0.0);
        // SAFETY: `scores` holds lk rows of NR >= rows values.
        unsafe {
            gemm_bf16(
                self.kernel,
                buf.scores.as_mut_ptr(),
                NR,
                keys,
                &buf.queries,
                false,
            )
        };
        let scale = self.scale;
        // Subtracting the column maximum before scaling needs a positive scale.
        debug_assert!(scale > 0.0);
        let mut sums = [0f32; NR];
        let exps = buf.exps.single_panel(lk, rows);
        with_avx512(
            #[inline(always)]
            || {
                let mut max = [f32::NEG_INFINITY; NR];
                for row in buf.scores.chunks_exact(NR) {
                    for (m, &s) in max.iter_mut().zip(row) {
                        *m = if s > *m { s } else { *m };
                    }
                }
                // The exponentials of keys 2q and 2q + 1, summed per query and packed as
                // the pairs of `E^T` in one pass.
                let exp = |s: f32, m: f32| exp_approx((s - m) * scale);
                let mut rows_of_keys = buf.scores.chunks_exact(NR);
                for pair in exps.chunks_exact_mut(NR) {
                    let even = rows_of_keys.next().unwrap_or(&[0.0; NR]);
                    match rows_of_keys.next() {
                        Some(odd) => {
                            for c in 0..NR {
                                let (e0, e1) = (exp(even[c], max[c]), exp(odd[c], max[c]));
                                sums[c] += e0;
                                sums[c] += e1;
                                pair[c] = f32_pair(e0, e1);
                            }
                        }
                        None => {
                            for c in 0..NR {
                                let e0 = exp(even[c], max[c]);
                                sums[c] += e0;
                                pair[c] = f32_pair(e0, 0.0);
                            }
                        }
                    }
                }
            },
        );
        buf.out_t.resize(dv * NR, 0.0);
        // SAFETY: `out_t` holds dv rows of NR >= rows values.
        unsafe {
            gemm_bf16(
                self.kernel,
                buf.out_t.as_mut_ptr(),
                NR,
                values_t,
                &buf.exps,
                false,
            )
        };
        for (j, (out_row, sum)) in o.chunks_exact_mut(dv).zip(sums).take(rows).enumerate() {
            let inv = 1.0 / sum;
            for (r, x) in out_row.iter_mut().enumerate() {
                *x = buf.out_t[r * NR + j] * inv;
            }
        }
    }
}

impl CustomOp3 for Bf16Attention {
    fn name(&self) -> &'static str {
        "kakusan-bf16-attention"
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
        if dv > 0 {
            out.par_chunks_mut((lq * dv).max(1))
                .enumerate()
                .for_each(|(i, item)| {
                    let keys = PackedA::from_f32_rows(&k[i * lk * d..], lk, d, d);
                    let values_t = PackedA::from_f32_columns(&v[i * lk * dv..], dv, lk, dv);
                    item.par_chunks_mut(NR * dv).enumerate().for_each_init(
                        BlockBuffers::default,
                        |buf, (j, o)| {
                            let rows = o.len() / dv;
                            let first = i * lq + j * NR;
                            let qb = &q[first * d..(first + rows) * d];
                            self.block(buf, &keys, &values_t, qb, o, (rows, lk, d, dv));
                        },
                    );
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, lq, dv))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// Against the f32 attention of the inputs rounded to bf16, on the portable kernel and
    /// on the native one where the CPU has it: query counts around the block size, cross-
    /// attention to few keys, odd head widths.
    #[test]
    fn equals_the_attention_of_the_rounded_inputs() {
        let dev = Device::Cpu;
        let mut kernels = vec![Kernel::Portable];
        kernels.extend(Kernel::native());
        for kernel in kernels {
            for (n, lq, lk, d, dv) in [
                (1, 1, 1, 1, 1),
                (2, 33, 77, 40, 40),
                (3, 64, 64, 7, 9),
                (1, 100, 300, 80, 80),
            ] {
                let t = |l, w| Tensor::randn(0f32, 1.0, (n, l, w), &dev).unwrap();
                let (q, k, v) = (t(lq, d), t(lk, d), t(lk, dv));
                let scale = 1.0 / (d as f32).sqrt();
                let op = Bf16Attention { scale, kernel };
                let ours = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
                let r = |t: &Tensor| {
                    t.to_dtype(DType::BF16)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap()
                };
                let scores = (r(&q).matmul(&r(&k).t().unwrap()).unwrap() * scale as f64).unwrap();
                let p = candle_nn::ops::softmax_last_dim(&scores).unwrap();
                let theirs = p.matmul(&r(&v)).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                // The probabilities (or here the exponentials) are rounded to bf16 for the
                // second product: a relative 2^-8 per term, so up to 0.4 % of max |v|.
                let d_max = crate::nn::test_util::max_abs_diff(&ours, &theirs);
                let v_max = crate::nn::test_util::max_abs(&v);
                assert!(
                    d_max <= 4e-3 * v_max,
                    "{kernel:?} {n}x{lq}x{lk}x{d}x{dv}: {d_max} (max |v| {v_max})"
                );
            }
        }
    }
}
