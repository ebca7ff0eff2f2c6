//! The CPU f32 training convolution as one candle custom op with an analytic backward:
//! `y[b] = weight @ patches(x[b]) + bias`, picture by picture.
//!
//! Each picture of the batch is one rayon task that builds its own patch matrix
//! `[C*k*k, Ho*Wo]` (see [`Patches`]; 590 KB at 64 channels and 16x16, so it stays in the
//! core's cache) and runs single-threaded GEMMs on it. The backward pass rebuilds the patch
//! matrix instead of keeping it, and computes, per picture: the weight gradient
//! `dY[b] @ patches^T` (summed over the batch in batch order, so it is deterministic), the
//! bias gradient, and the input gradient `col2im(weight^T @ dY[b])`, skipped when the input
//! carries no gradient (the UNet's first convolution). Against `weight @ im2col(x)` over the
//! whole batch as tracked candle ops, this avoids the 19 MB patch matrix and its gradient,
//! which candle's backward would zero-fill and add into its gradient store, and the
//! transposes between `[C, B*HW]` and `[B, C, HW]`.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu_f32::{contiguous_f32, f32_view};
use super::im2col::{gather_run, scatter_add_run, Patches};
use super::small_gemm::{matmul, View};

/// `conv2d(x, weight) + bias` for square kernels, dilation 1, one group.
pub(crate) struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

/// The geometry of a convolution of `x` by `weight`, checked.
pub(crate) fn geometry(
    x: &[usize],
    weight: &[usize],
    stride: usize,
    padding: usize,
) -> Result<Patches> {
    let (&[_, c, h, w], &[_, cin, k, k2]) = (x, weight) else {
        bail!("conv2d: input {x:?} and weight {weight:?} must both be 4-D")
    };
    if cin != c || k != k2 || k == 0 || stride == 0 || h + 2 * padding < k || w + 2 * padding < k {
        bail!("conv2d: input {x:?} does not fit weight {weight:?} (stride {stride}, padding {padding})");
    }
    Ok(Patches {
        channels: c,
        height: h,
        width: w,
        kernel: k,
        stride,
        padding,
    })
}

/// For a stride-1 convolution whose output has the input's size ("same" padding: 3x3 with
/// padding 1, 1x1 without): a patch-matrix row is the channel's plane shifted by the tap's
/// offset, with the rows and columns that fall outside the picture zero. Per tap `(ki, kj)`:
/// the flat offset `dy * W + dx`, the output rows that read inside, and `dx`.
struct TapShift {
    offset: isize,
    rows: std::ops::Range<usize>,
    dx: isize,
}

fn same_size_taps(p: &Patches) -> Option<Vec<TapShift>> {
    if p.stride != 1 || p.out_height() != p.height || p.out_width() != p.width {
        return None;
    }
    let (h, w, pad) = (p.height as isize, p.width as isize, p.padding as isize);
    let mut taps = Vec::with_capacity(p.kernel * p.kernel);
    for ki in 0..p.kernel as isize {
        for kj in 0..p.kernel as isize {
            let (dy, dx) = (ki - pad, kj - pad);
            let rows = (-dy).max(0).min(h) as usize..(h - dy).clamp(0, h) as usize;
            taps.push(TapShift {
                offset: dy * w + dx,
                rows,
                dx,
            });
        }
    }
    Some(taps)
}

impl TapShift {
    /// The positions `i` of the tap's rows whose source `i + offset` lies in the plane
    /// (`0..len`), as `(dst range, src start)`.
    fn span(&self, width: usize, len: usize) -> (std::ops::Range<usize>, usize) {
        let (start, end) = (self.rows.start * width, self.rows.end * width);
        let lo = (start as isize).max(-self.offset).max(0).min(end as isize) as usize;
        let hi = (end as isize)
            .min(len as isize - self.offset)
            .max(lo as isize) as usize;
        // (An empty span's source start is never read; keep it in bounds.)
        (
            lo..hi,
            (lo as isize + self.offset).clamp(0, len as isize) as usize,
        )
    }

    /// Sets to zero the positions of `row` whose tap falls outside the picture: the rows
    /// outside `rows` and, in the others, the columns wrapped around by `dx`.
    fn zero_outside(&self, row: &mut [f32], width: usize) {
        row[..self.rows.start * width].fill(0.0);
        row[self.rows.end * width..].fill(0.0);
        let wrapped = self.dx.unsigned_abs().min(width);
        for line in self.rows.clone() {
            let line = &mut row[line * width..(line + 1) * width];
            if self.dx > 0 {
                line[width - wrapped..].fill(0.0);
            } else {
                line[..wrapped].fill(0.0);
            }
        }
    }
}

/// Writes the patch matrix `[C*k*k, Ho*Wo]` of one picture into `cols`.
fn fill_patches(p: &Patches, image: &[f32], cols: &mut [f32]) {
    let positions = p.out_height() * p.out_width();
    if let Some(taps) = same_size_taps(p) {
        let plane_len = p.height * p.width;
        for (r, row) in cols.chunks_exact_mut(positions).enumerate() {
            let (c, tap) = (r / taps.len(), &taps[r % taps.len()]);
            let plane = &image[c * plane_len..(c + 1) * plane_len];
            let (dst, src) = tap.span(p.width, plane_len);
            row[dst.clone()].copy_from_slice(&plane[src..src + dst.len()]);
            row[..dst.start].fill(0.0);
            row[dst.end..].fill(0.0);
            tap.zero_outside(row, p.width);
        }
        return;
    }
    cols.fill(0.0);
    for (r, row) in cols.chunks_exact_mut(positions).enumerate() {
        p.for_each_run(r, |col, src, len| {
            gather_run(&mut row[col..col + len], &image[src..], p.stride);
        });
    }
}

/// Sums the patch-matrix gradient `dcols` of one picture back into its input gradient (the
/// same-size path first zeroes the entries of taps outside the picture: scratch).
fn add_patches(p: &Patches, dcols: &mut [f32], image: &mut [f32]) {
    let positions = p.out_height() * p.out_width();
    image.fill(0.0);
    if let Some(taps) = same_size_taps(p) {
        let plane_len = p.height * p.width;
        for (r, row) in dcols.chunks_exact_mut(positions).enumerate() {
            let (c, tap) = (r / taps.len(), &taps[r % taps.len()]);
            tap.zero_outside(row, p.width);
            let plane = &mut image[c * plane_len..(c + 1) * plane_len];
            let (dst, src) = tap.span(p.width, plane_len);
            let to = &mut plane[src..src + dst.len()];
            to.iter_mut().zip(&row[dst]).for_each(|(d, g)| *d += g);
        }
        return;
    }
    for (r, row) in dcols.chunks_exact(positions).enumerate() {
        p.for_each_run(r, |col, at, len| {
            scatter_add_run(&mut image[at..], &row[col..col + len], p.stride);
        });
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kakusan-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "conv2d: input")?;
        let weight = contiguous_f32(s2, l2, "conv2d: weight")?;
        let bias = contiguous_f32(s3, l3, "conv2d: bias")?;
        let p = geometry(l1.dims(), l2.dims(), self.stride, self.padding)?;
        let (batch, cout) = (l1.dims()[0], l2.dims()[0]);
        if bias.len() != cout {
            bail!("conv2d: bias of {} for {cout} output channels", bias.len());
        }
        let (rows, positions) = (
            p.channels * p.kernel * p.kernel,
            p.out_height() * p.out_width(),
        );
        let image_len = p.channels * p.height * p.width;
        let mut out = vec![0f32; batch * cout * positions];
        out.par_chunks_mut((cout * positions).max(1))
            .enumerate()
            .for_each_init(
                || vec![0f32; rows * positions],
                |cols, (b, y)| {
                    fill_patches(&p, &x[b * image_len..(b + 1) * image_len], cols);
                    for (row, &bv) in y.chunks_exact_mut(positions).zip(bias) {
                        row.fill(bv);
                    }
                    let (weights, patches) = (
                        View::row_major(weight, rows),
                        View::row_major(cols, positions),
                    );
                    matmul(y, cout, positions, rows, weights, patches, true);
                },
            );
        let shape = Shape::from((batch, cout, p.out_height(), p.out_width()));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let p = geometry(x.dims(), weight.dims(), self.stride, self.padding)?;
        let (batch, cout) = (x.dim(0)?, weight.dim(0)?);
        let (rows, positions) = (
            p.channels * p.kernel * p.kernel,
            p.out_height() * p.out_width(),
        );
        let image_len = p.channels * p.height * p.width;
        let (x_view, w_view, dy_view) = (f32_view(x)?, f32_view(weight)?, f32_view(grad)?);
        let (xv, wv, dy): (&[f32], &[f32], &[f32]) = (&x_view, &w_view, &dy_view);
        // (An input without elements has no gradient to compute.)
        let input_grad = x.track_op() && image_len > 0;
        let mut dx = vec![0f32; if input_grad { xv.len() } else { 0 }];
        // Per task: the weight and bias gradients of its pictures, and scratch matrices.
        struct Partial {
            dw: Vec<f32>,
            db: Vec<f64>,
            cols: Vec<f32>,
            dcols: Vec<f32>,
        }
        let fresh = || Partial {
            dw: vec![0f32; cout * rows],
            db: vec![0f64; cout],
            cols: vec![0f32; rows * positions],
            dcols: vec![0f32; if input_grad { rows * positions } else { 0 }],
        };
        let picture = |acc: &mut Partial, b: usize, dx: Option<&mut [f32]>| {
            let dy_b = &dy[b * cout * positions..(b + 1) * cout * positions];
            fill_patches(&p, &xv[b * image_len..(b + 1) * image_len], &mut acc.cols);
            // dW += dY[b] (cout x P) @ patches^T (P x rows).
            let patches_t = View::row_major(&acc.cols, positions).transposed();
            let dy_view = View::row_major(dy_b, positions);
            matmul(&mut acc.dw, cout, rows, positions, dy_view, patches_t, true);
            for (db, row) in acc.db.iter_mut().zip(dy_b.chunks_exact(positions)) {
                *db += row.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
            if let Some(dx) = dx {
                // dpatches = W^T (rows x cout) @ dY[b] (cout x P), summed back into dx[b].
                let weights = View::row_major(wv, rows);
                matmul(
                    &mut acc.dcols,
                    rows,
                    positions,
                    cout,
                    weights.transposed(),
                    dy_view,
                    false,
                );
                add_patches(&p, &mut acc.dcols, dx);
            }
        };
        // Contiguous runs of pictures per task, so each task's partial sums are added in
        // batch order below: the result does not depend on how rayon splits the work.
        let threads = rayon::current_num_threads().max(1);
        let per_task = batch.div_ceil(threads).max(1);
        let partials: Vec<Partial> = if input_grad {
            dx.par_chunks_mut(image_len.max(1) * per_task)
                .enumerate()
                .map(|(t, dx_run)| {
                    let mut acc = fresh();
                    for (i, dx_b) in dx_run.chunks_exact_mut(image_len.max(1)).enumerate() {
                        picture(&mut acc, t * per_task + i, Some(dx_b));
                    }
                    acc
                })
                .collect()
        } else {
            (0..batch.div_ceil(per_task))
                .into_par_iter()
                .map(|t| {
                    let mut acc = fresh();
                    for b in t * per_task..((t + 1) * per_task).min(batch) {
                        picture(&mut acc, b, None);
                    }
                    acc
                })
                .collect()
        };
        let mut dw = vec![0f32; cout * rows];
        let mut db = vec![0f64; cout];
        for part in &partials {
            dw.iter_mut().zip(&part.dw).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(&part.db).for_each(|(a, b)| *a += b);
        }
        let dev = x.device();
        let dx = if input_grad {
            Some(Tensor::from_vec(dx, x.shape(), dev)?)
        } else {
            None
        };
        let db: Vec<f32> = db.into_iter().map(|v| v as f32).collect();
        Ok((
            dx,
            Some(Tensor::from_vec(dw, weight.shape(), dev)?),
            Some(Tensor::from_vec(db, bias.shape(), dev)?),
        ))
    }
}
