//! `y = x W^T` with f32 activations `x` `[rows, in]` and bf16 weights `W` `[out, in]` on
//! the CPU (`--dtype bf16`): `x` rounded to bf16, both operands' products exact in f32,
//! f32 sums (`cpu_bf16.rs`), in blocks of rows on all threads. Inference only: no backward.
//! On a CPU with a bf16 dot-product kernel (`bf16_gemm.rs`) the layer packs `W` at load and
//! runs [`PackedBf16Linear`]; elsewhere [`Bf16Linear`] widens `W` for the f32 GEMM.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::bf16_gemm::{gemm_bf16, Kernel, PackedA, PackedB, MR};
use super::cpu_bf16::{rounded_to_bf16, widened_weights};
use super::cpu_f32::contiguous_f32;
use super::prepacked_bf16::PrepackedLinear;
use super::small_gemm::{matmul_parallel, View};

/// The product with the bf16 weight as an operand, widened to f32 for the call.
pub(crate) struct Bf16Linear;

impl CustomOp2 for Bf16Linear {
    fn name(&self) -> &'static str {
        "kakusan-bf16-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[rows, features], &[out, w_features]) = (xl.dims(), wl.dims()) else {
            bail!(
                "bf16 linear: expects [rows, in] and [out, in], got {:?} and {:?}",
                xl.dims(),
                wl.dims()
            )
        };
        if features != w_features {
            bail!("bf16 linear: input has {features} features, the weight {w_features}");
        }
        let x = contiguous_f32(xs, xl, "bf16 linear: input")?;
        let mut y = vec![0f32; rows * out];
        let x = rounded_to_bf16(x);
        let w = widened_weights(ws, wl, "bf16 linear: the weight")?;
        matmul_parallel(
            &mut y,
            rows,
            out,
            features,
            View::row_major(&x, features),
            View::row_major(&w, features).transposed(),
        );
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }
}

/// `y = x W^T` for `x` `[rows, features]` and `W^T` packed as `b` (`features x out`), in
/// blocks of rows on all threads; `y` holds `rows x out` values, overwritten.
fn packed_product(y: &mut [f32], x: &[f32], features: usize, b: &PackedB, kernel: Kernel) {
    let out = b.columns();
    let rows = x.len() / features.max(1);
    assert!(y.len() >= rows * out);
    if rows * out * features == 0 {
        y.fill(0.0);
        return;
    }
    // Blocks of whole A panels, at least four per thread.
    let tasks = 4 * rayon::current_num_threads();
    let block = rows.div_ceil(tasks).next_multiple_of(MR).max(MR);
    y.par_chunks_mut(block * out)
        .zip(x.par_chunks(block * features))
        .for_each(|(y, x)| {
            let m = x.len() / features;
            let a = PackedA::from_f32_rows(x, m, features, features);
            // SAFETY: y holds the block's m rows of `out` values.
            unsafe { gemm_bf16(kernel, y.as_mut_ptr(), out, &a, b, false) };
        });
}

/// `y = x W^T` with `W` packed when the layer was loaded (`prepacked_bf16.rs`): f32 `x`
/// `[rows, in]` in, f32 `[rows, out]` out. Inference only.
pub(crate) struct PackedBf16Linear<'a>(pub &'a PrepackedLinear);

impl CustomOp1 for PackedBf16Linear<'_> {
    fn name(&self) -> &'static str {
        "kakusan-packed-bf16-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let &[rows, features] = xl.dims() else {
            bail!("bf16 linear: expects [rows, in], got {:?}", xl.dims())
        };
        if features != w.features {
            bail!(
                "bf16 linear: input has {features} features, the weight {}",
                w.features
            );
        }
        let x = contiguous_f32(xs, xl, "bf16 linear: input")?;
        let mut y = vec![0f32; rows * w.out];
        packed_product(&mut y, x, features, &w.b, w.kernel);
        Ok((CpuStorage::F32(y), Shape::from((rows, w.out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// Against candle's f32 matmul of the operands rounded to bf16: the same exact products,
    /// summed in another order.
    #[test]
    fn equals_the_f32_product_of_the_rounded_operands() {
        let dev = Device::Cpu;
        for (rows, features, out) in [(1, 1, 1), (7, 13, 5), (64, 320, 96), (3, 1024, 17)] {
            let x = Tensor::randn(0f32, 1.0, (rows, features), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.2, (out, features), &dev)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap();
            let widened = x.apply_op2_no_bwd(&w, &Bf16Linear).unwrap();
            // And the packed product on the bf16 dot-product kernel where the CPU has one.
            let packed = crate::nn::prepacked_bf16::prepack_linear(&w)
                .unwrap()
                .map(|p| x.apply_op1_no_bwd(&PackedBf16Linear(&p)).unwrap());
            let expected = x
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .matmul(&w.to_dtype(DType::F32).unwrap().t().unwrap())
                .unwrap();
            for ours in std::iter::once(widened).chain(packed) {
                let d = crate::nn::test_util::max_abs_diff(&ours, &expected);
                // f32 sums of `features` exact products in another order: a few ulps of the
                // sum of magnitudes (about sqrt(features) * 0.2 here).
                let scale = crate::nn::test_util::max_abs(&expected).max(1.0);
                assert!(
                    d <= 1e-6 * features as f32 * scale,
                    "{rows}x{features}x{out}: {d}"
                );
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 5), DType::BF16, &dev).unwrap();
        let err = x.apply_op2_no_bwd(&w, &Bf16Linear).unwrap_err();
        assert!(err.to_string().contains("4 features"), "{err}");
    }
}
