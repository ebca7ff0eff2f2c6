//! The feed-forward's projection and gated GELU in one op for `--dtype bf16` on a CPU with
//! a bf16 dot-product kernel: `out = value * gelu(gate)` where `[value, gate] = x W^T + b`,
//! `W` packed at load (`prepacked_bf16.rs`). Inference only.
//!
//! The projection's output is twice the inner width (`[8192, 5120]`, 168 MB, at SD 1.5's
//! 64x64 level): built whole, it was fresh memory (page faults and page clearing) written
//! once and read once. Here each task multiplies a block of rows into a buffer that stays in
//! the cache and writes only the gated half.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::avx2::with_avx512;
use super::bf16_gemm::{gemm_bf16, PackedA, MR};
use super::cpu_f32::contiguous_f32;
use super::geglu_op::normal_cdf_pdf;
use super::prepacked_bf16::PrepackedLinear;

/// Rows per task: the block's projection (`ROWS x 2 * inner` f32, 1.9 MiB at inner 2560)
/// stays in the L2 cache.
const ROWS: usize = 4 * MR;

/// `x` `[rows, in]` and the projection's bias `[2 * inner]` -> `[rows, inner]`.
pub(crate) struct Bf16GegluLinear<'a> {
    pub projection: &'a PrepackedLinear,
}

impl CustomOp2 for Bf16GegluLinear<'_> {
    fn name(&self) -> &'static str {
        "kakusan-bf16-geglu-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let w = self.projection;
        let &[rows, features] = xl.dims() else {
            bail!("bf16 GEGLU: expects [rows, in], got {:?}", xl.dims())
        };
        if features != w.features || !w.out.is_multiple_of(2) {
            bail!(
                "bf16 GEGLU: input has {features} features, the projection [{}, {}]",
                w.out,
                w.features
            );
        }
        let x = contiguous_f32(xs, xl, "bf16 GEGLU: input")?;
        let bias = contiguous_f32(bs, bl, "bf16 GEGLU: bias")?;
        if bias.len() != w.out {
            bail!("bf16 GEGLU: bias has {} values for {}", bias.len(), w.out);
        }
        let inner = w.out / 2;
        let mut out = vec![0f32; rows * inner];
        if inner > 0 && features > 0 {
            out.par_chunks_mut(ROWS * inner)
                .zip(x.par_chunks(ROWS * features))
                .for_each_init(Vec::new, |h: &mut Vec<f32>, (out, x)| {
                    let m = x.len() / features;
                    let a = PackedA::from_f32_rows(x, m, features, features);
                    h.resize(m * w.out, 0.0);
                    // SAFETY: h holds m rows of w.out values.
                    unsafe { gemm_bf16(w.kernel, h.as_mut_ptr(), w.out, &a, &w.b, false) };
                    with_avx512(
                        #[inline(always)]
                        || {
                            let (bv, bg) = (&bias[..inner], &bias[inner..2 * inner]);
                            for (o, h) in out.chunks_exact_mut(inner).zip(h.chunks_exact(w.out)) {
                                // Equal lengths, indexed: the loop vectorises (a zip of four
                                // iterators stayed scalar).
                                let (value, gate) = (&h[..inner], &h[inner..2 * inner]);
                                let o = &mut o[..inner];
                                for i in 0..inner {
                                    let (v, g) = (value[i] + bv[i], gate[i] + bg[i]);
                                    o[i] = v * g * normal_cdf_pdf(g).0;
                                }
                            }
                        },
                    );
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, inner))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::prepacked_bf16::prepack_linear;
    use candle_core::{DType, Device, Tensor, D};

    /// Against the packed linear layer then the GEGLU op (the unfused bf16 path), on row
    /// counts around the block size; nothing to compare where the CPU has no bf16 kernel.
    #[test]
    fn equals_the_projection_then_the_gated_gelu() {
        let dev = Device::Cpu;
        let (features, inner) = (24, 40);
        let weight = Tensor::randn(0f32, 0.3, (2 * inner, features), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let Some(packed) = prepack_linear(&weight).unwrap() else {
            return;
        };
        let bias = Tensor::randn(0f32, 0.3, 2 * inner, &dev).unwrap();
        for rows in [1, ROWS - 1, ROWS, 3 * ROWS + 5] {
            let x = Tensor::randn(0f32, 1.0, (rows, features), &dev).unwrap();
            let op = Bf16GegluLinear {
                projection: &packed,
            };
            let ours = x.apply_op2_no_bwd(&bias, &op).unwrap();
            let h = x
                .apply_op1_no_bwd(&crate::nn::bf16_linear_op::PackedBf16Linear(&packed))
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let theirs = h
                .apply_op1_no_bwd(&crate::nn::geglu_op::GegluOp { inner })
                .unwrap();
            assert_eq!(ours.dims(), &[rows, inner]);
            // The same products and sums; only the bias is added in another place.
            let d = crate::nn::test_util::max_abs_diff(&ours, &theirs);
            let scale = crate::nn::test_util::max_abs(&theirs).max(1.0);
            assert!(d <= 1e-6 * scale, "{rows} rows: {d}");
            // And the value half is not the gate half: a swapped split would differ.
            let swapped = (h.narrow(D::Minus1, inner, inner).unwrap()
                * h.narrow(D::Minus1, 0, inner).unwrap().gelu_erf().unwrap())
            .unwrap();
            assert!(crate::nn::test_util::max_abs_diff(&ours, &swapped) > 1e-3);
        }
    }
}
