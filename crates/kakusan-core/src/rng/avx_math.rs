//! Single-precision `log` and `sincos` computed exactly as torch's AVX2 CPU build computes
//! them inside `torch.randn`.
//!
//! torch's float32 normal kernel on x86 CPUs with AVX2 (also when torch reports AVX512)
//! evaluates Box–Muller with Cephes-style polynomial approximations (the `avx_mathfun`
//! routines, after Julien Pommier's `sse_mathfun`), not with the C library. Their results
//! differ from a correctly rounded `ln`/`sin`/`cos` in the last bits, so reproducing torch's
//! noise bit for bit means redoing the same float operations in the same order. This module
//! does that one lane at a time. The Cephes coefficients below are the published ones; the
//! order of operations and the places where the compiler fused a multiply and an add into
//! one FMA (GCC contracts `a * b + c` when the product has no other use) were established
//! against torch's output (`tests/fixtures/randn.*`).

// The constants are the published Cephes values, written as the double literals the
// reference code converts to float (a decimal -> f64 -> f32 rounding, kept for that reason).
#![allow(clippy::excessive_precision, clippy::unreadable_literal)]

/// `fused` selects whether the polynomial steps are fused multiply-adds (as in torch's
/// GCC-built wheels). Kept as a switch so tests can show that the choice matters.
#[inline(always)]
fn mul_add(a: f32, b: f32, c: f32, fused: bool) -> f32 {
    if fused {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// sqrt(1/2), the point where the mantissa is folded so it lies in [sqrt(1/2) - 1, sqrt(2) - 1).
pub(super) const SQRT_HALF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
/// Minimax coefficients of log(1 + x) = x - x^2/2 + x^3 P(x), highest degree first.
pub(super) const LOG_POLY: [f32; 9] = [
    7.0376836292E-2_f64 as f32,
    -1.1514610310E-1_f64 as f32,
    1.1676998740E-1_f64 as f32,
    -1.2420140846E-1_f64 as f32,
    1.4249322787E-1_f64 as f32,
    -1.6668057665E-1_f64 as f32,
    2.0000714765E-1_f64 as f32,
    -2.4999993993E-1_f64 as f32,
    3.3333331174E-1_f64 as f32,
];
/// ln 2 split into a short high part and a correction: e * ln2 = e * LN2_HI + e * LN2_LO.
pub(super) const LN2_HI: f32 = 0.693359375;
pub(super) const LN2_LO: f32 = -2.12194440e-4_f64 as f32;
/// The smallest normal float: smaller inputs are raised to it.
pub(super) const MIN_NORMAL: f32 = f32::MIN_POSITIVE;

/// Natural logarithm as torch's AVX2 `log256_ps` computes it (NaN for x <= 0).
#[inline(always)]
pub(crate) fn log(x: f32, fused: bool) -> f32 {
    let invalid = x <= 0.0;
    let x = if x < MIN_NORMAL { MIN_NORMAL } else { x };
    let bits = x.to_bits();
    // Exponent and a mantissa scaled into [0.5, 1).
    let exponent = ((bits >> 23) as i32) - 0x7f;
    let mantissa = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    let below = mantissa < SQRT_HALF;
    let fold = if below { mantissa } else { 0.0 };
    let mut m = mantissa - 1.0;
    if below {
        e -= 1.0;
    }
    m += fold;

    let z = m * m;
    let mut y = LOG_POLY[0];
    for &c in &LOG_POLY[1..] {
        y = mul_add(y, m, c, fused);
    }
    y *= m;
    // y * z + e * LN2_LO: the first product is the one fused with the sum.
    let e_lo = e * LN2_LO;
    y = mul_add(y, z, e_lo, fused);
    // z * 0.5 is exact, so fusing it or not gives the same value.
    y -= z * 0.5;
    let sum = m + y;
    let result = mul_add(e, LN2_HI, sum, fused);
    if invalid {
        f32::NAN
    } else {
        result
    }
}

/// 4 / pi.
pub(super) const FOUR_OVER_PI: f32 = 1.27323954473516_f64 as f32;
/// pi / 4 split in three parts for an extended-precision range reduction.
pub(super) const PI4_A: f32 = -0.78515625;
pub(super) const PI4_B: f32 = -2.4187564849853515625e-4_f64 as f32;
pub(super) const PI4_C: f32 = -3.77489497744594108e-8_f64 as f32;
/// sin(x) = x + x^3 S(x^2) on [-pi/4, pi/4].
pub(super) const SIN_POLY: [f32; 3] = [
    -1.9515295891E-4_f64 as f32,
    8.3321608736E-3_f64 as f32,
    -1.6666654611E-1_f64 as f32,
];
/// cos(x) = 1 - x^2/2 + x^4 C(x^2) on [-pi/4, pi/4].
pub(super) const COS_POLY: [f32; 3] = [
    2.443315711809948E-005_f64 as f32,
    -1.388731625493765E-003_f64 as f32,
    4.166664568298827E-002_f64 as f32,
];
pub(super) const SIGN_BIT: u32 = 0x8000_0000;

/// `(sin x, cos x)` as torch's AVX2 `sincos256_ps` computes them.
#[inline(always)]
pub(crate) fn sincos(x: f32, fused: bool) -> (f32, f32) {
    let mut sin_sign = x.to_bits() & SIGN_BIT;
    let mut x = x.abs();
    // Octant index j, rounded up to even: x is reduced to [-pi/4, pi/4] around j * pi/4.
    let j = (((x * FOUR_OVER_PI) as i32).wrapping_add(1)) & !1;
    let y = j as f32;
    let sin_swap = ((j & 4) as u32) << 29;
    let use_cos_poly_for_cos = (j & 2) == 0;
    x = mul_add(y, PI4_A, x, fused);
    x = mul_add(y, PI4_B, x, fused);
    x = mul_add(y, PI4_C, x, fused);
    let cos_sign = ((!(j.wrapping_sub(2)) & 4) as u32) << 29;
    sin_sign ^= sin_swap;

    let z = x * x;
    let mut c = mul_add(COS_POLY[0], z, COS_POLY[1], fused);
    c = mul_add(c, z, COS_POLY[2], fused);
    c *= z;
    // c * z - z / 2: the product c * z is the one fused (z * 0.5 is exact anyway).
    let half_z = z * 0.5;
    c = mul_add(c, z, -half_z, fused);
    c += 1.0;

    let mut s = mul_add(SIN_POLY[0], z, SIN_POLY[1], fused);
    s = mul_add(s, z, SIN_POLY[2], fused);
    s *= z;
    s = mul_add(s, x, x, fused);

    // Select, with the same additions of +0.0 the vector code performs.
    let (sin_from_cos_poly, sin_from_sin_poly) = if use_cos_poly_for_cos {
        (0.0, s)
    } else {
        (c, 0.0)
    };
    let c_rest = c - sin_from_cos_poly;
    let s_rest = s - sin_from_sin_poly;
    let sin = sin_from_cos_poly + sin_from_sin_poly;
    let cos = c_rest + s_rest;
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_close_to_ln() {
        for i in 1..2000 {
            let x = i as f32 / 1999.0;
            let err = (log(x, true) - x.ln()).abs();
            assert!(err <= 2e-7 * x.ln().abs().max(1.0), "x={x} err={err}");
        }
        assert!(log(0.0, true).is_nan());
        assert_eq!(log(1.0, true), 0.0);
    }

    #[test]
    fn sincos_is_close_to_sin_and_cos() {
        for i in 0..4000 {
            let x = i as f32 * 0.0016;
            let (s, c) = sincos(x, true);
            assert!((s - x.sin()).abs() < 3e-7, "sin {x}");
            assert!((c - x.cos()).abs() < 3e-7, "cos {x}");
        }
    }
}
