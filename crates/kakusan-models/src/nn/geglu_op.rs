//! The gated GELU of the transformer feed-forward, `value * gelu(gate)` over `[value, gate]`
//! halves of the last axis, as one CPU f32 custom op with an analytic backward, for
//! training.
//!
//! candle's composite (two `narrow`s, `gelu_erf`, a product) calls libm's scalar `erf` per
//! element, builds its backward from several tensor passes (`erf` again, `exp`, products),
//! and pads the two halves' gradients back with zero tensors. Here forward and backward are
//! one pass each, branch-free so the compiler vectorises them: the normal CDF from
//! Abramowitz & Stegun's rational approximation 7.1.26 of `erfc` (absolute error below
//! 1.5e-7) and an `exp` by range reduction and a polynomial. f32 inference keeps candle's
//! exact `gelu_erf` (parity with PyTorch); the training values differ from it by about 1e-7.
//! `--dtype bf16` inference on the CPU uses this op's forward too (on a CPU with a bf16
//! dot-product kernel, `bf16_geglu_linear_op.rs` fuses it with the projection).

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::avx2::with_avx512;
use super::cpu_f32::{contiguous_f32, f32_view};
use super::fast_exp::exp_approx;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// The standard normal CDF `Phi(x) = (1 + erf(x / sqrt 2)) / 2` and density `phi(x)`.
#[inline(always)]
pub(crate) fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp_approx(-z * z);
    // erfc(|z|) / 2: the tail beyond |x|.
    let tail = 0.5 * poly * gauss;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    // phi(x) = exp(-x^2 / 2) / sqrt(2 pi), and x^2 / 2 = z^2.
    let pdf = gauss * 0.398_942_3;
    (cdf, pdf)
}

/// `[.., 2 * inner]` -> `[.., inner]`: `value * gelu(gate)`.
pub(crate) struct GegluOp {
    pub inner: usize,
}

impl CustomOp1 for GegluOp {
    fn name(&self) -> &'static str {
        "kakusan-geglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(s, l, "geglu: input")?;
        let inner = self.inner;
        let mut dims = l.dims().to_vec();
        if dims.last() != Some(&(2 * inner)) || inner == 0 {
            bail!("geglu: input {dims:?} is not [.., 2 * {inner}]");
        }
        let rows = h.len() / (2 * inner);
        let mut out = vec![0f32; rows * inner];
        out.par_chunks_mut(inner * ROWS_PER_TASK)
            .zip(h.par_chunks(2 * inner * ROWS_PER_TASK))
            .for_each(|(out, h)| {
                with_avx512(
                    #[inline(always)]
                    || {
                        let rows = out.chunks_exact_mut(inner).zip(h.chunks_exact(2 * inner));
                        for (o, h) in rows {
                            let (value, gate) = (&h[..inner], &h[inner..2 * inner]);
                            let o = &mut o[..inner];
                            for i in 0..inner {
                                o[i] = value[i] * gate[i] * normal_cdf_pdf(gate[i]).0;
                            }
                        }
                    },
                )
            });
        if let Some(last) = dims.last_mut() {
            *last = inner;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(&self, h: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inner = self.inner;
        let (h_view, g_view) = (f32_view(h)?, f32_view(grad)?);
        let (hv, gv): (&[f32], &[f32]) = (&h_view, &g_view);
        let mut dh = vec![0f32; hv.len()];
        dh.par_chunks_mut(2 * inner * ROWS_PER_TASK)
            .zip(hv.par_chunks(2 * inner * ROWS_PER_TASK))
            .zip(gv.par_chunks(inner * ROWS_PER_TASK))
            .for_each(|((dh, h), g)| {
                with_avx512(
                    #[inline(always)]
                    || geglu_backward_rows(dh, h, g, inner),
                )
            });
        Ok(Some(Tensor::from_vec(dh, h.shape(), h.device())?))
    }
}

/// The backward of [`GegluOp`] for whole rows: `dh` (`2 * inner` per row) from `h` and the
/// output gradient `g` (`inner` per row).
#[inline(always)]
fn geglu_backward_rows(dh: &mut [f32], h: &[f32], g: &[f32], inner: usize) {
    let rows = dh
        .chunks_exact_mut(2 * inner)
        .zip(h.chunks_exact(2 * inner));
    for ((dh, h), g) in rows.zip(g.chunks_exact(inner)) {
        let (dvalue, dgate) = dh.split_at_mut(inner);
        let (value, gate) = h.split_at(inner);
        for i in 0..inner {
            let (cdf, pdf) = normal_cdf_pdf(gate[i]);
            // d/dv = gelu(gate); d/dgate = v * (Phi(gate) + gate * phi(gate)).
            dvalue[i] = g[i] * gate[i] * cdf;
            dgate[i] = g[i] * value[i] * (cdf + gate[i] * pdf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn exp_and_normal_cdf_are_accurate() {
        assert_eq!(exp_approx(-1000.0), 0.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        let (cdf, pdf) = normal_cdf_pdf(-1e30);
        assert_eq!((cdf, pdf), (0.0, 0.0));
        for i in -4000..=4000 {
            let x = i as f32 / 100.0;
            let (e, want) = (exp_approx(x), (x as f64).exp());
            assert!(
                ((e as f64 - want) / want).abs() < 5e-7,
                "exp({x}) = {e} vs {want}"
            );
            let (cdf, pdf) = normal_cdf_pdf(x / 10.0);
            let xf = x as f64 / 10.0;
            let want_pdf = (-xf * xf / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - want_pdf).abs() < 1e-7, "phi({xf})");
            // Phi against candle's exact gelu_erf: gelu(x) / x.
            if xf.abs() > 0.5 {
                let t = Tensor::new(&[xf as f32], &Device::Cpu).unwrap();
                let g: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
                assert!((cdf - g[0] / xf as f32).abs() < 3e-7, "Phi({xf}) = {cdf}");
            }
        }
    }

    /// Forward and gradient against candle's composite, on odd sizes.
    #[test]
    fn matches_the_composite_with_gradients() {
        let dev = Device::Cpu;
        for (rows, inner) in [(3usize, 5usize), (131, 8)] {
            let h = Var::from_tensor(&Tensor::randn(0f32, 2.0, (rows, 2 * inner), &dev).unwrap())
                .unwrap();
            let ours = h.as_tensor().apply_op1(GegluOp { inner }).unwrap();
            let value = h.as_tensor().narrow(D::Minus1, 0, inner).unwrap();
            let gate = h.as_tensor().narrow(D::Minus1, inner, inner).unwrap();
            let theirs = (value * gate.gelu_erf().unwrap()).unwrap();
            let max = crate::nn::test_util::max_abs;
            // The normal CDF approximation: ~1e-7 absolute, times |value * gate| <~ 50.
            assert!(max(&(&ours - &theirs).unwrap()) < 1e-5);
            let r = Tensor::randn(0f32, 1.0, (rows, inner), &dev).unwrap();
            let go = crate::nn::test_util::weighted_sum_grads(&ours, &r);
            let gt = crate::nn::test_util::weighted_sum_grads(&theirs, &r);
            let (a, b) = (
                go.get(h.as_tensor()).unwrap(),
                gt.get(h.as_tensor()).unwrap(),
            );
            assert!(max(&(a - b).unwrap()) < 2e-5, "gradient");
        }
    }
}
