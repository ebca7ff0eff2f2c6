//! A branch-free `exp` for the custom ops' element loops: the compiler vectorises loops that
//! call it (libm's `expf` keeps them scalar). Relative error about 2e-7 (3 ulp), far below
//! the parity tolerances against PyTorch (whose CPU kernels use a vectorised exp too): the
//! training ops and the CPU f32 attention use it.

/// `e^x` for `x` in about [-87, 88] (0 below, clamped above), relative error about 2e-7:
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor series to `r^7`, and `2^n`
/// written into the exponent bits.
#[inline(always)]
pub(crate) fn exp_approx(x_in: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by adding and removing 1.5 * 2^23 (`round()` is a libm call on the
    // baseline x86-64 target and would keep the loops scalar).
    const ROUNDER: f32 = 12_582_912.0;
    let x = x_in.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUNDER) - ROUNDER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    // Below the clamp (e^-87 ~ 1.6e-38) the true value is 0 to f32 precision; a select,
    // not a branch.
    if x_in < -87.0 {
        0.0
    } else {
        p * scale
    }
}
