//! bf16 on the CPU (`--dtype bf16`): the weights of the matrix products (convolution and
//! linear layers) are *stored* in bf16, half the memory of f32; everything else (norms,
//! softmax, residual sums, the activations between layers) stays f32, as PyTorch's CPU
//! autocast does.
//!
//! A product with bf16 weights rounds its activation operand to bf16 as well (round to
//! nearest even, as `vdpbf16ps`' operands are) and accumulates in f32. Every product of
//! two bf16 values is exact in f32 (8 + 8 significant bits), so the portable kernel here
//! (widen both operands to f32, then the f32 GEMM) computes the same products as a bf16
//! dot-product instruction; the sums differ only in f32 rounding order.
//!
//! Small parameters next to bf16 weights (biases, norm scales and shifts) are widened to
//! f32 when a layer is loaded: they cost nothing to keep and the f32 kernels read them.

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

/// Values per parallel task of the element-wise conversions.
const CHUNK: usize = 1 << 16;

/// Whether `t` is a bf16 tensor on the CPU (a layer with such weights takes the bf16 path).
pub(crate) fn is_cpu_bf16(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::BF16
}

/// `t` widened to f32 when it is a bf16 tensor on the CPU (exact), else `t` itself: for the
/// small parameters beside bf16 weights.
pub(crate) fn widen_small_parameter(t: Tensor) -> Result<Tensor> {
    if is_cpu_bf16(&t) {
        t.to_dtype(DType::F32)
    } else {
        Ok(t)
    }
}

/// The bits of `v` rounded to the nearest bf16 (ties to even), in the low 16 bits. A NaN
/// stays a (quiet) NaN; values that round past the largest bf16 become infinite. The one
/// rounding of the bf16 paths: [`round_to_bf16`] and the bf16 GEMM's packing.
#[inline(always)]
pub(crate) fn bf16_bits(v: f32) -> u32 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    if v.is_nan() {
        (bits >> 16) | 0x40
    } else {
        rounded
    }
}

/// One f32 rounded to the nearest bf16, returned as the f32 of that bf16.
#[inline(always)]
fn round_one(v: f32) -> f32 {
    f32::from_bits(bf16_bits(v) << 16)
}

/// Rounds every value to the nearest bf16 in place (the activation operand of a bf16
/// product), in parallel.
pub(crate) fn round_to_bf16(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        for v in chunk {
            *v = round_one(*v);
        }
    });
}

/// `values` rounded to bf16, as a new f32 vector.
pub(crate) fn rounded_to_bf16(values: &[f32]) -> Vec<f32> {
    let mut out = values.to_vec();
    round_to_bf16(&mut out);
    out
}

/// The bf16 weights `l` covers in `s`, widened to f32 (for one product); `what` names the
/// operand in the error when they are not bf16 or not contiguous.
pub(crate) fn widened_weights(
    s: &candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> Result<Vec<f32>> {
    let candle_core::CpuStorage::BF16(w) = s else {
        candle_core::bail!("{what} must be bf16")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what} must be contiguous")
    };
    Ok(widen(&w[a..b]))
}

/// bf16 values widened to f32 (exact: a bf16 is the top half of an f32), in parallel.
pub(crate) fn widen(values: &[bf16]) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(dst, src)| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = f32::from_bits((s.to_bits() as u32) << 16);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_the_half_crate_including_ties_and_edges() {
        let mut values = vec![
            0.0f32,
            -0.0,
            1.0,
            1.0 + f32::EPSILON,
            // Exactly halfway between two bf16 (ties to even: down, then up).
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::from_bits(0x3f80_8001),
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -3.999_999,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(f32::from_bits(state as u32));
        }
        values.retain(|v| !v.is_nan());
        let expected: Vec<f32> = values.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        let mut ours = values.clone();
        round_to_bf16(&mut ours);
        for ((v, a), e) in values.iter().zip(&ours).zip(&expected) {
            assert_eq!(a.to_bits(), e.to_bits(), "{v:e}: {a:e} vs {e:e}");
        }
        let mut nan = [f32::NAN];
        round_to_bf16(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn widening_is_exact() {
        let src: Vec<bf16> = (0..70_000u32)
            .map(|i| bf16::from_bits((i * 7919) as u16))
            .filter(|b| !b.is_nan())
            .collect();
        let wide = widen(&src);
        for (s, w) in src.iter().zip(&wide) {
            assert_eq!(s.to_f32().to_bits(), w.to_bits());
        }
    }
}
