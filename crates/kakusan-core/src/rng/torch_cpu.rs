//! `TorchCpuGenerator`: a seeded stream equal to a CPU `torch.Generator`.
//!
//! How torch fills `torch.randn(shape)` on the CPU (float32 unless said):
//! - **fewer than 16 elements**: one Box–Muller pair per two elements, in float64, from two
//!   53-bit uniforms (`u1`, `u2`, each from two 32-bit words): `r = sqrt(-2 ln(1 - u2))`,
//!   `theta = 2 pi u1`; the element is `r cos theta` (rounded to float32) and `r sin theta`
//!   is *cached in the generator* and returned by the next such element, even one of a
//!   later call. Drawing a big tensor in between neither uses nor clears that cache.
//! - **16 elements or more**: one 24-bit uniform per element (one 32-bit word each) is
//!   written for the whole tensor, then every full block of 16 is transformed in place
//!   (`u1 = 1 - block[j]`, `u2 = block[j + 8]` for `j < 8`; `block[j] = r cos`,
//!   `block[j + 8] = r sin`, in float32). If the length is not a multiple of 16, 16 fresh
//!   uniforms overwrite the *last 16* elements (partly already transformed) and that block
//!   is transformed again. The float32 `ln`/`sin`/`cos` depend on torch's CPU build, see
//!   [`CpuNormalKernel`].
//! - float64 tensors of 16 elements or more: the same blocks with 53-bit uniforms (two
//!   words each) and the C library's double `ln`/`cos`/`sin`.

use super::avx_math;
use super::mt19937::Mt19937;

/// Below this many elements torch draws element by element with a cached second sample.
const VECTOR_THRESHOLD: usize = 16;
/// Elements per Box–Muller block of the vectorised path.
const BLOCK: usize = 16;
const HALF_BLOCK: usize = BLOCK / 2;

/// Which float32 arithmetic torch's block Box–Muller uses; it depends on how torch was built
/// and on the CPU, and the two give different last bits for about a third of the values
/// (never more than ~2e-6 apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuNormalKernel {
    /// x86-64 CPUs with AVX2 (torch's `AVX2` and `AVX512` capabilities): polynomial
    /// `log`/`sincos` approximations with fused multiply-adds. What diffusers, A1111 and
    /// ComfyUI users on nearly every x86 machine get; the default.
    #[default]
    Avx2,
    /// torch's portable scalar code (`ATEN_CPU_CAPABILITY=default`, CPUs without AVX2 and
    /// typically ARM builds such as Apple silicon): the C library's float `logf`, `cosf`,
    /// `sinf`. Reproduced with Rust's `f32` functions, which call the platform's C library, so
    /// this matches torch on the same platform (checked on Linux/glibc).
    Scalar,
}

/// A CPU random stream that reproduces `torch.Generator("cpu").manual_seed(seed)`:
/// successive [`randn`](Self::randn) calls continue the stream exactly as successive
/// `torch.randn(..., generator=g)` calls do.
#[derive(Debug, Clone)]
pub struct TorchCpuGenerator {
    seed: u64,
    engine: Mt19937,
    kernel: CpuNormalKernel,
    /// The second Box–Muller sample of the element-wise path, waiting to be used.
    cached_normal: Option<f64>,
}

impl TorchCpuGenerator {
    /// A generator seeded like `torch.manual_seed(seed)` (only the low 32 bits of `seed`
    /// reach the engine, as in torch), using the AVX2 kernel.
    pub fn new(seed: u64) -> Self {
        Self::with_kernel(seed, CpuNormalKernel::default())
    }

    /// `K` generators seeded with `seeds` (default kernel), as `K` calls of [`Self::new`],
    /// seeded side by side (see [`Mt19937::new_many`]).
    pub fn new_many<const K: usize>(seeds: [u64; K]) -> [Self; K] {
        let engines = Mt19937::new_many(seeds);
        let mut k = 0;
        engines.map(|engine| {
            let generator = Self {
                seed: seeds[k],
                engine,
                kernel: CpuNormalKernel::default(),
                cached_normal: None,
            };
            k += 1;
            generator
        })
    }

    /// A generator that reproduces torch built with the given normal kernel.
    pub fn with_kernel(seed: u64, kernel: CpuNormalKernel) -> Self {
        Self {
            seed,
            engine: Mt19937::new(seed),
            kernel,
            cached_normal: None,
        }
    }

    /// The seed this generator was created with (as given, all 64 bits).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The normal kernel this generator reproduces.
    pub fn kernel(&self) -> CpuNormalKernel {
        self.kernel
    }

    /// `torch.randn(shape, generator=g)` in float32, in row-major order.
    pub fn randn(&mut self, shape: &[usize]) -> Vec<f32> {
        let n = shape.iter().product::<usize>();
        if n < VECTOR_THRESHOLD {
            return (0..n).map(|_| self.next_normal_f64() as f32).collect();
        }
        let mut data = self.uniforms_f32(n);
        for start in (0..=n - BLOCK).step_by(BLOCK) {
            self.box_muller_f32(&mut data[start..start + BLOCK]);
        }
        if n % BLOCK != 0 {
            let tail = &mut data[n - BLOCK..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            self.box_muller_f32(tail);
        }
        data
    }

    /// `torch.randn(shape, dtype=torch.float64, generator=g)`, in row-major order.
    pub fn randn_f64(&mut self, shape: &[usize]) -> Vec<f64> {
        let n = shape.iter().product::<usize>();
        if n < VECTOR_THRESHOLD {
            return (0..n).map(|_| self.next_normal_f64()).collect();
        }
        let mut data: Vec<f64> = (0..n).map(|_| self.uniform_f64()).collect();
        for start in (0..=n - BLOCK).step_by(BLOCK) {
            box_muller_f64(&mut data[start..start + BLOCK]);
        }
        if n % BLOCK != 0 {
            let tail = &mut data[n - BLOCK..];
            for value in tail.iter_mut() {
                *value = self.uniform_f64();
            }
            box_muller_f64(tail);
        }
        data
    }

    /// `torch.rand(shape, generator=g)` in float32: uniform in [0, 1), one word per element.
    pub fn rand(&mut self, shape: &[usize]) -> Vec<f32> {
        self.uniforms_f32(shape.iter().product::<usize>())
    }

    /// `n` float32 uniforms, one word each (as `n` calls of `uniform_f32`).
    fn uniforms_f32(&mut self, n: usize) -> Vec<f32> {
        let mut words = vec![0u32; n];
        self.engine.fill_u32(&mut words);
        words.into_iter().map(uniform_f32_of).collect()
    }

    /// The next raw 32-bit word of the engine (torch's `random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// A float32 uniform in [0, 1) from the low 24 bits of one word (exact).
    fn uniform_f32(&mut self) -> f32 {
        uniform_f32_of(self.engine.next_u32())
    }

    /// A float64 uniform in [0, 1) from the low 53 bits of two words (exact).
    fn uniform_f64(&mut self) -> f64 {
        (self.engine.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One sample of torch's element-wise `normal_distribution<double>`.
    fn next_normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(r * theta.sin());
        // torch maps the sample through `x * std + mean` with std 1, mean 0; `+ 0.0` keeps
        // its (only observable) effect, -0.0 becoming +0.0.
        r * theta.cos() + 0.0
    }

    /// Transforms 16 uniforms into 16 normals in place (float32 block path).
    fn box_muller_f32(&self, block: &mut [f32]) {
        match self.kernel {
            CpuNormalKernel::Avx2 => box_muller_avx2(block),
            CpuNormalKernel::Scalar => box_muller_scalar(block),
        }
    }
}

/// The float32 uniform in [0, 1) of one word: its low 24 bits (exact).
#[inline(always)]
fn uniform_f32_of(word: u32) -> f32 {
    (word & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The [`CpuNormalKernel::Avx2`] block: with AVX2 and FMA instructions when the CPU has them
/// (eight lanes at once, as torch), else one lane at a time with the C library's `fmaf`. The
/// results are the same bit for bit; the vector code is several times faster, which the
/// Brownian tree of the SDE samplers feels (dozens of full-size draws per step).
fn box_muller_avx2(block: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2") {
        if let Ok(block) = <&mut [f32; BLOCK]>::try_from(&mut *block) {
            // SAFETY: the CPU has FMA and AVX2 (checked just above).
            unsafe { super::avx2_box_muller::box_muller_block(block) };
            return;
        }
    }
    box_muller_avx2_lanes(block);
}

/// [`box_muller_avx2`] one lane at a time (CPUs without AVX2 or FMA; the reference the
/// vector code is tested against).
fn box_muller_avx2_lanes(block: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..HALF_BLOCK {
        let u1 = 1.0 - block[j];
        let u2 = block[j + HALF_BLOCK];
        let radius = (-2.0 * avx_math::log(u1, true)).sqrt();
        let (sin, cos) = avx_math::sincos(two_pi * u2, true);
        write_pair(block, j, radius, sin, cos);
    }
}

/// The [`CpuNormalKernel::Scalar`] block: the C library's `logf`, `sinf`, `cosf`.
fn box_muller_scalar(block: &mut [f32]) {
    for j in 0..HALF_BLOCK {
        let u1 = 1.0 - block[j];
        let u2 = block[j + HALF_BLOCK];
        let radius = (-2.0 * u1.ln()).sqrt();
        // The angle is formed in double and rounded once to float.
        let theta = ((2.0 * std::f64::consts::PI) * u2 as f64) as f32;
        write_pair(block, j, radius, theta.sin(), theta.cos());
    }
}

#[inline(always)]
fn write_pair(block: &mut [f32], j: usize, radius: f32, sin: f32, cos: f32) {
    // torch computes fma(n, std, mean) with std 1, mean 0: n exactly, -0.0 -> +0.0.
    block[j] = radius * cos + 0.0;
    block[j + HALF_BLOCK] = radius * sin + 0.0;
}

/// Transforms 16 uniforms into 16 normals in place (float64 block path).
fn box_muller_f64(block: &mut [f64]) {
    for j in 0..HALF_BLOCK {
        let u1 = 1.0 - block[j];
        let u2 = block[j + HALF_BLOCK];
        let radius = (-2.0 * u1.ln()).sqrt();
        // `2.0f * pi<double> * u2`: the float 2 widens to double first.
        let theta = 2.0 * std::f64::consts::PI * u2;
        block[j] = radius * theta.cos() + 0.0;
        block[j + HALF_BLOCK] = radius * theta.sin() + 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_shapes_draw_nothing() {
        let mut a = TorchCpuGenerator::new(3);
        let mut b = TorchCpuGenerator::new(3);
        assert!(a.randn(&[0, 4]).is_empty());
        assert_eq!(a.randn(&[20]), b.randn(&[20]));
    }

    #[test]
    fn the_cached_sample_survives_a_block_draw() {
        // [1] caches its pair's sine; [16] uses block arithmetic only; the next [1] must be
        // the cached value, with no words drawn for it.
        let mut g = TorchCpuGenerator::new(11);
        let _ = g.randn(&[1]);
        let _ = g.randn(&[16]);
        let mut reference = TorchCpuGenerator::new(11);
        let _ = reference.next_normal_f64();
        let cached = reference.next_normal_f64() as f32;
        assert_eq!(g.randn(&[1])[0], cached);
    }

    #[test]
    fn vector_and_lane_by_lane_blocks_are_equal_bit_for_bit() {
        // 200k blocks of the uniforms torch draws, plus the edges of [0, 1).
        let mut g = TorchCpuGenerator::new(7);
        let mut blocks: Vec<[f32; BLOCK]> = (0..200_000)
            .map(|_| std::array::from_fn(|_| g.uniform_f32()))
            .collect();
        let top = 1.0 - 1.0 / (1u32 << 24) as f32;
        let edges = [
            0.0,
            top,
            0.5,
            0.25,
            0.125,
            1.0 / (1u32 << 24) as f32,
            0.999,
            1e-3,
        ];
        blocks.push(std::array::from_fn(|i| edges[i % edges.len()]));
        blocks.push(std::array::from_fn(|i| edges[(i + 3) % edges.len()]));
        for block in &blocks {
            let mut vector = *block;
            box_muller_avx2(&mut vector);
            let mut lanes = *block;
            box_muller_avx2_lanes(&mut lanes);
            let v: Vec<u32> = vector.iter().map(|x| x.to_bits()).collect();
            let l: Vec<u32> = lanes.iter().map(|x| x.to_bits()).collect();
            assert_eq!(v, l, "uniforms {block:?}");
        }
    }

    #[test]
    fn kernels_differ_only_in_last_bits() {
        let a = TorchCpuGenerator::with_kernel(0, CpuNormalKernel::Avx2).randn(&[4096]);
        let b = TorchCpuGenerator::with_kernel(0, CpuNormalKernel::Scalar).randn(&[4096]);
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-5, "max difference {max}");
        assert!(a != b);
    }

    /// `torch.manual_seed(42); torch.randn(33)` from torch 2.14.1 run with
    /// `ATEN_CPU_CAPABILITY=default` on Linux/glibc, as f32 bit patterns. (The committed
    /// randn fixture holds AVX2-machine draws; this pins the portable kernel.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn scalar_kernel_matches_torch_default_capability() {
        const REFERENCE: [u32; 33] = [
            0x3ff6a527, 0x3fbe5f54, 0x3f669567, 0xc006c0dd, 0x3f2dacd5, 0xbf9e0592, 0xbd306787,
            0xbfcd65ba, 0xbf408bff, 0x3fd3095a, 0xbec8f2f6, 0xbfb3a962, 0xbf3a566d, 0xbf0f36cc,
            0xbf44d2a1, 0x3f432f9f, 0x3fd23771, 0xbf5f0955, 0xbe64ba0a, 0x3fdbd27d, 0x3ea34434,
            0xbed95a8d, 0x3e9c8760, 0xbf464bb2, 0x3d0eff89, 0x3f7ee202, 0xbf6139a5, 0xbf19e481,
            0xbfa31765, 0x4007dbb6, 0xbf9e091f, 0xbef9cfd9, 0xbfb582fd,
        ];
        let scalar = TorchCpuGenerator::with_kernel(42, CpuNormalKernel::Scalar).randn(&[33]);
        let bits: Vec<u32> = scalar.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, REFERENCE);
        let avx2 = TorchCpuGenerator::with_kernel(42, CpuNormalKernel::Avx2).randn(&[33]);
        assert!(avx2.iter().zip(&scalar).any(|(a, b)| a != b));
    }
}
