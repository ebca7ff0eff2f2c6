//! `im2col` and its adjoint `col2im` as candle custom ops with gradients, so that a training
//! convolution is one matrix product whose forward and backward passes both run on candle's
//! GEMM. (candle's own conv2d backward goes through a direct `conv_transpose2d` loop that
//! is several times slower than GEMM on CPU.)
//!
//! For an input `[B, C, H, W]`, a square kernel `k`, stride `s` and zero padding `p`,
//! `im2col` gives `[B, C*k*k, Ho*Wo]` with row `c*k*k + ki*k + kj` and column `oy*Wo + ox`
//! holding `x[b, c, oy*s - p + ki, ox*s - p + kj]` (0 outside the picture); `col2im` sums
//! such columns back into a picture. Each is the other's transpose, hence its gradient.

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

    /// For row `r` (channel, ki, kj) and each output position: the input index, if inside.
    fn for_each_tap(&self, r: usize, mut f: impl FnMut(usize, usize)) {
        let k = self.kernel;
        let (c, ki, kj) = (r / (k * k), (r / k) % k, r % k);
        let (ho, wo) = (self.out_height(), self.out_width());
        for oy in 0..ho {
            let y = (oy * self.stride + ki) as isize - self.padding as isize;
            if y < 0 || y >= self.height as isize {
                continue;
            }
            for ox in 0..wo {
                let x = (ox * self.stride + kj) as isize - self.padding as isize;
                if x < 0 || x >= self.width as isize {
                    continue;
                }
                let src = (c * self.height + y as usize) * self.width + x as usize;
                f(oy * wo + ox, src);
            }
        }
    }
}

fn f32_data<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("im2col: only f32 is supported")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("im2col: the input must be contiguous"),
    }
}

/// `[B, C, H, W]` -> `[B, C*k*k, Ho*Wo]`.
pub struct Im2Col(pub Patches);

/// `[B, C*k*k, Ho*Wo]` -> `[B, C, H, W]` (sums overlapping taps).
pub struct Col2Im(pub Patches);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "kakusan-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.0;
        let x = f32_data(s, l)?;
        let dims = l.dims();
        if dims.len() != 4 || dims[1] != p.channels || dims[2] != p.height || dims[3] != p.width {
            bail!("im2col: input {dims:?} does not match {p:?}");
        }
        let (rows, cols) = (p.rows(), p.cols());
        let image_len = p.channels * p.height * p.width;
        let mut out = vec![0f32; dims[0] * rows * cols];
        out.par_chunks_mut(cols).enumerate().for_each(|(i, dst)| {
            let (b, r) = (i / rows, i % rows);
            let img = &x[b * image_len..(b + 1) * image_len];
            p.for_each_tap(r, |col, src| dst[col] = img[src]);
        });
        Ok((CpuStorage::F32(out), Shape::from((dims[0], rows, cols))))
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
        let cols_data = f32_data(s, l)?;
        let dims = l.dims();
        let (rows, cols) = (p.rows(), p.cols());
        if dims.len() != 3 || dims[1] != rows || dims[2] != cols {
            bail!("col2im: input {dims:?} does not match {p:?}");
        }
        let plane = p.height * p.width;
        let kk = p.kernel * p.kernel;
        let mut out = vec![0f32; dims[0] * p.channels * plane];
        // One task per (image, channel) plane: its k*k rows are the only ones writing it.
        out.par_chunks_mut(plane).enumerate().for_each(|(i, dst)| {
            let (b, c) = (i / p.channels, i % p.channels);
            for t in 0..kk {
                let r = c * kk + t;
                let src = &cols_data[(b * rows + r) * cols..(b * rows + r + 1) * cols];
                p.for_each_tap(r, |col, at| dst[at - c * plane] += src[col]);
            }
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims[0], p.channels, p.height, p.width)),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}
