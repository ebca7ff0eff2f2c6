//! The CPU f32 inference convolution: `y[b] = weight @ patches(x[b]) + bias`, picture by
//! picture and, within a picture, by bands of output rows.
//!
//! Each band's patch matrix `[C*k*k, rows*Wo]` is kept under [`BAND_BYTES`] (it stays in
//! the cache while the GEMM reads it), and the GEMM writes the band's columns straight into
//! the output, pre-filled with the bias. Against one `weight @ im2col(x)` over the whole
//! batch this never builds the full patch matrix (1.2 GB for a 128-channel 3x3 convolution
//! of a 512x512 VAE decode, 94 MB for 320 channels at 64x64), and needs no transpose from
//! `[Cout, B*Ho*Wo]` back to `[B, Cout, Ho, Wo]`. A 1x1 stride-1 convolution reads the
//! picture itself as its patch matrix. The GEMM runs on all of rayon's threads.
//!
//! With bf16 weights (`--dtype bf16` on the CPU) each band's patch matrix is packed as bf16
//! pairs and multiplied by the CPU's bf16 dot-product kernel (`bf16_gemm.rs`) when it has
//! one (weights packed once at load: [`PackedBandedConv`]); elsewhere the weights are
//! widened to f32 for the call and the input rounded to bf16 (see `cpu_bf16.rs`). Both
//! compute the same exact products.
//!
//! Forward only: training takes [`super::conv2d_op`], which has a backward pass.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::avx2::with_avx512;
use super::bf16_gemm::{f32_pair, gemm_bf16, Kernel, PackedA, PackedB, NR};
use super::conv2d_op::geometry;
use super::cpu_bf16::{rounded_to_bf16, widened_weights};
use super::cpu_f32::contiguous_f32;
use super::im2col::{gather_run, Patches};
use super::prepacked_bf16::PrepackedConv;

/// The largest patch-matrix band (bytes) one task builds (at least one output row).
pub(crate) const BAND_BYTES: usize = 4 << 20;

/// `conv2d(x, weight) + bias` for square kernels, dilation 1, one group; no gradient.
pub(crate) struct BandedConv {
    pub stride: usize,
    pub padding: usize,
    /// Patch-matrix bytes per band ([`BAND_BYTES`]; tests use small values to get many
    /// bands).
    pub band_bytes: usize,
}

/// Where one band writes its output: the band's first element in the output, and the row
/// stride (a channel plane) between its `cout` rows. Bands are disjoint row ranges of
/// disjoint pictures' planes, so tasks never write the same element.
#[derive(Clone, Copy)]
struct BandOutput {
    first: *mut f32,
    row_stride: usize,
}

// SAFETY: a `BandOutput` is only dereferenced by `gemm_band`, for its own band's elements,
// which no other task touches (see `BandedConv::run`).
unsafe impl Send for BandOutput {}
unsafe impl Sync for BandOutput {}

impl BandOutput {
    /// The band starting `offset` elements further, with the same row stride.
    ///
    /// # Safety
    /// `offset` must stay inside the allocation `first` points into.
    unsafe fn offset(self, offset: usize) -> Self {
        Self {
            // SAFETY: the caller keeps `offset` inside the allocation.
            first: unsafe { self.first.add(offset) },
            row_stride: self.row_stride,
        }
    }
}

/// `dst (m x n, rows dst.row_stride apart) += lhs (m x k, row-major) @ rhs (k x n, row
/// stride rhs_stride)`, single-threaded.
///
/// # Safety
/// `dst.first` must point at `m` rows of `n` writable f32 values, `dst.row_stride` apart,
/// that nothing else reads or writes during the call.
unsafe fn gemm_band(
    dst: BandOutput,
    lhs: &[f32],
    rhs: &[f32],
    rhs_stride: usize,
    (m, n, k): (usize, usize, usize),
) {
    assert!(lhs.len() >= m * k);
    assert!(k == 0 || n == 0 || (k - 1) * rhs_stride + n <= rhs.len());
    // SAFETY: the asserts bound what gemm reads: lhs (i, l) at i * k + l, rhs (l, j) at
    // l * rhs_stride + j; the caller guarantees dst (i, j) at i * row_stride + j.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.first,
            1,
            dst.row_stride as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The weights as a band's product reads them.
#[derive(Clone, Copy)]
enum BandWeights<'a> {
    /// f32 (or bf16 widened to f32), `[cout, C*k*k]` row-major: the f32 GEMM.
    F32(&'a [f32]),
    /// bf16, packed for the bf16 dot-product kernel.
    Bf16(&'a PackedA, Kernel),
}

/// What one rayon thread reuses from band to band: the f32 patch matrix and its bf16 pairs.
#[derive(Default)]
struct BandBuffers {
    cols: Vec<f32>,
    packed: PackedB,
}

impl BandedConv {
    /// Output rows per band: the patch band under `band_bytes`, and at least two bands per
    /// thread over the batch so that every thread has work.
    fn band_rows(&self, p: &Patches, batch: usize, threads: usize) -> usize {
        let (ho, wo) = (p.out_height(), p.out_width());
        let rows = p.channels * p.kernel * p.kernel;
        let by_size = self.band_bytes / (4 * rows * wo).max(1);
        let bands_per_picture = (2 * threads).div_ceil(batch.max(1)).max(1);
        by_size
            .min(ho.div_ceil(bands_per_picture))
            .clamp(1, ho.max(1))
    }

    fn run(&self, p: &Patches, batch: usize, x: &[f32], w: BandWeights, bias: &[f32]) -> Vec<f32> {
        let cout = bias.len();
        let (ho, wo) = (p.out_height(), p.out_width());
        let out_plane = ho * wo;
        let image_len = p.channels * p.height * p.width;
        let rows = p.channels * p.kernel * p.kernel;
        let direct = p.kernel == 1 && p.stride == 1 && p.padding == 0;
        let band_rows = self.band_rows(p, batch, rayon::current_num_threads());
        let tasks: Vec<(usize, usize, usize)> = (0..batch)
            .flat_map(|b| {
                (0..ho)
                    .step_by(band_rows)
                    .map(move |r0| (b, r0, (r0 + band_rows).min(ho)))
            })
            .collect();
        // The output pre-filled with the bias; each band's GEMM adds into its own rows of
        // every channel plane, in place.
        let mut out = vec![0f32; batch * cout * out_plane];
        out.par_chunks_mut(out_plane)
            .enumerate()
            .for_each(|(i, plane)| plane.fill(bias[i % cout]));
        let whole = BandOutput {
            first: out.as_mut_ptr(),
            row_stride: out_plane,
        };
        assert!(tasks.iter().all(|&(b, _, r1)| b < batch && r1 <= ho));
        // The band's product: `dst += w @ rhs`, rhs `rows x n` with rows `rhs_stride` apart.
        let product = |buffers: &mut BandBuffers,
                       dst: BandOutput,
                       rhs: &[f32],
                       rhs_stride: usize,
                       n: usize| {
            match w {
                // SAFETY: the caller's band: rows r0..r1 of picture b's cout planes.
                BandWeights::F32(w) => unsafe {
                    gemm_band(dst, w, rhs, rhs_stride, (cout, n, rows))
                },
                BandWeights::Bf16(a, kernel) => {
                    buffers.packed.pack_f32_rows(rhs, rows, n, rhs_stride);
                    // SAFETY: as above: cout rows of n values, out_plane apart.
                    unsafe {
                        gemm_bf16(kernel, dst.first, dst.row_stride, a, &buffers.packed, true)
                    }
                }
            }
        };
        // One task per band: its patch matrix (in a buffer reused by the thread), then a
        // single-threaded GEMM into the band's part of the output.
        tasks.par_iter().for_each_init(
            BandBuffers::default,
            |buffers: &mut BandBuffers, &(b, r0, r1)| {
                let img = &x[b * image_len..(b + 1) * image_len];
                let n = (r1 - r0) * wo;
                // SAFETY: in bounds: picture b < batch, row r0 < ho (asserted above).
                let dst = unsafe { whole.offset(b * cout * out_plane + r0 * wo) };
                if direct {
                    product(buffers, dst, &img[r0 * wo..], out_plane, n);
                    return;
                }
                let mut cols = std::mem::take(&mut buffers.cols);
                let patch_row = |r: usize, row: &mut [f32]| {
                    row.fill(0.0);
                    p.for_each_run_in(r, r0..r1, |col, src, len| {
                        gather_run(&mut row[col..col + len], &img[src..], p.stride);
                    });
                };
                match w {
                    BandWeights::Bf16(a, kernel) => {
                        let pairs = buffers.packed.begin(rows, n);
                        if p.stride == 1 {
                            // Straight from the picture into the pairs.
                            for q in 0..pairs {
                                pack_pair_stride1(&mut buffers.packed, p, img, q, rows, r0..r1);
                            }
                        } else {
                            // The patch matrix two rows at a time, packed as it is built.
                            cols.resize(2 * n, 0.0);
                            let (even, odd) = cols.split_at_mut(n);
                            for q in 0..pairs {
                                patch_row(2 * q, even);
                                let odd = (2 * q + 1 < rows).then(|| {
                                    patch_row(2 * q + 1, odd);
                                    &*odd
                                });
                                buffers.packed.set_pair(q, even, odd);
                            }
                        }
                        // SAFETY: the band: cout rows of n values, out_plane apart.
                        unsafe {
                            gemm_bf16(kernel, dst.first, dst.row_stride, a, &buffers.packed, true)
                        }
                    }
                    BandWeights::F32(_) => {
                        cols.resize(rows * n, 0.0);
                        for (r, row) in cols.chunks_mut(n).enumerate() {
                            patch_row(r, row);
                        }
                        product(buffers, dst, &cols, n, n);
                    }
                }
                buffers.cols = cols;
            },
        );
        out
    }
}

/// Pair `q` of a band's patch matrix (patch rows `2q` and `2q + 1`, the second absent past
/// `rows`) for the output rows `band`, packed straight from the picture `img` for a stride-1
/// convolution: each slot is written once from the two taps' inputs (zero outside the
/// picture), with no f32 patch rows in between (zero-filled, copied into and read back,
/// they were a tenth of a bf16 UNet step).
fn pack_pair_stride1(
    packed: &mut PackedB,
    p: &Patches,
    img: &[f32],
    q: usize,
    rows: usize,
    band: std::ops::Range<usize>,
) {
    debug_assert_eq!(p.stride, 1);
    let wo = p.out_width();
    with_avx512(
        #[inline(always)]
        || {
            for (i, oy) in band.enumerate() {
                let even = p.run_on_row(2 * q, oy);
                let odd = (2 * q + 1 < rows)
                    .then(|| p.run_on_row(2 * q + 1, oy))
                    .flatten();
                // Segments of the output row over which each tap is wholly inside or outside.
                let mut cuts = [0, wo, 0, 0, 0, 0];
                for (slot, run) in cuts[2..].chunks_exact_mut(2).zip([&even, &odd]) {
                    if let Some((columns, _)) = run {
                        slot.copy_from_slice(&[columns.start, columns.end]);
                    }
                }
                cuts.sort_unstable();
                for seg in cuts.windows(2).filter(|w| w[0] < w[1]) {
                    let (a, b) = (seg[0], seg[1]);
                    let inputs = |run: &Option<(std::ops::Range<usize>, usize)>| {
                        run.as_ref()
                            .filter(|(cols, _)| cols.start <= a && b <= cols.end)
                            .map(|(cols, src)| &img[src + (a - cols.start)..][..b - a])
                    };
                    let (lo, hi) = (inputs(&even), inputs(&odd));
                    // In pieces that stay inside one panel of the packed matrix.
                    let mut x = a;
                    while x < b {
                        let col = i * wo + x;
                        let len = (NR - col % NR).min(b - x);
                        let part = x - a..x - a + len;
                        let slots = packed.pair_slots(q, col, len);
                        write_pairs(
                            slots,
                            lo.map(|l| &l[part.clone()]),
                            hi.map(|h| &h[part.clone()]),
                        );
                        x += len;
                    }
                }
            }
        },
    );
    packed.clear_pair_tail(q);
}

/// `dst[i] = (lo[i], hi[i])` as bf16 pairs, a missing side zero.
#[inline(always)]
fn write_pairs(dst: &mut [u32], lo: Option<&[f32]>, hi: Option<&[f32]>) {
    match (lo, hi) {
        (Some(lo), Some(hi)) => in_vectors(dst, |i| f32_pair(lo[i], hi[i])),
        (Some(lo), None) => in_vectors(dst, |i| f32_pair(lo[i], 0.0)),
        (None, Some(hi)) => in_vectors(dst, |i| f32_pair(0.0, hi[i])),
        (None, None) => dst.fill(0),
    }
}

/// `dst[i] = f(i)` in whole vectors of [`LANES`]: a length that is not a multiple ends with
/// one vector overlapping the previous one (the same values written twice), not with a
/// scalar remainder loop (the pieces here are often 31 or 62 long).
#[inline(always)]
fn in_vectors(dst: &mut [u32], f: impl Fn(usize) -> u32) {
    const LANES: usize = 16;
    let n = dst.len();
    if n < LANES {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = f(i);
        }
        return;
    }
    let vector = |dst: &mut [u32], start: usize| {
        let out: &mut [u32; LANES] = (&mut dst[start..start + LANES]).try_into().unwrap();
        for (lane, d) in out.iter_mut().enumerate() {
            *d = f(start + lane);
        }
    };
    let mut start = 0;
    while start + LANES <= n {
        vector(dst, start);
        start += LANES;
    }
    if start < n {
        vector(dst, n - LANES);
    }
}

/// [`BandedConv`] with the weights packed when the layer was loaded (`prepacked_bf16.rs`):
/// `x` and `bias` are the operands.
pub(crate) struct PackedBandedConv<'a> {
    pub conv: BandedConv,
    pub weight: &'a PrepackedConv,
}

impl CustomOp2 for PackedBandedConv<'_> {
    fn name(&self) -> &'static str {
        "kakusan-packed-banded-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (conv, w) = (&self.conv, self.weight);
        conv.convolve((xs, xl), &w.dims, (bs, bl), |p, batch, x, bias| {
            Ok(conv.run(p, batch, x, BandWeights::Bf16(&w.a, w.kernel), bias))
        })
    }
}

impl BandedConv {
    /// Checks the input and bias against a weight of shape `w_dims` (`[cout, c, k, k]`) and
    /// returns `product(patches, batch, x, bias)` (the output's values) as a
    /// `[batch, cout, ho, wo]` result.
    fn convolve(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        w_dims: &[usize],
        (bs, bl): (&CpuStorage, &Layout),
        product: impl FnOnce(&Patches, usize, &[f32], &[f32]) -> Result<Vec<f32>>,
    ) -> Result<(CpuStorage, Shape)> {
        let p = geometry(xl.dims(), w_dims, self.stride, self.padding)?;
        let x = contiguous_f32(xs, xl, "conv2d: input")?;
        let bias = contiguous_f32(bs, bl, "conv2d: bias")?;
        let (batch, cout) = (xl.dims()[0], w_dims[0]);
        if bias.len() != cout {
            candle_core::bail!("conv2d: bias has {} values for {cout} channels", bias.len());
        }
        let out = product(&p, batch, x, bias)?;
        let shape = Shape::from((batch, cout, p.out_height(), p.out_width()));
        Ok((CpuStorage::F32(out), shape))
    }
}

/// The convolution with its weight as an operand: f32, or bf16 where the CPU has no bf16
/// dot-product kernel (with one, `Conv2d` packs bf16 weights at load and runs
/// [`PackedBandedConv`]).
impl CustomOp3 for BandedConv {
    fn name(&self) -> &'static str {
        "kakusan-banded-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.convolve((xs, xl), wl.dims(), (bs, bl), |p, batch, x, bias| {
            Ok(match ws {
                // bf16 weights (`cpu_bf16.rs`): widened for the f32 GEMM, the input rounded
                // to bf16: the products of the bf16 operands, f32 sums.
                CpuStorage::BF16(_) => {
                    let w = widened_weights(ws, wl, "conv2d: weight")?;
                    self.run(p, batch, &rounded_to_bf16(x), BandWeights::F32(&w), bias)
                }
                _ => {
                    let w = contiguous_f32(ws, wl, "conv2d: weight")?;
                    self.run(p, batch, x, BandWeights::F32(w), bias)
                }
            })
        })
    }
}
