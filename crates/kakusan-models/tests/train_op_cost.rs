//! What the training ops cost, forward + backward, against candle's own composite ops (issue
//! 8 item 5), on kakusan-mini UNet shapes (batch 32, 16x16 and 8x8 latents). Run by hand:
//! `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 cargo test --release -p
//! kakusan-models --test train_op_cost -- --ignored --nocapture --test-threads=1` (the
//! environment gives glibc the tuning `kakusan` applies at startup, `src/allocator.rs`;
//! without it fresh-buffer page faults dominate the element-wise ops); the numbers go in the
//! notes. Each op's loss is `sum(y * r)` for a fixed
//! random `r`, so the backward pass carries a dense gradient, as in training.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Module, VarBuilder, VarMap};
use kakusan_models::nn::{conv2d, softmax_last_dim, GroupNorm};

const REPS: usize = 5;

/// Mean seconds of `f` (forward, loss, backward) after one warm-up call.
fn time(mut f: impl FnMut() -> candle_core::Result<()>) -> f64 {
    f().unwrap();
    let start = Instant::now();
    for _ in 0..REPS {
        f().unwrap();
    }
    start.elapsed().as_secs_f64() / REPS as f64
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut g = kakusan_core::rng::TorchCpuGenerator::new(seed);
    Tensor::from_vec(g.randn(shape), shape, &Device::Cpu).unwrap()
}

/// forward + `sum(y * r)` + backward of `op` on a tracked input of `shape`.
fn cost(shape: &[usize], op: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>) -> f64 {
    let x = Var::from_tensor(&randn(shape, 1)).unwrap();
    let probe = op(x.as_tensor()).unwrap();
    let r = randn(probe.dims(), 2);
    time(|| {
        let y = op(x.as_tensor())?;
        let loss = (y * &r)?.sum_all()?;
        let grads = loss.backward()?;
        assert!(grads.get(x.as_tensor()).is_some());
        Ok(())
    })
}

fn report(name: &str, ours: f64, candle: f64) {
    eprintln!(
        "{name:<44} ours {:8.2} ms   candle {:8.2} ms   {:5.1}x",
        ours * 1e3,
        candle * 1e3,
        candle / ours
    );
}

#[test]
#[ignore]
fn training_ops_against_candle_composites() {
    for (c, hw) in [(64usize, 16usize), (128, 8)] {
        let shape = [32, c, hw, hw];
        // What the loss and the backward bookkeeping cost by themselves (an identity op),
        // and SiLU alone: the part of the rows below that is not the op under test.
        let base = cost(&shape, &|x| Ok(x.clone()));
        let silu = cost(&shape, &|x| x.silu());
        eprintln!(
            "[32, {c}, {hw}, {hw}]: loss + backward of an identity {:.2} ms, of SiLU {:.2} ms",
            base * 1e3,
            silu * 1e3
        );
        // Group norm (32 groups) + SiLU: our fused kernel with its analytic backward against
        // candle_nn::GroupNorm (mean / variance from tensor ops) + silu.
        let w = randn(&[c], 3).affine(0.1, 1.0).unwrap();
        let b = randn(&[c], 4);
        let ours_norm = GroupNorm::from_tensors(w.clone(), b.clone(), 32, 1e-5).unwrap();
        let candle_norm = candle_nn::GroupNorm::new(w, b, c, 32, 1e-5).unwrap();
        report(
            &format!("group norm + SiLU, [32, {c}, {hw}, {hw}]"),
            cost(&shape, &|x| ours_norm.forward(x)?.silu()),
            cost(&shape, &|x| candle_norm.forward(x)?.silu()),
        );

        // 3x3 convolution, c -> c, padding 1: our `weight @ im2col(x)` against candle's
        // conv2d (whose backward runs a transposed convolution).
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let ours_conv = conv2d(c, c, 3, 1, 1, vb.pp("conv")).unwrap();
        let weight = ours_conv.weight().clone();
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let bias = Tensor::zeros(c, DType::F32, &Device::Cpu).unwrap();
        let candle_conv = candle_nn::Conv2d::new(weight, Some(bias), cfg);
        report(
            &format!("conv 3x3, [32, {c}, {hw}, {hw}]"),
            cost(&shape, &|x| ours_conv.forward(x)),
            cost(&shape, &|x| candle_conv.forward(x)),
        );
    }
    // Attention probabilities of a self-attention over 16x16 tokens (batch 32, 2 heads):
    // our fused softmax with its analytic backward against candle_nn::ops::softmax
    // (exp / sum / div; candle's fused softmax_last_dim has no backward at all).
    let scores = [64, 256, 256];
    report(
        "softmax, [64, 256, 256]",
        cost(&scores, &softmax_last_dim),
        cost(&scores, &|x| candle_nn::ops::softmax(x, D::Minus1)),
    );
}
