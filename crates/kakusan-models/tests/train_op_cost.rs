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

const REPS: usize = 15;

/// Median seconds of `f` (forward, loss, backward) over [`REPS`] calls after one warm-up
/// call. (A mean of 5 let one slow call on this shared machine, a page-fault storm or a
/// descheduled thread, move a 1 ms op by a factor of several.)
fn time(mut f: impl FnMut() -> candle_core::Result<()>) -> f64 {
    f().unwrap();
    let mut times: Vec<f64> = (0..REPS)
        .map(|_| {
            let start = Instant::now();
            f().unwrap();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[REPS / 2]
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

/// forward + `sum(y * r)` + backward of an attention `f(q, k, v)` over `[n, lq, d]` queries
/// and `[n, lk, d]` keys and values, all three tracked.
fn attention_cost(
    (n, lq, lk, d): (usize, usize, usize, usize),
    f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> f64 {
    let q = Var::from_tensor(&randn(&[n, lq, d], 10)).unwrap();
    let k = Var::from_tensor(&randn(&[n, lk, d], 11)).unwrap();
    let v = Var::from_tensor(&randn(&[n, lk, d], 12)).unwrap();
    let r = randn(&[n, lq, d], 20);
    time(|| {
        let y = f(q.as_tensor(), k.as_tensor(), v.as_tensor())?;
        let grads = (y * &r)?.sum_all()?.backward()?;
        for x in [&q, &k, &v] {
            assert!(grads.get(x.as_tensor()).is_some());
        }
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
    for (c, hw) in [(64usize, 16usize), (128, 8), (128, 4)] {
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
            cost(&shape, &|x| ours_norm.forward_silu(x)),
            cost(&shape, &|x| candle_norm.forward(x)?.silu()),
        );

        // 3x3 convolution, c -> c, padding 1: our `weight @ im2col(x)` against candle's
        // conv2d (whose backward runs a transposed convolution).
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let ours_conv = conv2d(c, c, 3, 1, 1, vb.pp("conv")).unwrap();
        let weight = ours_conv.weight().expect("an f32 weight").clone();
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
    // The feed-forward's gated GELU at the 8x8 level (batch 32 x 64 tokens, 64 channels,
    // inner width 256): the fused op (what `Geglu` runs when training) against candle's
    // narrow / gelu_erf / product.
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let geglu = kakusan_models::nn::Geglu::new(64, 256, vb.pp("geglu")).unwrap();
    report(
        "GEGLU (projection included), [2048, 64]",
        cost(&[2048, 64], &|x| geglu.forward(x)),
        cost(&[2048, 64], &|x| {
            let h = geglu.projection().forward(x)?;
            let (value, gate) = (h.narrow(D::Minus1, 0, 256)?, h.narrow(D::Minus1, 256, 256)?);
            value * gate.gelu_erf()?
        }),
    );
    // Self-attention at the 8x8 level (batch 32 x 4 heads, 64 tokens, head width 16): the
    // fused op (what training runs) against the composite with candle's softmax, all three
    // inputs tracked.
    // And at the 16x16 level of the stage-4 UNet (32 channels in 4 heads of 8).
    for (name, shape) in [
        ("self-attention, [128, 64, 16]", (128, 64, 64, 16)),
        ("self-attention, [128, 256, 8]", (128, 256, 256, 8)),
        // The wide UNet (kakusan-mini since stage 5): batch 32 x 8 heads at 16x16 (width 8)
        // and at 8x8 (width 16).
        ("self-attention, [256, 256, 8]", (256, 256, 256, 8)),
        ("self-attention, [256, 64, 16]", (256, 64, 64, 16)),
    ] {
        report(
            name,
            attention_cost(shape, &|q, k, v| {
                kakusan_models::nn::scaled_dot_product_attention(q, k, v, 0.25, false)
            }),
            attention_cost(shape, &|q, k, v| {
                let s = (q.matmul(&k.t()?)? * 0.25)?;
                candle_nn::ops::softmax(&s, D::Minus1)?.matmul(v)
            }),
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

/// The fused attention alone on the wide UNet's shapes (batch 32 x 8 heads), forward +
/// backward, all three inputs tracked: self-attention at 16x16 (width 8) and 8x8 (width 16),
/// cross-attention to 77 text tokens at both. Quicker than the table above when only the
/// attention changed: `cargo test --release -p kakusan-models --test train_op_cost
/// unet_attention_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn unet_attention_cost() {
    for (name, shape) in [
        ("self-attention, 16x16, width 8", (256, 256, 256, 8)),
        ("self-attention, 8x8, width 16", (256, 64, 64, 16)),
        ("cross-attention, 16x16 to 77, width 8", (256, 256, 77, 8)),
        ("cross-attention, 8x8 to 77, width 16", (256, 64, 77, 16)),
    ] {
        let ours = attention_cost(shape, &|q, k, v| {
            kakusan_models::nn::scaled_dot_product_attention(q, k, v, 0.25, false)
        });
        eprintln!("{name:<44} {:8.2} ms", ours * 1e3);
    }
}

/// Where a training convolution's time goes: its three matrix products (as candle runs
/// them: forward, weight gradient against the transposed patch matrix, patch gradient with
/// the transposed weight) and the patch copies, at [32, 64, 16, 16] with a 3x3 kernel.
#[test]
#[ignore]
fn training_convolution_parts() {
    use kakusan_models::nn::{Col2Im, Im2Col, Patches};
    let (b, c, hw) = (32usize, 64usize, 16usize);
    let n = b * hw * hw;
    let k = c * 9;
    let gflop = |ms: f64, m: usize, kk: usize, nn: usize| 2.0 * (m * kk * nn) as f64 / ms / 1e6;
    let w = randn(&[c, k], 1);
    let cols = randn(&[k, n], 2);
    let dy = randn(&[c, n], 3);
    let t = time(|| w.matmul(&cols).map(drop));
    eprintln!(
        "forward  W[{c},{k}] @ cols[{k},{n}]: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, k, n)
    );
    let t = time(|| cols.t()?.matmul(&w.t()?).map(drop));
    eprintln!(
        "forward as cols^T @ W^T: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, k, n)
    );
    let cols_nk = cols.t().unwrap().contiguous().unwrap();
    let t = time(|| cols_nk.matmul(&w.t()?).map(drop));
    eprintln!(
        "forward as colsNK @ W^T: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, k, n)
    );
    let t = time(|| w.matmul(&cols_nk.t()?).map(drop));
    eprintln!(
        "forward as W @ colsNK^T: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, k, n)
    );
    let t = time(|| cols.matmul(&dy.t()?).map(drop));
    eprintln!(
        "dW^T     cols @ dY^T: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, n, k)
    );
    let cols_t = cols.t().unwrap();
    let t = time(|| dy.matmul(&cols_t).map(drop));
    eprintln!(
        "dW       dY @ cols^T: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, c, n, k)
    );
    let w_t = w.t().unwrap();
    let t = time(|| w_t.matmul(&dy).map(drop));
    eprintln!(
        "dcols    W^T @ dY: {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop(t * 1e3, k, c, n)
    );
    let p = Patches {
        channels: c,
        height: hw,
        width: hw,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let x = randn(&[b, c, hw, hw], 4);
    let t = time(|| x.apply_op1(Im2Col(p)).map(drop));
    eprintln!("im2col: {:.2} ms", t * 1e3);
    let t = time(|| cols.apply_op1(Col2Im(p)).map(drop));
    eprintln!("col2im: {:.2} ms", t * 1e3);
    let y = randn(&[c, b, hw * hw], 5);
    let t = time(|| y.transpose(0, 1)?.contiguous().map(drop));
    eprintln!("output transpose copy: {:.2} ms", t * 1e3);
}

/// The three products of one picture's convolution at [64, 16, 16], 3x3 (run with
/// `RAYON_NUM_THREADS=1`: single-threaded GEMM), with the patch matrix as [K, HW] (KN) or
/// [HW, K] (NK).
#[test]
#[ignore]
fn per_picture_convolution_products() {
    let (c, hw) = (64usize, 256usize);
    let k = c * 9;
    let flop = 2.0 * (c * k * hw) as f64;
    let w = randn(&[c, k], 1);
    let kn = randn(&[k, hw], 2);
    let nk = kn.t().unwrap().contiguous().unwrap();
    let dy = randn(&[c, hw], 3);
    let rate = |name: &str, t: f64| {
        eprintln!(
            "{name:<40} {:7.3} ms {:5.0} GFLOP/s",
            t * 1e3,
            flop / t / 1e9
        )
    };
    rate("fwd KN  W @ cols", time(|| w.matmul(&kn).map(drop)));
    rate("fwd NK  W @ cols^T", time(|| w.matmul(&nk.t()?).map(drop)));
    rate("fwd NK' cols @ W^T", time(|| nk.matmul(&w.t()?).map(drop)));
    rate(
        "dW KN   dY @ cols^T",
        time(|| dy.matmul(&kn.t()?).map(drop)),
    );
    rate("dW NK   dY @ cols", time(|| dy.matmul(&nk).map(drop)));
    rate("dcols KN W^T @ dY", time(|| w.t()?.matmul(&dy).map(drop)));
    rate("dcols NK dY^T @ W", time(|| dy.t()?.matmul(&w).map(drop)));
}

/// A loop for `perf record`: group norm + SiLU forward + backward at [32, 128, 8, 8], 300
/// times (`KAKUSAN_PROFILE_SHAPE=64x16` for [32, 64, 16, 16]).
#[test]
#[ignore]
fn group_norm_profile_loop() {
    let (c, hw) = match std::env::var("KAKUSAN_PROFILE_SHAPE").as_deref() {
        Ok("64x16") => (64, 16),
        _ => (128, 8),
    };
    let w = randn(&[c], 3).affine(0.1, 1.0).unwrap();
    let norm = GroupNorm::from_tensors(w, randn(&[c], 4), 32, 1e-5).unwrap();
    let shape = [32, c, hw, hw];
    let x = Var::from_tensor(&randn(&shape, 1)).unwrap();
    let r = randn(&shape, 2);
    let start = Instant::now();
    for _ in 0..300 {
        let y = norm.forward_silu(x.as_tensor()).unwrap();
        let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }
    eprintln!("{:.2} ms per call", start.elapsed().as_secs_f64() / 0.3);
}

/// A loop for `perf record`: the training convolution (3x3, padding 1, weights tracked)
/// forward + backward at [32, 128, 8, 8], 200 times (`KAKUSAN_PROFILE_SHAPE=64x16` for
/// [32, 64, 16, 16]).
#[test]
#[ignore]
fn convolution_profile_loop() {
    let (c, hw) = match std::env::var("KAKUSAN_PROFILE_SHAPE").as_deref() {
        Ok("64x16") => (64, 16),
        _ => (128, 8),
    };
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let conv = conv2d(c, c, 3, 1, 1, vb).unwrap();
    let shape = [32, c, hw, hw];
    let x = Var::from_tensor(&randn(&shape, 1)).unwrap();
    let r = randn(&shape, 2);
    let start = Instant::now();
    for _ in 0..200 {
        let y = conv.forward(x.as_tensor()).unwrap();
        let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }
    eprintln!("{:.2} ms per call", start.elapsed().as_secs_f64() / 0.2);
}
