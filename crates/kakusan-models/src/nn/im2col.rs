//! `im2col` and its adjoint `col2im` as candle custom ops with gradients, so that a training
//! convolution is one matrix product whose forward and backward passes both run on candle's
//! GEMM. (candle's own conv2d backward goes through a direct `conv_transpose2d` loop that
//! is several times slower than GEMM on CPU.)
//!
//! For an input `[B, C, H, W]`, a square kernel `k`, stride `s` and zero padding `p`,
//! `im2col` gives one matrix `[C*k*k, B*Ho*Wo]` with row `c*k*k + ki*k + kj` and column
//! `b*Ho*Wo + oy*Wo + ox` holding `x[b, c, oy*s - p + ki, ox*s - p + kj]` (0 outside the
//! picture); `col2im` sums such columns back into pictures. Each is the other's transpose,
//! hence its gradient. The batch lives in the columns so that the convolution is a single
//! `weight @ cols` product: the weight is never broadcast over the batch, whose gradient
//! would be a slow strided sum in candle.

use super::cpu_f32::contiguous_f32;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patches {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Patches {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    fn cols(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// The output columns `ox` whose tap at kernel column `kj` falls inside the picture:
    /// `0 <= ox*stride + kj - padding < width`.
    #[inline(always)]
    fn inside_columns(&self, kj: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        let first = self.padding.saturating_sub(kj).div_ceil(s);
        let end = if self.width + self.padding > kj {
            ((self.width + self.padding - kj - 1) / s + 1).min(self.out_width())
        } else {
            0
        };
        first..end.max(first)
    }

    /// For row `r` (channel, ki, kj), each run of output positions that reads inside the
    /// picture: `f(first column, first input index, length)`; the run's input indices step
    /// by `stride`.
    pub(crate) fn for_each_run(&self, r: usize, f: impl FnMut(usize, usize, usize)) {
        self.for_each_run_in(r, 0..self.out_height(), f)
    }

    /// Row `r`'s (channel, ki, kj) run on output row `oy`: the output columns whose tap falls
    /// inside the picture and the input index of the first (later ones `stride` apart), or
    /// `None` when the tap's input row is outside.
    #[inline(always)]
    pub(crate) fn run_on_row(
        &self,
        r: usize,
        oy: usize,
    ) -> Option<(std::ops::Range<usize>, usize)> {
        let k = self.kernel;
        let (c, ki, kj) = (r / (k * k), (r / k) % k, r % k);
        let y = (oy * self.stride + ki).checked_sub(self.padding)?;
        let columns = self.inside_columns(kj);
        if y >= self.height || columns.is_empty() {
            return None;
        }
        let x = columns.start * self.stride + kj - self.padding;
        Some((columns, (c * self.height + y) * self.width + x))
    }

    /// As [`Self::for_each_run`] for the output rows `rows` only, the first column counted
    /// from the start of row `rows.start` (a band of the patch matrix).
    pub(crate) fn for_each_run_in(
        &self,
        r: usize,
        rows: std::ops::Range<usize>,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let k = self.kernel;
        let (c, ki, kj) = (r / (k * k), (r / k) % k, r % k);
        let wo = self.out_width();
        let columns = self.inside_columns(kj);
        if columns.is_empty() {
            return;
        }
        let first_row = rows.start;
        for oy in rows {
            let y = (oy * self.stride + ki) as isize - self.padding as isize;
            if y < 0 || y >= self.height as isize {
                continue;
            }
            let x = columns.start * self.stride + kj - self.padding;
            let src = (c * self.height + y as usize) * self.width + x;
            f((oy - first_row) * wo + columns.start, src, columns.len());
        }
    }
}

/// `dst[i] = src[i * stride]`: one run of taps into a patch-matrix row.
pub(crate) fn gather_run(dst: &mut [f32], src: &[f32], stride: usize) {
    if stride == 1 {
        dst.copy_from_slice(&src[..dst.len()]);
    } else {
        let taps = src.iter().step_by(stride);
        dst.iter_mut().zip(taps).for_each(|(d, s)| *d = *s);
    }
}

/// `dst[i * stride] += from[i]`: one run of a patch-matrix row summed back into a picture.
pub(crate) fn scatter_add_run(dst: &mut [f32], from: &[f32], stride: usize) {
    if stride == 1 {
        let to = &mut dst[..from.len()];
        to.iter_mut().zip(from).for_each(|(d, s)| *d += s);
    } else {
        let to = dst.iter_mut().step_by(stride);
        to.zip(from).for_each(|(d, s)| *d += s);
    }
}

/// `[B, C, H, W]` -> `[C*k*k, B*Ho*Wo]`.
pub struct Im2Col(pub Patches);

/// `[C*k*k, B*Ho*Wo]` -> `[B, C, H, W]` (sums overlapping taps).
pub struct Col2Im(pub Patches);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "kakusan-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.0;
        let x = contiguous_f32(s, l, "im2col: input")?;
        let dims = l.dims();
        if dims.len() != 4 || dims[1] != p.channels || dims[2] != p.height || dims[3] != p.width {
            bail!("im2col: input {dims:?} does not match {p:?}");
        }
        let (rows, cols) = (p.rows(), p.cols());
        let batch = dims[0];
        let image_len = p.channels * p.height * p.width;
        let mut out = vec![0f32; batch * rows * cols];
        // Chunk i is row r = i / B, image b = i % B.
        out.par_chunks_mut(cols).enumerate().for_each(|(i, dst)| {
            let (r, b) = (i / batch, i % batch);
            let img = &x[b * image_len..(b + 1) * image_len];
            p.for_each_run(r, |col, src, len| {
                gather_run(&mut dst[col..col + len], &img[src..], p.stride);
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((rows, batch * cols))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "kakusan-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.0;
        let cols_data = contiguous_f32(s, l, "col2im: input")?;
        let dims = l.dims();
        let (rows, cols) = (p.rows(), p.cols());
        if dims.len() != 2 || dims[0] != rows || cols == 0 || !dims[1].is_multiple_of(cols) {
            bail!("col2im: input {dims:?} does not match {p:?}");
        }
        let batch = dims[1] / cols;
        let plane = p.height * p.width;
        let kk = p.kernel * p.kernel;
        let mut out = vec![0f32; batch * p.channels * plane];
        // One task per (image, channel) plane: its k*k rows are the only ones writing it.
        out.par_chunks_mut(plane).enumerate().for_each(|(i, dst)| {
            let (b, c) = (i / p.channels, i % p.channels);
            for t in 0..kk {
                let r = c * kk + t;
                let start = (r * batch + b) * cols;
                let src = &cols_data[start..start + cols];
                p.for_each_run(r, |col, at, len| {
                    scatter_add_run(&mut dst[at - c * plane..], &src[col..col + len], p.stride);
                });
            }
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, p.channels, p.height, p.width)),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// <im2col(x), y> = <x, col2im(y)>: col2im is the transpose, hence im2col's gradient,
    /// also where the stride leaves the last row or column of the padded picture unused.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let dev = Device::Cpu;
        let p = Patches {
            channels: 3,
            height: 8,
            width: 7,
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 7), &dev).unwrap();
        let cols = x.apply_op1(Im2Col(p)).unwrap();
        let y = Tensor::randn(0f32, 1.0, cols.dims(), &dev).unwrap();
        let back = y.apply_op1(Col2Im(p)).unwrap();
        let dot = |a: &Tensor, b: &Tensor| -> f64 {
            (a * b)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let (l, r) = (dot(&cols, &y), dot(&x, &back));
        assert!((l - r).abs() < 1e-4 * l.abs().max(1.0), "{l} vs {r}");
    }
}
