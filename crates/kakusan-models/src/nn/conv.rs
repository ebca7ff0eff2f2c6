//! A 2-D convolution loaded from diffusers weights (`weight` [out, in, k, k] and `bias`),
//! as `torch.nn.Conv2d(in, out, kernel, stride, padding)`.
//!
//! When gradients are being tracked on the CPU in f32 (training), the convolution is one
//! custom op with an analytic backward that works picture by picture (`conv2d_op.rs`).
//! CPU f32 inference computes `weight @ im2col(x)` over the whole batch (`im2col.rs`) while
//! the patch matrix is small enough, and candle's conv2d otherwise (and on other devices).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::channel_bias::add_channel_bias;
use super::conv2d_op::Conv2dOp;
use super::im2col::{Im2Col, Patches};

/// The largest patch matrix (bytes) the inference path builds before handing the
/// convolution to candle's conv2d.
const IM2COL_INFERENCE_LIMIT: usize = 64 << 20;

/// `Conv2d` with a square kernel, bias, dilation 1 and one group.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// Builds a square-kernel convolution with bias (PyTorch's default initialisation when the
/// builder creates variables).
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let fan_in = (in_channels * kernel * kernel) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_UNIFORM,
    )?;
    let bias = vb.get_with_hints(
        out_channels,
        "bias",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    Ok(Conv2d {
        weight,
        bias,
        stride: stride.max(1),
        padding,
    })
}

impl Conv2d {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Whether this is CPU f32 training: gradients tracked through `x` or the weight.
    fn training_path(&self, x: &Tensor) -> bool {
        super::cpu_f32::cpu_f32_training(&[x, &self.weight])
    }

    /// Whether to run `weight @ im2col(x)` (CPU f32 inference): while the patch matrix stays
    /// under [`IM2COL_INFERENCE_LIMIT`] (faster than candle's conv2d there; candle's own
    /// tiling bounds the memory of the big convolutions of 512x512 decodes).
    fn im2col_path(&self, x: &Tensor) -> bool {
        if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
            return false;
        }
        let (Ok((b, _, h, w)), Ok((_, cin, k, _))) = (x.dims4(), self.weight.dims4()) else {
            return false;
        };
        let positions = (h + 2 * self.padding).saturating_sub(k) / self.stride + 1;
        let width = (w + 2 * self.padding).saturating_sub(k) / self.stride + 1;
        let bytes = 4 * b * cin * k * k * positions * width;
        bytes <= IM2COL_INFERENCE_LIMIT
    }

    /// `weight @ im2col(x) + bias`, one matrix product over the whole batch.
    fn forward_im2col(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (cout, cin, k, _) = self.weight.dims4()?;
        if cin != c {
            candle_core::bail!("conv2d expects {cin} input channels, got {c}");
        }
        let p = Patches {
            channels: c,
            height: h,
            width: w,
            kernel: k,
            stride: self.stride,
            padding: self.padding,
        };
        let positions = p.out_height() * p.out_width();
        // [C*k*k, B*Ho*Wo]
        let cols = if k == 1 && self.stride == 1 && self.padding == 0 {
            x.reshape((b, c, h * w))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((c, b * h * w))?
        } else {
            x.contiguous()?.apply_op1(Im2Col(p))?
        };
        let w2 = self.weight.reshape((cout, cin * k * k))?;
        let out = w2.matmul(&cols)?.reshape((cout, b, positions))?;
        let out =
            out.transpose(0, 1)?
                .contiguous()?
                .reshape((b, cout, p.out_height(), p.out_width()))?;
        add_channel_bias(&out, &self.bias, 1)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training_path(x) {
            let op = Conv2dOp {
                stride: self.stride,
                padding: self.padding,
            };
            return x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                op,
            );
        }
        if self.im2col_path(x) {
            return self.forward_im2col(x);
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let c = self.bias.dim(0)?;
        y.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Both CPU paths (the training op and inference's `weight @ im2col(x)`, here with
    /// gradients too) against candle's conv2d, forward and all three gradients.
    fn check(c: usize, cout: usize, k: usize, stride: usize, padding: usize, hw: (usize, usize)) {
        for training_op in [true, false] {
            check_path(c, cout, k, stride, padding, hw, training_op);
        }
    }

    fn check_path(
        c: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        hw: (usize, usize),
        training_op: bool,
    ) {
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, c, hw.0, hw.1), &dev).unwrap()).unwrap();
        let w =
            Var::from_tensor(&Tensor::randn(0f32, 0.3, (cout, c, k, k), &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.3, cout, &dev).unwrap()).unwrap();
        let conv = Conv2d {
            weight: w.as_tensor().clone(),
            bias: bias.as_tensor().clone(),
            stride,
            padding,
        };
        let ours = if training_op {
            assert!(conv.training_path(x.as_tensor()));
            conv.forward(x.as_tensor()).unwrap()
        } else {
            conv.forward_im2col(x.as_tensor()).unwrap()
        };
        let theirs = x
            .as_tensor()
            .conv2d(w.as_tensor(), padding, stride, 1, 1)
            .unwrap()
            .broadcast_add(&bias.as_tensor().reshape((1, cout, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
        let go = crate::nn::test_util::weighted_sum_grads(&ours, &r);
        let gt = crate::nn::test_util::weighted_sum_grads(&theirs, &r);
        let max = crate::nn::test_util::max_abs;
        // f32 sums of at most c*k*k*2 products in another order: 1e-5 of the magnitude.
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let d = max(&(a - b).unwrap());
            assert!(
                d <= 1e-5 * max(b).max(1.0),
                "{what} (op {training_op}): {d}"
            );
        };
        close(&ours, &theirs, "forward");
        for (name, v) in [("x", &x), ("weight", &w), ("bias", &bias)] {
            close(
                go.get(v.as_tensor()).unwrap(),
                gt.get(v.as_tensor()).unwrap(),
                name,
            );
        }
    }

    #[test]
    fn im2col_convolution_matches_candle_with_gradients() {
        check(3, 5, 3, 1, 1, (7, 6));
        // candle's own conv2d backward returns a wrongly shaped input gradient when the
        // stride does not divide the padded size, so the comparison uses sizes where it
        // does; the odd case is covered by the adjoint test below.
        check(4, 6, 3, 2, 0, (9, 7));
        check(4, 3, 3, 2, 1, (9, 9));
        check(6, 4, 1, 1, 0, (5, 5));
        // Same-size stride-1 convolutions (the patch rows as shifted planes): a 5x5 kernel
        // with padding 2 on a picture narrower than the kernel's reach, and 3x3 on 1 row.
        check(2, 3, 5, 1, 2, (6, 3));
        check(3, 2, 3, 1, 1, (1, 4));
    }

    /// The training op over a batch that does not split evenly between tasks, with and
    /// without a gradient for the input (the first layer's input carries none): the weight
    /// and bias gradients against candle's conv2d, the input gradient only when asked for.
    #[test]
    fn training_op_uneven_batches_and_untracked_input() {
        let dev = Device::Cpu;
        for track_input in [true, false] {
            let x0 = Tensor::randn(0f32, 1.0, (5, 3, 6, 5), &dev).unwrap();
            let xv = Var::from_tensor(&x0).unwrap();
            let x = if track_input {
                xv.as_tensor().clone()
            } else {
                x0.clone()
            };
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 0.3, (4, 3, 3, 3), &dev).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f32, 0.3, 4, &dev).unwrap()).unwrap();
            let conv = Conv2d {
                weight: w.as_tensor().clone(),
                bias: bias.as_tensor().clone(),
                stride: 1,
                padding: 1,
            };
            let ours = conv.forward(&x).unwrap();
            let theirs = x
                .conv2d(w.as_tensor(), 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.as_tensor().reshape((1, 4, 1, 1)).unwrap())
                .unwrap();
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let loss = |y: &Tensor| crate::nn::test_util::weighted_sum_grads(y, &r);
            let (go, gt) = (loss(&ours), loss(&theirs));
            let max = crate::nn::test_util::max_abs;
            for v in [&w, &bias] {
                let (a, b) = (
                    go.get(v.as_tensor()).unwrap(),
                    gt.get(v.as_tensor()).unwrap(),
                );
                let d = max(&(a - b).unwrap());
                assert!(
                    d <= 1e-5 * max(b).max(1.0),
                    "track_input {track_input}: {d}"
                );
            }
            assert_eq!(go.get(xv.as_tensor()).is_some(), track_input);
            if track_input {
                let (a, b) = (
                    go.get(xv.as_tensor()).unwrap(),
                    gt.get(xv.as_tensor()).unwrap(),
                );
                assert!(max(&(a - b).unwrap()) <= 1e-5 * max(b).max(1.0));
            }
        }
    }

    #[test]
    fn inference_path_choice() {
        let dev = Device::Cpu;
        let vb = VarBuilder::zeros(DType::F32, &dev);
        let conv = conv2d(2, 3, 3, 1, 1, vb).unwrap();
        let x = Tensor::ones((1, 2, 4, 4), DType::F32, &dev).unwrap();
        assert!(conv.im2col_path(&x));
        assert!(!conv.training_path(&x));
        assert!(!conv.im2col_path(&x.to_dtype(DType::F64).unwrap()));
        let big = Tensor::zeros((1, 2, 2048, 2048), DType::F32, &dev).unwrap();
        assert!(!conv.im2col_path(&big));
        assert_eq!(conv.forward(&x).unwrap().dims(), &[1, 3, 4, 4]);
    }

    /// <im2col(x), y> = <x, col2im(y)>: col2im is the transpose, hence im2col's gradient,
    /// also where the stride leaves the last row or column of the padded picture unused.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        use super::super::im2col::Col2Im;
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
