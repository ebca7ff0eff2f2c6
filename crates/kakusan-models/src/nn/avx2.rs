//! Running a kernel's loops 8 (AVX2) or 16 (AVX-512) lanes wide where the CPU allows.
//!
//! The crates are built for the baseline x86-64 target (SSE2: 4 f32 lanes), so that the
//! binary runs on any x86-64 machine. [`with_avx2`] runs a closure inside a function
//! compiled with AVX2 enabled when the CPU has it (detected once, cached by std), so the
//! closure's loops, inlined there, vectorise 8 lanes wide. Rust never contracts `a * b + c`
//! into a fused multiply-add on its own, and the kernels fix their summation order in code,
//! so both paths compute bit-identical results.

/// Runs `f` compiled for AVX2 when the CPU supports it, else as built. Helpers `f` calls
/// must be `#[inline(always)]` to be compiled into the AVX2 context too.
#[inline(always)]
pub(crate) fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only feature `run` is compiled with.
            return unsafe { run(f) };
        }
    }
    f()
}

/// Runs `f` compiled for AVX-512 F (16 f32 lanes) when the CPU supports it, else as
/// [`with_avx2`]. The same rules as there: helpers must be `#[inline(always)]`, and the
/// results are bit-identical to the baseline build's.
#[inline(always)]
pub(crate) fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F, the only feature `run` is compiled with.
            return unsafe { run(f) };
        }
    }
    with_avx2(f)
}
