//! diffusers' `Upsample2D` with a convolution: nearest-neighbour upsampling (x2, or to an
//! explicit size when the UNet needs to match an odd-sized skip connection) followed by a
//! 3x3 `conv`. Explicit sizes pick source rows/columns as PyTorch's `interpolate(mode=
//! "nearest")` does: `min(floor(dst * (in / out)), in - 1)` in f32.

use super::conv2d;
use super::Conv2d;
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// Doubles (or resizes) the spatial size, then convolves.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    conv: Conv2d,
}

/// Source index of each destination index for nearest-neighbour resizing `input -> output`.
pub(crate) fn nearest_source_indices(input: usize, output: usize) -> Vec<u32> {
    if output == 2 * input {
        return (0..output).map(|d| (d / 2) as u32).collect();
    }
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| ((d as f32 * scale).floor() as usize).min(input.saturating_sub(1)) as u32)
        .collect()
}

/// Nearest-neighbour resize of `[B, C, H, W]` to `[B, C, height, width]`.
pub(crate) fn resize_nearest(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if height == 2 * h && width == 2 * w {
        return x.upsample_nearest2d(height, width);
    }
    let pick = |t: &Tensor, dim: usize, from: usize, to: usize| -> Result<Tensor> {
        if from == to {
            return Ok(t.clone());
        }
        let idx = Tensor::new(nearest_source_indices(from, to), t.device())?;
        t.index_select(&idx, dim)
    };
    let x = pick(x, 2, h, height)?;
    pick(&x, 3, w, width)
}

impl Upsample2D {
    /// Loads `conv` (3x3, padding 1).
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(in_channels, out_channels, 3, 1, 1, vb.pp("conv"))?,
        })
    }

    /// Upsamples `[B, C, H, W]` to `size` (default `2H x 2W`) and convolves.
    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&resize_nearest(x, th, tw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn odd_targets_pick_like_pytorch() {
        // torch.nn.functional.interpolate(arange(4), size=7, mode="nearest") -> 0,0,1,1,2,2,3
        assert_eq!(nearest_source_indices(4, 7), vec![0, 0, 1, 1, 2, 2, 3]);
        assert_eq!(nearest_source_indices(3, 5), vec![0, 0, 1, 1, 2]);
        assert_eq!(nearest_source_indices(2, 4), vec![0, 0, 1, 1]);
        assert_eq!(nearest_source_indices(1, 1), vec![0]);
    }

    #[test]
    fn resize_matches_index_picking() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 4))
            .unwrap();
        let y = resize_nearest(&x, 5, 8).unwrap();
        assert_eq!(y.dims(), &[1, 1, 5, 8]);
        let rows: Vec<Vec<f32>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(rows[0], vec![0., 0., 1., 1., 2., 2., 3., 3.]);
        assert_eq!(rows[2], vec![4., 4., 5., 5., 6., 6., 7., 7.]);
        assert_eq!(rows[4], vec![8., 8., 9., 9., 10., 10., 11., 11.]);
        let z = resize_nearest(&x, 6, 8).unwrap();
        let direct = x.upsample_nearest2d(6, 8).unwrap();
        let diff = (z - direct)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
