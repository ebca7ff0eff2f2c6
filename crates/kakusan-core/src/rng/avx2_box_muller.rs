//! The [`CpuNormalKernel::Avx2`](super::CpuNormalKernel::Avx2) Box–Muller block with AVX2
//! and FMA instructions, eight lanes at once, as torch's own kernel runs it.
//!
//! Every operation is the one [`super::avx_math`] performs one lane at a time, in the same
//! order and with the same fused multiply-adds, so the results are equal bit for bit (tested
//! against the lane-at-a-time code); this version exists only for speed: the SDE samplers'
//! Brownian tree draws dozens of full-size noise tensors per step.

#![allow(clippy::excessive_precision, clippy::unreadable_literal)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx_math::{
    COS_POLY, FOUR_OVER_PI, LN2_HI, LN2_LO, LOG_POLY, MIN_NORMAL, PI4_A, PI4_B, PI4_C, SIGN_BIT,
    SIN_POLY, SQRT_HALF,
};

/// `log` of eight lanes (see [`super::avx_math::log`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log8(x: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let invalid = _mm256_cmp_ps::<_CMP_LE_OQ>(x, zero);
    let x = _mm256_max_ps(x, _mm256_set1_ps(MIN_NORMAL));
    let bits = _mm256_castps_si256(x);
    let exponent = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0x7f));
    let mantissa = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(!0x7f80_0000u32 as i32)),
        _mm256_set1_epi32(0.5f32.to_bits() as i32),
    ));
    let mut e = _mm256_add_ps(_mm256_cvtepi32_ps(exponent), one);
    let below = _mm256_cmp_ps::<_CMP_LT_OQ>(mantissa, _mm256_set1_ps(SQRT_HALF));
    let fold = _mm256_and_ps(below, mantissa);
    let mut m = _mm256_sub_ps(mantissa, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(below, one));
    m = _mm256_add_ps(m, fold);

    let z = _mm256_mul_ps(m, m);
    let mut y = _mm256_set1_ps(LOG_POLY[0]);
    for &c in &LOG_POLY[1..] {
        y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(c));
    }
    y = _mm256_mul_ps(y, m);
    let e_lo = _mm256_mul_ps(e, _mm256_set1_ps(LN2_LO));
    y = _mm256_fmadd_ps(y, z, e_lo);
    y = _mm256_sub_ps(y, _mm256_mul_ps(z, _mm256_set1_ps(0.5)));
    let sum = _mm256_add_ps(m, y);
    let result = _mm256_fmadd_ps(e, _mm256_set1_ps(LN2_HI), sum);
    _mm256_blendv_ps(result, _mm256_set1_ps(f32::NAN), invalid)
}

/// `(sin, cos)` of eight lanes (see [`super::avx_math::sincos`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sincos8(x: __m256) -> (__m256, __m256) {
    let sign = _mm256_set1_epi32(SIGN_BIT as i32);
    let bits = _mm256_castps_si256(x);
    let mut sin_sign = _mm256_and_si256(bits, sign);
    let mut x = _mm256_castsi256_ps(_mm256_andnot_si256(sign, bits));
    let j = _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(FOUR_OVER_PI)));
    let j = _mm256_and_si256(
        _mm256_add_epi32(j, _mm256_set1_epi32(1)),
        _mm256_set1_epi32(!1),
    );
    let y = _mm256_cvtepi32_ps(j);
    let four = _mm256_set1_epi32(4);
    let sin_swap = _mm256_slli_epi32::<29>(_mm256_and_si256(j, four));
    let use_cos_poly = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
        _mm256_and_si256(j, _mm256_set1_epi32(2)),
        _mm256_setzero_si256(),
    ));
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(PI4_A), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(PI4_B), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(PI4_C), x);
    let cos_sign = _mm256_slli_epi32::<29>(_mm256_andnot_si256(
        _mm256_sub_epi32(j, _mm256_set1_epi32(2)),
        four,
    ));
    sin_sign = _mm256_xor_si256(sin_sign, sin_swap);

    let z = _mm256_mul_ps(x, x);
    let mut c = _mm256_fmadd_ps(_mm256_set1_ps(COS_POLY[0]), z, _mm256_set1_ps(COS_POLY[1]));
    c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(COS_POLY[2]));
    c = _mm256_mul_ps(c, z);
    let half_z = _mm256_mul_ps(z, _mm256_set1_ps(0.5));
    c = _mm256_fmsub_ps(c, z, half_z);
    c = _mm256_add_ps(c, _mm256_set1_ps(1.0));

    let mut s = _mm256_fmadd_ps(_mm256_set1_ps(SIN_POLY[0]), z, _mm256_set1_ps(SIN_POLY[1]));
    s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(SIN_POLY[2]));
    s = _mm256_mul_ps(s, z);
    s = _mm256_fmadd_ps(s, x, x);

    let sin_from_cos_poly = _mm256_andnot_ps(use_cos_poly, c);
    let sin_from_sin_poly = _mm256_and_ps(use_cos_poly, s);
    let c_rest = _mm256_sub_ps(c, sin_from_cos_poly);
    let s_rest = _mm256_sub_ps(s, sin_from_sin_poly);
    let sin = _mm256_add_ps(sin_from_cos_poly, sin_from_sin_poly);
    let cos = _mm256_add_ps(c_rest, s_rest);
    (
        _mm256_xor_ps(sin, _mm256_castsi256_ps(sin_sign)),
        _mm256_xor_ps(cos, _mm256_castsi256_ps(cos_sign)),
    )
}

/// Transforms 16 uniforms into 16 normals in place: `u1 = 1 - block[0..8]`,
/// `u2 = block[8..16]`, `block[j] = r cos`, `block[j + 8] = r sin`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn box_muller_block(block: &mut [f32; 16]) {
    // SAFETY: the block holds 16 floats; unaligned loads and stores.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_ps(block.as_ptr()),
            _mm256_loadu_ps(block.as_ptr().add(8)),
        )
    };
    let u1 = _mm256_sub_ps(_mm256_set1_ps(1.0), lo);
    let radius = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0), log8(u1)));
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let (sin, cos) = sincos8(_mm256_mul_ps(_mm256_set1_ps(two_pi), hi));
    // torch's fma(n, std, mean) with std 1, mean 0: n exactly, -0.0 -> +0.0.
    let zero = _mm256_setzero_ps();
    let first = _mm256_add_ps(_mm256_mul_ps(radius, cos), zero);
    let second = _mm256_add_ps(_mm256_mul_ps(radius, sin), zero);
    // SAFETY: as above.
    unsafe {
        _mm256_storeu_ps(block.as_mut_ptr(), first);
        _mm256_storeu_ps(block.as_mut_ptr().add(8), second);
    }
}
