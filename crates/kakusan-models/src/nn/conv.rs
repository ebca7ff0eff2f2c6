//! A 2-D convolution loaded from diffusers weights (`weight` [out, in, k, k] and `bias`),
//! as `torch.nn.Conv2d(in, out, kernel, stride, padding)`.
//!
//! When gradients are being tracked on the CPU in f32 (training), the convolution is one
//! custom op with an analytic backward that works picture by picture (`conv2d_op.rs`).
//! CPU f32 inference runs the banded convolution (`banded_conv.rs`): per picture and band of
//! output rows, a patch matrix small enough for the cache and a GEMM, the bands in parallel.
//! bf16 weights on the CPU (`--dtype bf16`) take the banded convolution too, with f32
//! activations (`cpu_bf16.rs`). Other devices and dtypes use candle's conv2d.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::banded_conv::{BandedConv, PackedBandedConv, BAND_BYTES};
use super::conv2d_op::Conv2dOp;
use super::prepacked_bf16::{prepack_conv, PrepackedConv};

/// `Conv2d` with a square kernel, bias, dilation 1 and one group.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: ConvWeight,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// The weight as the layer multiplies it.
#[derive(Debug, Clone)]
enum ConvWeight {
    Tensor(Tensor),
    /// bf16 on a CPU with a bf16 dot-product kernel: packed once at load, the tensor dropped
    /// (`prepacked_bf16.rs`).
    Packed(PrepackedConv),
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
    Conv2d::new(
        weight,
        super::cpu_bf16::widen_small_parameter(bias)?,
        stride,
        padding,
    )
}

impl Conv2d {
    /// A convolution of `weight` `[out, in, k, k]` and `bias` `[out]`; a bf16 weight on a
    /// CPU with a bf16 dot-product kernel is packed for it now (and kept only in that form).
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Result<Self> {
        let weight = match prepack_conv(&weight)? {
            Some(packed) => ConvWeight::Packed(packed),
            None => ConvWeight::Tensor(weight),
        };
        Ok(Self {
            weight,
            bias,
            stride: stride.max(1),
            padding,
        })
    }

    /// The weight tensor, `None` when it was packed at load (`--dtype bf16` on a CPU with
    /// a bf16 dot-product kernel).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            ConvWeight::Tensor(w) => Some(w),
            ConvWeight::Packed(_) => None,
        }
    }

    /// Whether this is CPU f32 training: gradients tracked through `x` or the weight.
    fn training_path(&self, x: &Tensor) -> bool {
        match &self.weight {
            ConvWeight::Tensor(w) => super::cpu_f32::cpu_f32_training(&[x, w]),
            ConvWeight::Packed(_) => false,
        }
    }

    /// The banded inference convolution (`banded_conv.rs`), bands of `band_bytes`.
    fn forward_banded(&self, x: &Tensor, band_bytes: usize) -> Result<Tensor> {
        let conv = BandedConv {
            stride: self.stride,
            padding: self.padding,
            band_bytes,
        };
        let (x, bias) = (x.contiguous()?, self.bias.contiguous()?);
        match &self.weight {
            ConvWeight::Tensor(w) => x.apply_op3_no_bwd(&w.contiguous()?, &bias, &conv),
            ConvWeight::Packed(weight) => {
                x.apply_op2_no_bwd(&bias, &PackedBandedConv { conv, weight })
            }
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = match &self.weight {
            ConvWeight::Tensor(w) => w,
            // Only on the CPU: f32 activations, as `--dtype bf16` keeps them.
            ConvWeight::Packed(_) if x.dtype() == DType::F32 => {
                return self.forward_banded(x, BAND_BYTES)
            }
            ConvWeight::Packed(_) => {
                return self
                    .forward_banded(&x.to_dtype(DType::F32)?, BAND_BYTES)?
                    .to_dtype(x.dtype())
            }
        };
        if self.training_path(x) {
            let op = Conv2dOp {
                stride: self.stride,
                padding: self.padding,
            };
            return x
                .contiguous()?
                .apply_op3(&weight.contiguous()?, &self.bias.contiguous()?, op);
        }
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            // f32 weights, or bf16 ones (`cpu_bf16.rs`): the banded kernel reads both.
            return self.forward_banded(x, BAND_BYTES);
        }
        let y = x.conv2d(weight, self.padding, self.stride, 1, 1)?;
        let c = self.bias.dim(0)?;
        y.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// The training op against candle's conv2d, forward and all three gradients.
    fn check(c: usize, cout: usize, k: usize, stride: usize, padding: usize, hw: (usize, usize)) {
        check_batch(2, c, cout, k, stride, padding, hw)
    }

    fn check_batch(
        batch: usize,
        c: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        hw: (usize, usize),
    ) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (batch, c, hw.0, hw.1), &dev).unwrap())
            .unwrap();
        let w =
            Var::from_tensor(&Tensor::randn(0f32, 0.3, (cout, c, k, k), &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.3, cout, &dev).unwrap()).unwrap();
        let conv = Conv2d::new(
            w.as_tensor().clone(),
            bias.as_tensor().clone(),
            stride,
            padding,
        )
        .unwrap();
        assert!(conv.training_path(x.as_tensor()));
        let ours = conv.forward(x.as_tensor()).unwrap();
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
            assert!(d <= 1e-5 * max(b).max(1.0), "{what}: {d}");
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
    fn training_convolution_matches_candle_with_gradients() {
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
        // Larger odd batches, which split unevenly between rayon's tasks, at the UNet's
        // small levels (8x8, 4x4), strided, and 1x1.
        check_batch(13, 5, 6, 3, 1, 1, (8, 8));
        check_batch(11, 4, 3, 3, 1, 1, (4, 4));
        check_batch(9, 3, 4, 3, 2, 1, (7, 9));
        check_batch(7, 4, 4, 1, 1, 0, (3, 3));
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
            let conv = Conv2d::new(w.as_tensor().clone(), bias.as_tensor().clone(), 1, 1).unwrap();
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

    /// Plain tensors take the inference path, variables the training op, and other dtypes
    /// candle's conv2d: all give the same values.
    #[test]
    fn paths_by_dtype_and_tracking() {
        let dev = Device::Cpu;
        let conv = Conv2d::new(
            Tensor::randn(0f32, 0.3, (3, 2, 3, 3), &dev).unwrap(),
            Tensor::randn(0f32, 0.3, 3, &dev).unwrap(),
            1,
            1,
        )
        .unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 2, 4, 5), &dev).unwrap();
        assert!(!conv.training_path(&x));
        let plain = conv.forward(&x).unwrap();
        let tracked = conv
            .forward(Var::from_tensor(&x).unwrap().as_tensor())
            .unwrap();
        let as_f64 = Conv2d::new(
            conv.weight().unwrap().to_dtype(DType::F64).unwrap(),
            conv.bias.to_dtype(DType::F64).unwrap(),
            conv.stride,
            conv.padding,
        )
        .unwrap();
        let wide = as_f64
            .forward(&x.to_dtype(DType::F64).unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let max = crate::nn::test_util::max_abs;
        assert_eq!(plain.dims(), &[1, 3, 4, 5]);
        assert!(max(&(&plain - &tracked).unwrap()) < 1e-5);
        assert!(max(&(&plain - &wide).unwrap()) < 1e-5);
    }

    /// The banded inference convolution against candle's conv2d on odd sizes, strides,
    /// paddings, 1x1 kernels and batches, with bands of one row, a few rows and the whole
    /// picture.
    #[test]
    fn banded_convolution_matches_candle() {
        let dev = Device::Cpu;
        let cases = [
            // (batch, c, cout, k, stride, padding, h, w)
            (2, 3, 5, 3, 1, 1, 7, 6),
            (3, 4, 6, 3, 2, 0, 9, 7),
            (1, 4, 3, 3, 2, 1, 9, 9),
            (2, 6, 4, 1, 1, 0, 5, 5),
            (1, 2, 3, 5, 1, 2, 6, 3),
            (2, 3, 2, 3, 1, 1, 1, 4),
            (1, 5, 7, 3, 2, 1, 10, 11),
        ];
        for (b, c, cout, k, stride, padding, h, w) in cases {
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let conv = Conv2d::new(
                Tensor::randn(0f32, 0.3, (cout, c, k, k), &dev).unwrap(),
                Tensor::randn(0f32, 0.3, cout, &dev).unwrap(),
                stride,
                padding,
            )
            .unwrap();
            let theirs = x
                .conv2d(conv.weight().unwrap(), padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&conv.bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let max = crate::nn::test_util::max_abs;
            let row_bytes = 4 * c * k * k * theirs.dim(3).unwrap();
            for band_bytes in [1, 2 * row_bytes + 1, usize::MAX / 8] {
                let ours = conv.forward_banded(&x, band_bytes).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                // f32 sums of c*k*k products in another order: 1e-5 of the magnitude.
                let d = max(&(&ours - &theirs).unwrap());
                assert!(
                    d <= 1e-5 * max(&theirs).max(1.0),
                    "{b}x{c}x{h}x{w} k{k} s{stride} p{padding} band {band_bytes}: {d}"
                );
            }
        }
    }

    /// bf16 weights on the CPU (`--dtype bf16`): f32 in, f32 out, equal to the f32
    /// convolution of the input rounded to bf16 with the widened weights (the same exact
    /// products), over 3x3, strided and 1x1 (direct) convolutions; the bias is widened at
    /// load.
    #[test]
    fn bf16_weights_convolve_the_bf16_rounded_input() {
        let dev = Device::Cpu;
        for (b, c, cout, k, stride, padding, h, w) in [
            (2, 5, 7, 3, 1, 1, 9, 6),
            (1, 4, 3, 3, 2, 1, 9, 9),
            (2, 6, 4, 1, 1, 0, 5, 5),
            (1, 7, 5, 3, 1, 1, 20, 37),
            (1, 3, 4, 3, 1, 0, 6, 45),
        ] {
            let mut map = std::collections::HashMap::new();
            let weight = Tensor::randn(0f32, 0.3, (cout, c, k, k), &dev).unwrap();
            map.insert("weight".to_string(), weight.to_dtype(DType::BF16).unwrap());
            let bias = Tensor::randn(0f32, 0.3, cout, &dev).unwrap();
            map.insert("bias".to_string(), bias.to_dtype(DType::BF16).unwrap());
            let vb = VarBuilder::from_tensors(map, DType::BF16, &dev);
            let conv = conv2d(c, cout, k, stride, padding, vb).unwrap();
            // Packed at load (and the tensor dropped) exactly where the CPU has a bf16
            // dot-product kernel; a bf16 tensor otherwise.
            match conv.weight() {
                Some(w) => assert_eq!(w.dtype(), DType::BF16),
                None => assert!(super::super::bf16_gemm::Kernel::native().is_some()),
            }
            assert_eq!(conv.bias.dtype(), DType::F32);
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let ours = conv.forward(&x).unwrap();
            assert_eq!(ours.dtype(), DType::F32);
            let rounded = x
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let wide = weight
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let theirs = rounded
                .conv2d(&wide, padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&conv.bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let max = crate::nn::test_util::max_abs;
            let d = max(&(&ours - &theirs).unwrap());
            assert!(d <= 1e-5 * max(&theirs).max(1.0), "k{k} s{stride}: {d}");
            // One output row per band, and the whole picture in one band.
            for band_bytes in [1, usize::MAX / 8] {
                let banded = conv.forward_banded(&x, band_bytes).unwrap();
                let db = max(&(&banded - &theirs).unwrap());
                assert!(
                    db <= 1e-5 * max(&theirs).max(1.0),
                    "k{k} band {band_bytes}: {db}"
                );
            }
            // The unrounded input gives a measurably different result: the input was
            // rounded.
            let unrounded = x
                .conv2d(&wide, padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&conv.bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            assert!(max(&(&ours - &unrounded).unwrap()) > 10.0 * d.max(1e-7));
        }
    }

    /// Inference convolutions of Stable Diffusion 1.5's shapes (UNet at 64x64 and 32x32 with
    /// a CFG batch of 2, VAE decoder at 256x256 and 512x512): milliseconds of the banded op
    /// (at several band sizes) and of candle's conv2d.
    /// `cargo test --release -p kakusan-models --lib sd_convolution_costs -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn sd_convolution_costs() {
        let dev = Device::Cpu;
        let time = |f: &dyn Fn() -> Tensor| {
            f();
            let start = std::time::Instant::now();
            let reps = 3;
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() * 1e3 / reps as f64
        };
        for (b, c, cout, hw, k) in [
            (2, 320, 320, 64, 3),
            (2, 640, 640, 32, 3),
            (2, 320, 320, 64, 1),
            (1, 256, 256, 256, 3),
            (1, 128, 128, 512, 3),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, c, hw, hw), &dev).unwrap();
            let conv = Conv2d::new(
                Tensor::randn(0f32, 0.05, (cout, c, k, k), &dev).unwrap(),
                Tensor::randn(0f32, 0.05, cout, &dev).unwrap(),
                1,
                k / 2,
            )
            .unwrap();
            let gflop = 2.0 * (b * cout * c * k * k * hw * hw) as f64 / 1e9;
            let banded = time(&|| conv.forward_banded(&x, BAND_BYTES).unwrap());
            for mb in [1usize, 16, 64] {
                let t = time(&|| conv.forward_banded(&x, mb << 20).unwrap());
                println!("  band {mb} MB: {t:.0} ms");
            }
            let weight = conv.weight().unwrap();
            let bf16_conv = Conv2d::new(
                weight.to_dtype(DType::BF16).unwrap(),
                conv.bias.clone(),
                1,
                k / 2,
            )
            .unwrap();
            let bf16 = time(&|| bf16_conv.forward(&x).unwrap());
            let candle = time(&|| {
                x.conv2d(weight, k / 2, 1, 1, 1)
                    .unwrap()
                    .broadcast_add(&conv.bias.reshape((1, cout, 1, 1)).unwrap())
                    .unwrap()
            });
            println!(
                "[{b},{c},{hw},{hw}] k{k} -> {cout}: {gflop:.1} GFLOP; banded {banded:.0} ms \
                 ({:.0} GFLOP/s), bf16 weights {bf16:.0} ms ({:.0} GFLOP/s), candle {candle:.0} ms",
                gflop / banded * 1e3,
                gflop / bf16 * 1e3
            );
        }
    }
}
