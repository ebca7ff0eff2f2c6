//! The bf16 dot-product GEMM of `--dtype bf16` on the CPU: `C += A B` with both operands at
//! bf16 precision and f32 sums, on the CPU's bf16 dot-product instruction (AVX-512 BF16's
//! `vdpbf16ps`: 16 f32 lanes, each adding the two products of a pair of bf16 values) when
//! it has one.
//!
//! The operands are packed first into pairs of consecutive `k` (one `u32`: the even `k` in
//! the low half, the odd one in the high half, an odd `k`'s last pair padded with zero):
//! [`PackedA`] in panels of [`MR`] rows, [`PackedB`] in panels of [`NR`] columns, each panel
//! pair after pair. Packing rounds f32 operands to bf16 (to nearest, ties to even, as
//! `cpu_bf16.rs` does) and copies bf16 ones, so the products are exactly those of the
//! portable path (bf16 x bf16 is exact in f32); only the order of the f32 sums differs.
//! (`vdpbf16ps` also reads subnormal bf16 inputs as zero, which no picture notices.)
//!
//! The micro-kernel keeps an [`MR`] x [`NR`] tile of `C` in 24 registers: per pair of `k`,
//! two vectors of `B` and one broadcast pair of each of `A`'s rows. `k` is taken in blocks
//! of [`KC`] pairs so that the `B` panel being reused stays in the L1 cache. Single-threaded:
//! the callers run one task per band of a picture (`banded_conv.rs`) or per block of rows
//! (`bf16_linear_op.rs`).
//!
//! [`Kernel::Portable`] computes the same in plain Rust on the same packed operands: the
//! reference of the tests on any machine (without a native kernel the layers keep the
//! widened-weight f32 GEMM, which is faster).

use half::bf16;

use super::cpu_bf16::bf16_bits;

/// Rows of `A` (and of the `C` tile) per panel.
pub(crate) const MR: usize = 12;
/// Columns of `B` (and of the `C` tile) per panel: two vectors of 16 f32 lanes.
pub(crate) const NR: usize = 32;
/// Pairs of `k` per block: a `B` panel block is `KC * NR * 4` = 16 KiB.
const KC: usize = 128;

/// Which micro-kernel multiplies the packed panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Plain Rust, any CPU: the tests' reference (the layers never choose it: without a
    /// native kernel they keep the widened-weight f32 GEMM, which is faster).
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
    /// AVX-512 BF16 (`vdpbf16ps`), detected at run time.
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
}

impl Kernel {
    /// The CPU's bf16 dot-product kernel, if it has one, else `None` (the callers then keep
    /// the widened-weight f32 GEMM, which is faster than [`Kernel::Portable`]).
    /// `KAKUSAN_BF16_DOT=off` turns the native kernel off (to compare the two paths).
    pub(crate) fn native() -> Option<Kernel> {
        static NATIVE: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
        *NATIVE.get_or_init(|| {
            if std::env::var("KAKUSAN_BF16_DOT").is_ok_and(|v| v == "off") {
                return None;
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
            {
                return Some(Kernel::Avx512Bf16);
            }
            None
        })
    }
}

/// Two f32 rounded to bf16 as one pair.
#[inline(always)]
pub(crate) fn f32_pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// Two bf16 as one pair.
#[inline(always)]
fn bf16_pair(lo: bf16, hi: bf16) -> u32 {
    lo.to_bits() as u32 | ((hi.to_bits() as u32) << 16)
}

/// `A` (`m x k`) packed in panels of [`MR`] rows.
pub(crate) struct PackedA {
    data: Vec<u32>,
    m: usize,
    pairs: usize,
}

impl PackedA {
    /// `m x k` bf16 values, row-major (a convolution's or linear layer's weight matrix).
    pub(crate) fn from_bf16_rows(w: &[bf16], m: usize, k: usize) -> Self {
        assert!(
            w.len() >= m * k,
            "bf16 gemm: A has {} values for {m}x{k}",
            w.len()
        );
        Self::pack_rows(m, k, |row| &w[row * k..][..k], bf16_pair)
    }

    /// `m x k` f32 values, rows `ld` apart, rounded to bf16 (a linear layer's input).
    pub(crate) fn from_f32_rows(x: &[f32], m: usize, k: usize, ld: usize) -> Self {
        assert!(
            m == 0 || (m - 1) * ld + k <= x.len(),
            "bf16 gemm: A too short"
        );
        Self::pack_rows(m, k, |row| &x[row * ld..][..k], f32_pair)
    }

    /// Packs rows given as slices of `k` values, `pair` making one pair (a zero `T` pads
    /// an odd `k`).
    fn pack_rows<'a, T: Copy + Default + 'a>(
        m: usize,
        k: usize,
        row: impl Fn(usize) -> &'a [T],
        pair: impl Fn(T, T) -> u32,
    ) -> Self {
        let pairs = k.div_ceil(2);
        let mut data = vec![0u32; m.div_ceil(MR) * pairs * MR];
        for (p, panel) in data.chunks_mut((pairs * MR).max(1)).enumerate() {
            for r in 0..(m - p * MR).min(MR) {
                let values = row(p * MR + r);
                let mut to = panel[r..].iter_mut().step_by(MR);
                for (two, d) in values.chunks_exact(2).zip(&mut to) {
                    *d = pair(two[0], two[1]);
                }
                if let (&[last], Some(d)) = (values.chunks_exact(2).remainder(), to.next()) {
                    *d = pair(last, T::default());
                }
            }
        }
        Self { data, m, pairs }
    }

    /// `A = X^T` for f32 `X` (`k x m`, rows `ld` apart), rounded to bf16 (the values of an
    /// attention, for `O^T = V^T P^T`).
    pub(crate) fn from_f32_columns(x: &[f32], m: usize, k: usize, ld: usize) -> Self {
        assert!(
            k == 0 || m == 0 || (k - 1) * ld + m <= x.len(),
            "bf16 gemm: A too short"
        );
        Self::pack(m, k, |row, kk| {
            let at = |j: usize| if j < k { x[j * ld + row] } else { 0.0 };
            f32_pair(at(kk), at(kk + 1))
        })
    }

    /// Packs with `pair(row, kk)`: the pair at the even `kk` of row `row`.
    fn pack(m: usize, k: usize, pair: impl Fn(usize, usize) -> u32) -> Self {
        let pairs = k.div_ceil(2);
        let panels = m.div_ceil(MR);
        let mut data = vec![0u32; panels * pairs * MR];
        for (p, panel) in data.chunks_mut((pairs * MR).max(1)).enumerate() {
            let rows = (m - p * MR).min(MR);
            for r in 0..rows {
                for q in 0..pairs {
                    panel[q * MR + r] = pair(p * MR + r, 2 * q);
                }
            }
        }
        Self { data, m, pairs }
    }
}

/// `B` (`k x n`) packed in panels of [`NR`] columns, in a buffer a caller can reuse.
#[derive(Default)]
pub(crate) struct PackedB {
    data: Vec<u32>,
    n: usize,
    pairs: usize,
}

impl PackedB {
    /// The number of columns `n`.
    pub(crate) fn columns(&self) -> usize {
        self.n
    }

    /// Repacks from `k x n` f32 values, rows `ld` apart, rounded to bf16 (a 1x1
    /// convolution's picture, or the exponentials of an attention).
    pub(crate) fn pack_f32_rows(&mut self, p: &[f32], k: usize, n: usize, ld: usize) {
        assert!(
            k == 0 || n == 0 || (k - 1) * ld + n <= p.len(),
            "bf16 gemm: B too short"
        );
        let pairs = self.begin(k, n);
        for q in 0..pairs {
            let even = &p[2 * q * ld..][..n];
            let odd = (2 * q + 1 < k).then(|| &p[(2 * q + 1) * ld..][..n]);
            self.set_pair(q, even, odd);
        }
    }

    /// Starts packing `k x n` values pair by pair ([`Self::set_pair`] for every pair):
    /// returns the number of pairs.
    pub(crate) fn begin(&mut self, k: usize, n: usize) -> usize {
        let pairs = k.div_ceil(2);
        self.data.resize(n.div_ceil(NR) * pairs * NR, 0);
        self.n = n;
        self.pairs = pairs;
        pairs
    }

    /// Starts packing `k x n` values with `n` at most [`NR`] (one panel) and returns the
    /// panel: pair `q` of column `c` goes at `q * NR + c`; the caller writes every pair.
    /// (Columns from `n` to `NR` only reach columns of the product that are never stored.)
    pub(crate) fn single_panel(&mut self, k: usize, n: usize) -> &mut [u32] {
        assert!((1..=NR).contains(&n), "bf16 gemm: {n} columns in one panel");
        self.begin(k, n);
        &mut self.data
    }

    /// Packs pair `q`: rows `2q` (`even`) and `2q + 1` (`odd`, `None` past an odd `k`) of
    /// `n` f32 values each, rounded to bf16 (a convolution band builds its patch matrix two
    /// rows at a time and packs them here, so the whole matrix is never written).
    pub(crate) fn set_pair(&mut self, q: usize, even: &[f32], odd: Option<&[f32]>) {
        let (n, pairs) = (self.n, self.pairs);
        assert!(q < pairs && even.len() >= n && odd.is_none_or(|o| o.len() >= n));
        super::avx2::with_avx512(
            #[inline(always)]
            || {
                for j in 0..n.div_ceil(NR) {
                    let c0 = j * NR;
                    let cols = (n - c0).min(NR);
                    let dst = &mut self.data[(j * pairs + q) * NR..][..NR];
                    let lo = &even[c0..c0 + cols];
                    match odd {
                        Some(odd) => {
                            let hi = &odd[c0..c0 + cols];
                            for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                                *d = f32_pair(l, h);
                            }
                        }
                        None => {
                            for (d, &l) in dst.iter_mut().zip(lo) {
                                *d = bf16_bits(l);
                            }
                        }
                    }
                    dst[cols..].fill(0);
                }
            },
        );
    }

    /// Pair `q`'s slots of the columns `c0..c0 + len`, which must lie in one panel (after
    /// [`Self::begin`]): the caller writes each as a pair ([`f32_pair`]).
    pub(crate) fn pair_slots(&mut self, q: usize, c0: usize, len: usize) -> &mut [u32] {
        assert!(q < self.pairs && c0 % NR + len <= NR && c0 + len <= self.n);
        let at = ((c0 / NR) * self.pairs + q) * NR + c0 % NR;
        &mut self.data[at..at + len]
    }

    /// Zeroes pair `q`'s slots past the last column `n` (in the last panel).
    pub(crate) fn clear_pair_tail(&mut self, q: usize) {
        let (n, pairs) = (self.n, self.pairs);
        if n % NR != 0 {
            let at = ((n / NR) * pairs + q) * NR;
            self.data[at + n % NR..at + NR].fill(0);
        }
    }

    /// Repacks `B = X^T` from f32 `X` (`n x k`, rows `ld` apart), rounded to bf16 (the
    /// queries of an attention, for `S^T = K Q^T`).
    pub(crate) fn pack_f32_transposed(&mut self, x: &[f32], n: usize, k: usize, ld: usize) {
        assert!(
            k == 0 || n == 0 || (n - 1) * ld + k <= x.len(),
            "bf16 gemm: B too short"
        );
        self.pack_transposed(n, k, |c| &x[c * ld..][..k], f32_pair);
    }

    /// Packs `B = W^T` from bf16 `W` (`n x k`, row-major: a linear layer's weight).
    pub(crate) fn from_bf16_transposed(w: &[bf16], n: usize, k: usize) -> Self {
        assert!(
            w.len() >= n * k,
            "bf16 gemm: W has {} values for {n}x{k}",
            w.len()
        );
        let mut b = Self::default();
        b.pack_transposed(n, k, |c| &w[c * k..][..k], bf16_pair);
        b
    }

    /// Packs `B = X^T` from the rows of `X` (column `c` of `B` is `row(c)`, `k` values),
    /// `pair` making one pair (a zero `T` pads an odd `k`).
    fn pack_transposed<'a, T: Copy + Default + 'a>(
        &mut self,
        n: usize,
        k: usize,
        row: impl Fn(usize) -> &'a [T],
        pair: impl Fn(T, T) -> u32,
    ) {
        let pairs = self.begin(k, n);
        for (j, panel) in self.data.chunks_mut((pairs * NR).max(1)).enumerate() {
            let c0 = j * NR;
            let cols = (n - c0).min(NR);
            for c in 0..cols {
                let values = row(c0 + c);
                for q in 0..pairs {
                    let hi = values.get(2 * q + 1).copied().unwrap_or_default();
                    panel[q * NR + c] = pair(values[2 * q], hi);
                }
            }
            for q in 0..pairs {
                panel[q * NR + cols..(q + 1) * NR].fill(0);
            }
        }
    }
}

/// `C = A B`, or `C += A B` when `accumulate`, `C` being `a.m x b.n` f32 values with rows
/// `ldc` apart starting at `c`; single-threaded. (Without `accumulate`, `C` is only written,
/// never read: a fresh zeroed allocation is then not first read through the shared zero
/// page and copied on write, which costs a TLB flush on every core per page.)
///
/// # Safety
/// `c` must point at `a.m` rows of `b.n` writable f32 values, `ldc` apart, that nothing else
/// reads or writes during the call.
pub(crate) unsafe fn gemm_bf16(
    kernel: Kernel,
    c: *mut f32,
    ldc: usize,
    a: &PackedA,
    b: &PackedB,
    accumulate: bool,
) {
    assert_eq!(a.pairs, b.pairs, "bf16 gemm: A and B differ in k");
    let (m, n, pairs) = (a.m, b.n, a.pairs);
    // A tile of C that is not whole (at the right or bottom edge) is computed here and its
    // valid part added to C.
    let mut edge = [0f32; MR * NR];
    if pairs == 0 && !accumulate {
        for r in 0..m {
            // SAFETY: row r < m of C, n values.
            unsafe { std::ptr::write_bytes(c.add(r * ldc), 0, n) };
        }
    }
    for q0 in (0..pairs).step_by(KC) {
        let kc = (pairs - q0).min(KC);
        let add = accumulate || q0 > 0;
        for j in 0..n.div_ceil(NR) {
            let bp = &b.data[(j * pairs + q0) * NR..][..kc * NR];
            let cols = (n - j * NR).min(NR);
            for i in 0..m.div_ceil(MR) {
                let ap = &a.data[(i * pairs + q0) * MR..][..kc * MR];
                let rows = (m - i * MR).min(MR);
                // SAFETY: (i * MR, j * NR) is inside C (i, j range over its tiles).
                let tile = unsafe { c.add(i * MR * ldc + j * NR) };
                if rows == MR && cols == NR {
                    // SAFETY: a whole tile: MR rows of NR values, ldc apart, inside C.
                    unsafe { micro_kernel(kernel, kc, ap, bp, tile, ldc, add) };
                } else {
                    // SAFETY: `edge` is one MR x NR tile with rows NR apart.
                    unsafe { micro_kernel(kernel, kc, ap, bp, edge.as_mut_ptr(), NR, false) };
                    for r in 0..rows {
                        for (s, &e) in edge[r * NR..][..cols].iter().enumerate() {
                            // SAFETY: row r < rows, column s < cols: inside C.
                            let to = unsafe { &mut *tile.add(r * ldc + s) };
                            *to = if add { *to + e } else { e };
                        }
                    }
                }
            }
        }
    }
}

/// `tile (MR x NR, rows ldc apart) = ap bp` over `kc` pairs, or `+=` when `add`.
///
/// # Safety
/// `tile` must point at MR rows of NR writable f32 values, `ldc` apart.
#[inline(always)]
unsafe fn micro_kernel(
    kernel: Kernel,
    kc: usize,
    ap: &[u32],
    bp: &[u32],
    tile: *mut f32,
    ldc: usize,
    add: bool,
) {
    assert!(ap.len() >= kc * MR && bp.len() >= kc * NR);
    match kernel {
        // SAFETY: as the caller guarantees.
        Kernel::Portable => unsafe { portable_kernel(kc, ap, bp, tile, ldc, add) },
        // SAFETY: `Avx512Bf16` is only chosen when the CPU has AVX-512 F and BF16; the
        // panels hold kc pairs (asserted); the tile as the caller guarantees.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Bf16 => unsafe {
            avx512_bf16_kernel(kc, ap.as_ptr(), bp.as_ptr(), tile, ldc, add)
        },
    }
}

/// The widened bf16 of a pair's low and high halves.
#[inline(always)]
fn halves(pair: u32) -> (f32, f32) {
    (
        f32::from_bits(pair << 16),
        f32::from_bits(pair & 0xffff_0000),
    )
}

/// # Safety
/// As [`micro_kernel`].
unsafe fn portable_kernel(
    kc: usize,
    ap: &[u32],
    bp: &[u32],
    tile: *mut f32,
    ldc: usize,
    add: bool,
) {
    let mut acc = [[0f32; NR]; MR];
    for q in 0..kc {
        let b = &bp[q * NR..][..NR];
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let (a0, a1) = halves(ap[q * MR + r]);
            for (s, &bq) in acc_row.iter_mut().zip(b) {
                let (b0, b1) = halves(bq);
                *s += a0 * b0 + a1 * b1;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        for (s, v) in acc_row.iter().enumerate() {
            // SAFETY: r < MR, s < NR: inside the tile.
            let to = unsafe { &mut *tile.add(r * ldc + s) };
            *to = if add { *to + v } else { *v };
        }
    }
}

/// # Safety
/// The CPU must have AVX-512 F and BF16; `ap` and `bp` must hold `kc * MR` and `kc * NR`
/// pairs; `tile` as [`micro_kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn avx512_bf16_kernel(
    kc: usize,
    ap: *const u32,
    bp: *const u32,
    tile: *mut f32,
    ldc: usize,
    add: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): the loads read pairs q * MR + r and q * NR + (0..NR) for q < kc,
    // inside the panels; the stores the caller's tile. `__m512bh` is 32 bf16 in the same 64
    // bytes as `__m512i`.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for q in 0..kc {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR + 16).cast()));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let a: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*ap.add(q * MR + r) as i32));
                acc_row[0] = _mm512_dpbf16_ps(acc_row[0], a, b0);
                acc_row[1] = _mm512_dpbf16_ps(acc_row[1], a, b1);
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            let row = tile.add(r * ldc);
            if add {
                _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), acc_row[0]));
                let right = _mm512_add_ps(_mm512_loadu_ps(row.add(16)), acc_row[1]);
                _mm512_storeu_ps(row.add(16), right);
            } else {
                _mm512_storeu_ps(row, acc_row[0]);
                _mm512_storeu_ps(row.add(16), acc_row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn round(v: f32) -> f32 {
        bf16::from_f32(v).to_f32()
    }

    /// The kernels available here: the portable one, and the native one when the CPU has it.
    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable];
        k.extend(Kernel::native());
        k
    }

    /// C0 + A B over every shape class: whole and partial tiles, odd k, k past one block,
    /// row strides wider than the rows; A from f32 or bf16, B from f32 rows or transposed
    /// bf16; against f64 sums of the bf16-rounded operands.
    #[test]
    fn packed_products_equal_the_rounded_operands_product() {
        for kernel in kernels() {
            for (m, n, k) in [
                (1, 1, 1),
                (12, 32, 2),
                (3, 4, 0),
                (13, 33, 3),
                (25, 70, 257),
                (5, 100, 300),
                (40, 7, 31),
            ] {
                let ld = k + 3;
                let a = values(m * ld, 1 + m as u64);
                let bt = values(n * k, 2 + n as u64); // B^T, n x k
                let ldb = n + 5;
                let mut b = vec![0f32; k * ldb];
                for i in 0..k {
                    for j in 0..n {
                        b[i * ldb + j] = bt[j * k + i];
                    }
                }
                let ldc = n + 2;
                let c0 = values(m * ldc, 3);
                let mut expected = vec![0f64; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let mut s = c0[i * ldc + j] as f64;
                        for l in 0..k {
                            s += round(a[i * ld + l]) as f64 * round(bt[j * k + l]) as f64;
                        }
                        expected[i * n + j] = s;
                    }
                }
                let a_bf16: Vec<bf16> = (0..m * k)
                    .map(|i| bf16::from_f32(a[i / k * ld + i % k]))
                    .collect();
                let bt_bf16: Vec<bf16> = bt.iter().map(|&v| bf16::from_f32(v)).collect();
                // A^T, k x m with rows m + 1 apart.
                let mut at = vec![0f32; k * (m + 1)];
                for i in 0..m {
                    for l in 0..k {
                        at[l * (m + 1) + i] = a[i * ld + l];
                    }
                }
                let pa = [
                    PackedA::from_f32_rows(&a, m, k, ld),
                    PackedA::from_bf16_rows(&a_bf16, m, k),
                    PackedA::from_f32_columns(&at, m, k, m + 1),
                ];
                let mut pb_rows = PackedB::default();
                pb_rows.pack_f32_rows(&b, k, n, ldb);
                let mut pb_transposed = PackedB::default();
                pb_transposed.pack_f32_transposed(&bt, n, k, k);
                let pb = [
                    pb_rows,
                    PackedB::from_bf16_transposed(&bt_bf16, n, k),
                    pb_transposed,
                ];
                for (ai, pa) in pa.iter().enumerate() {
                    for (bi, pb) in pb.iter().enumerate() {
                        for accumulate in [true, false] {
                            let mut c = c0.clone();
                            // SAFETY: c holds m rows of ldc >= n values.
                            unsafe { gemm_bf16(kernel, c.as_mut_ptr(), ldc, pa, pb, accumulate) };
                            for i in 0..m {
                                for j in 0..n {
                                    let start = if accumulate {
                                        0.0
                                    } else {
                                        c0[i * ldc + j] as f64
                                    };
                                    let (got, want) =
                                        (c[i * ldc + j] as f64, expected[i * n + j] - start);
                                    // f32 sums of k exact products of magnitude <= 1: a few ulps
                                    // of k.
                                    assert!(
                                    (got - want).abs() <= 4e-7 * (k as f64 + 1.0),
                                    "{kernel:?} A{ai} B{bi} {m}x{n}x{k} ({i},{j}): {got} vs {want}"
                                );
                                }
                                for j in n..ldc {
                                    assert_eq!(
                                        c[i * ldc + j],
                                        c0[i * ldc + j],
                                        "wrote past the row"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One thread's GFLOP/s of the native kernel on one tile whose panels stay in the L1
    /// cache (the kernel's ceiling), and on a convolution-sized product (m 320, k 2880,
    /// n 512), for comparison with what the convolutions reach.
    /// `cargo test --release -p kakusan-models --lib bf16_kernel_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn bf16_kernel_throughput() {
        let Some(kernel) = Kernel::native() else {
            println!("no native bf16 kernel on this CPU");
            return;
        };
        for (m, n, k, reps) in [(12, 32, 256, 200_000), (320, 512, 2880, 40)] {
            let a = PackedA::from_f32_rows(&values(m * k, 1), m, k, k);
            let mut b = PackedB::default();
            b.pack_f32_rows(&values(k * n, 2), k, n, n);
            let mut c = vec![0f32; m * n];
            let start = std::time::Instant::now();
            for _ in 0..reps {
                // SAFETY: c holds m rows of n values.
                unsafe { gemm_bf16(kernel, c.as_mut_ptr(), n, &a, &b, true) };
            }
            let s = start.elapsed().as_secs_f64();
            let gflop = 2.0 * (m * n * k * reps) as f64 / 1e9;
            println!("{m}x{n}x{k}: {:.1} GFLOP/s on one thread", gflop / s);
        }
    }

    /// Rounding: ties to even and NaN, as the `half` crate does.
    #[test]
    fn rounding_matches_the_half_crate() {
        let mut vals = values(10_000, 9);
        vals.extend([
            0.0,
            -0.0,
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::MAX,
            1e-40,
        ]);
        for v in vals {
            assert_eq!(bf16_bits(v), bf16::from_f32(v).to_bits() as u32, "{v:e}");
        }
        assert!(bf16::from_bits(bf16_bits(f32::NAN) as u16).is_nan());
    }
}
