//! Single-threaded matrix products on slices for the custom ops' CPU kernels, which run one
//! rayon task per picture (or per attention head) and call these inside it: a strided
//! [`View`] of a row-major slice and [`matmul`] through the `gemm` crate (the GEMM candle's
//! own CPU matmul uses); [`matmul_parallel`] for an op whose whole work is one product.

use gemm::{gemm, Parallelism};

/// A row-major matrix view for [`matmul`]: `rows x cols` with element `(i, j)` at
/// `i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl View {
    pub(crate) fn row_major(data: &[f32], cols: usize) -> Self {
        View {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    pub(crate) fn transposed(self) -> Self {
        View {
            ptr: self.ptr,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// `dst (m x n, row-major) = lhs (m x k) @ rhs (k x n)`, plus `dst` when `accumulate`;
/// single-threaded (the callers run one task per picture).
pub(crate) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    matmul_on(dst, (m, n, k), lhs, rhs, accumulate, Parallelism::None)
}

/// [`matmul`] on all of rayon's threads (a product that is the whole of an op's work).
pub(crate) fn matmul_parallel(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: View, rhs: View) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    matmul_on(dst, (m, n, k), lhs, rhs, false, parallelism)
}

/// Below this many output columns (with more rows than columns) a product is computed into a
/// column-major scratch and transposed into `dst`.
///
/// `gemm` turns a row-major destination around and tiles its columns by 16-lane vectors:
/// with 8 columns (the 8-wide heads of kakusan-mini's UNet at 16x16: `P V`, `dV`, `dQ`, `dK`)
/// half of each vector of its one-vector kernel is padding. Column-major, the rows are the
/// long side and it runs the four-vector kernel; the transpose back costs one pass over
/// `m x n` values. Measured per op (`train_op_cost`): attention [256, 256, 8] 59-70 -> 48-54
/// ms. Not for 16 columns and more: there gemm then packs the larger operand and loses what
/// the kernel gains (width 16 unchanged; SD 1.5's width 40 at 4096 keys twice as slow).
const NARROW_COLUMNS: usize = 16;

fn matmul_on(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if n < NARROW_COLUMNS && m > n && k > 0 {
        let mut column_major = vec![0f32; m * n];
        // SAFETY: as below; `column_major` holds m x n elements at strides (1, m).
        unsafe {
            gemm_raw(
                &mut column_major,
                (m, n, k),
                (1, m as isize),
                lhs,
                rhs,
                false,
                parallelism,
            )
        };
        for (i, row) in dst[..m * n].chunks_exact_mut(n).enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                let v = column_major[j * m + i];
                *out = if accumulate { *out + v } else { v };
            }
        }
        return;
    }
    // SAFETY: `dst` holds m x n elements (checked) at strides (n, 1).
    unsafe {
        gemm_raw(
            dst,
            (m, n, k),
            (n as isize, 1),
            lhs,
            rhs,
            accumulate,
            parallelism,
        )
    }
}

/// `gemm` into `dst` with row stride `dst_strides.0` and column stride `dst_strides.1`.
///
/// # Safety
/// `dst` must hold every element those strides reach for an `m x n` result; `lhs` and `rhs`
/// must be views over slices of at least m x k and k x n elements with their strides (gemm
/// reads only inside those bounds and writes only `dst`).
unsafe fn gemm_raw(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    (dst_rs, dst_cs): (isize, isize),
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        dst_cs,
        dst_rs,
        accumulate,
        lhs.ptr,
        lhs.col_stride,
        lhs.row_stride,
        rhs.ptr,
        rhs.col_stride,
        rhs.row_stride,
        1.0f32,
        1.0f32,
        false,
        false,
        false,
        parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn narrow_and_wide_products_match_a_plain_triple_loop() {
        // Narrow (the column-major route, odd sizes included), square and wide shapes; the
        // left operand read transposed in half of them; plain and accumulating.
        for &(m, n, k) in &[
            (100, 8, 37),
            (64, 8, 256),
            (33, 7, 5),
            (8, 8, 9),
            (40, 16, 13),
        ] {
            for transposed_lhs in [false, true] {
                for accumulate in [false, true] {
                    let a = values(m * k, 1);
                    let b = values(k * n, 2);
                    let start = values(m * n, 3);
                    let lhs = if transposed_lhs {
                        // `a` holds the k x m transpose of the left operand.
                        View::row_major(&a, m).transposed()
                    } else {
                        View::row_major(&a, k)
                    };
                    let at = |i: usize, p: usize| {
                        if transposed_lhs {
                            a[p * m + i]
                        } else {
                            a[i * k + p]
                        }
                    };
                    let mut dst = start.clone();
                    matmul(&mut dst, m, n, k, lhs, View::row_major(&b, n), accumulate);
                    for i in 0..m {
                        for j in 0..n {
                            let mut want: f64 = if accumulate {
                                start[i * n + j] as f64
                            } else {
                                0.0
                            };
                            for p in 0..k {
                                want += at(i, p) as f64 * b[p * n + j] as f64;
                            }
                            let got = dst[i * n + j] as f64;
                            // f32 sums of k products of values below 1 in magnitude.
                            assert!(
                                (got - want).abs() <= 1e-5 * (k as f64 + 1.0),
                                "{m}x{n}x{k} lhs^T {transposed_lhs} acc {accumulate} at ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
