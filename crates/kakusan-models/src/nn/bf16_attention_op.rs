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
//!
//! The operands stay in the layout of the projections, `[B, L, heads * d]`: each head's
//! rows are read `heads * d` apart and its output written into its columns of `[B, Lq,
//! heads * dv]`, so no head is split into a contiguous copy and merged back.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::attention_op::operands;
use super::avx2::with_avx512;
use super::bf16_gemm::{f32_pair, gemm_bf16, Kernel, PackedA, PackedB, NR};
use super::fast_exp::exp_approx;

/// `softmax(q k^T * scale) v` per head over `[B, Lq, heads * d]`, `[B, Lk, heads * d]`,
/// `[B, Lk, heads * dv]` (out `[B, Lq, heads * dv]`) at bf16 precision, on `kernel`.
pub(crate) struct Bf16Attention {
    pub scale: f32,
    pub kernel: Kernel,
    pub heads: usize,
}

/// Where the output goes: rows of `ld` values, one task writing only its own rows' columns
/// of its head.
#[derive(Clone, Copy)]
struct OutputRows {
    first: *mut f32,
    ld: usize,
}

impl OutputRows {
    /// The rows starting `offset` values further, `ld` apart as before.
    ///
    /// # Safety
    /// `offset` must stay inside the buffer `first` points into.
    unsafe fn offset(self, offset: usize) -> Self {
        Self {
            // SAFETY: the caller keeps `offset` inside the buffer.
            first: unsafe { self.first.add(offset) },
            ld: self.ld,
        }
    }
}

// SAFETY: tasks write disjoint elements through an `OutputRows` (their own query rows' columns
// of their own head, see `cpu_fwd`), and the buffer outlives them.
unsafe impl Send for OutputRows {}
unsafe impl Sync for OutputRows {}

/// What one thread reuses from query block to query block.
#[derive(Default)]
struct BlockBuffers {
    queries: PackedB,
    exps: PackedB,
    scores: Vec<f32>,
    out_t: Vec<f32>,
}

impl Bf16Attention {
    /// One block of `rows` (at most [`NR`]) queries `qb` (`rows x d`, rows `ld` apart) of
    /// an item, into `o` (`rows x dv`, rows `o.ld` apart).
    ///
    /// # Safety
    /// `o.first` must point at `rows` rows of `dv` writable values, `o.ld` apart, that no
    /// other task touches.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        buf: &mut BlockBuffers,
        keys: &PackedA,
        values_t: &PackedA,
        (qb, ld): (&[f32], usize),
        o: OutputRows,
        (rows, lk, d, dv): (usize, usize, usize, usize),
    ) {
        buf.queries.pack_f32_transposed(qb, rows, d, ld);
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
        for (j, sum) in sums.into_iter().take(rows).enumerate() {
            let inv = 1.0 / sum;
            // SAFETY: row j < rows of the block, dv values: the caller's.
            let out_row = unsafe { std::slice::from_raw_parts_mut(o.first.add(j * o.ld), dv) };
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
        // Rows of all heads: `[B, L, heads * d]`.
        let ([q, k, v], (batch, lq, lk, hd, hdv)) = operands((s1, l1), (s2, l2), (s3, l3))?;
        let heads = self.heads;
        if heads == 0 || hd % heads != 0 || hdv % heads != 0 {
            candle_core::bail!("bf16 attention: widths {hd} / {hdv} are not {heads} heads");
        }
        let (d, dv) = (hd / heads, hdv / heads);
        let mut out = vec![0f32; batch * lq * hdv];
        let whole = OutputRows {
            first: out.as_mut_ptr(),
            ld: hdv,
        };
        if dv > 0 {
            (0..batch * heads).into_par_iter().for_each(|i| {
                let (b, h) = (i / heads, i % heads);
                let keys = PackedA::from_f32_rows(&k[b * lk * hd + h * d..], lk, d, hd);
                let values_t = PackedA::from_f32_columns(&v[b * lk * hdv + h * dv..], dv, lk, hdv);
                (0..lq.div_ceil(NR)).into_par_iter().for_each_init(
                    BlockBuffers::default,
                    |buf, j| {
                        let rows = (lq - j * NR).min(NR);
                        let first = b * lq + j * NR;
                        let qb = &q[first * hd + h * d..];
                        // SAFETY: query rows first..first + rows of batch b, head h's dv
                        // columns: inside `out`, and no other (i, j) task writes them.
                        let o = unsafe { whole.offset(first * hdv + h * dv) };
                        // SAFETY: as above.
                        unsafe {
                            self.block(buf, &keys, &values_t, (qb, hd), o, (rows, lk, d, dv))
                        };
                    },
                );
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, lq, hdv))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// `[B, L, heads * w]` -> contiguous `[B * heads, L, w]`.
    fn split(t: &Tensor, heads: usize) -> Tensor {
        let (b, l, hw) = t.dims3().unwrap();
        t.reshape((b, l, heads, hw / heads))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b * heads, l, hw / heads))
            .unwrap()
    }

    /// Against the f32 attention of the inputs rounded to bf16, head by head, on the
    /// portable kernel and on the native one where the CPU has it: query counts around the
    /// block size, cross-attention to few keys, odd head widths, one and several heads.
    #[test]
    fn equals_the_attention_of_the_rounded_inputs() {
        let dev = Device::Cpu;
        let mut kernels = vec![Kernel::Portable];
        kernels.extend(Kernel::native());
        for kernel in kernels {
            for (n, heads, lq, lk, d, dv) in [
                (1, 1, 1, 1, 1, 1),
                (2, 1, 33, 77, 40, 40),
                (1, 3, 64, 64, 7, 9),
                (1, 1, 100, 300, 80, 80),
                (2, 4, 45, 77, 8, 8),
            ] {
                let t = |l, w| Tensor::randn(0f32, 1.0, (n, l, heads * w), &dev).unwrap();
                let (q, k, v) = (t(lq, d), t(lk, d), t(lk, dv));
                let scale = 1.0 / (d as f32).sqrt();
                let op = Bf16Attention {
                    scale,
                    kernel,
                    heads,
                };
                let ours = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
                let r = |t: &Tensor| {
                    split(
                        &t.to_dtype(DType::BF16)
                            .unwrap()
                            .to_dtype(DType::F32)
                            .unwrap(),
                        heads,
                    )
                };
                let scores = (r(&q).matmul(&r(&k).t().unwrap()).unwrap() * scale as f64).unwrap();
                let p = candle_nn::ops::softmax_last_dim(&scores).unwrap();
                // Merge the heads back: `[B, Lq, heads * dv]`.
                let theirs = p
                    .matmul(&r(&v))
                    .unwrap()
                    .reshape((n, heads, lq, dv))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((n, lq, heads * dv))
                    .unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                // The probabilities (or here the exponentials) are rounded to bf16 for the
                // second product: a relative 2^-8 per term, so up to 0.4 % of max |v|.
                let d_max = crate::nn::test_util::max_abs_diff(&ours, &theirs);
                let v_max = crate::nn::test_util::max_abs(&v);
                assert!(
                    d_max <= 4e-3 * v_max,
                    "{kernel:?} {n}x{heads}x{lq}x{lk}x{d}x{dv}: {d_max} (max |v| {v_max})"
                );
            }
        }
    }
}
