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

fn matmul_on(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    // SAFETY: `dst` holds m x n elements (checked); `lhs` and `rhs` are views the callers
    // build over slices of at least m x k and k x n elements with these strides; gemm reads
    // only inside those bounds and writes only `dst`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
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
}
