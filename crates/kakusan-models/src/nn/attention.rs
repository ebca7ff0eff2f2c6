//! Multi-head scaled dot-product attention (diffusers' `Attention` with the default
//! processor): `to_q`, `to_k`, `to_v` projections, `softmax(q k^T / sqrt(head_dim)) v` per
//! head, and the `to_out.0` projection. Self-attention when no context is given,
//! cross-attention otherwise. Long sequences are processed in slices so the score matrix
//! stays bounded in memory; slicing does not change any number.

use super::bf16_attention_op::Bf16Attention;
use super::bf16_gemm::Kernel;
use super::linear::{linear_b, Linear};
use candle_core::{bail, DType, Result, Tensor};
use candle_nn::{Module, VarBuilder};

/// Largest number of attention scores held at once by the sliced path (128 MiB in f32);
/// the CPU f32 op holds far fewer (a block of 64 queries per thread).
pub const MAX_SCORES_AT_ONCE: usize = 1 << 25;

/// Shape and options of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    /// Width of the queries' input (and of the output).
    pub query_dim: usize,
    /// Width of the keys'/values' input; `None` for self-attention.
    pub context_dim: Option<usize>,
    /// Number of heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Whether `to_q`/`to_k`/`to_v` have biases (false in the UNet, true in the VAE).
    pub qkv_bias: bool,
    /// Whether `to_out.0` has a bias.
    pub out_bias: bool,
    /// Compute scores and softmax in f32 even for half-precision inputs.
    pub upcast: bool,
}

/// Weight names of the four projections, relative to the attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionWeightNames {
    /// Query projection.
    pub q: &'static str,
    /// Key projection.
    pub k: &'static str,
    /// Value projection.
    pub v: &'static str,
    /// Output projection.
    pub out: &'static str,
}

impl AttentionWeightNames {
    /// Current diffusers names.
    pub const DIFFUSERS: Self = Self {
        q: "to_q",
        k: "to_k",
        v: "to_v",
        out: "to_out.0",
    };
    /// Names in diffusers folders saved before 0.14 (VAE mid-block attention).
    pub const LEGACY: Self = Self {
        q: "query",
        k: "key",
        v: "value",
        out: "proj_attn",
    };
}

/// A multi-head attention layer.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
    upcast: bool,
}

impl Attention {
    /// Loads `to_q`, `to_k`, `to_v`, `to_out.0`.
    pub fn new(cfg: &AttentionConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_names(cfg, vb, &AttentionWeightNames::DIFFUSERS)
    }

    /// Loads the projections under the given names.
    pub fn with_names(
        cfg: &AttentionConfig,
        vb: VarBuilder,
        names: &AttentionWeightNames,
    ) -> Result<Self> {
        let inner = cfg.heads * cfg.head_dim;
        let context_dim = cfg.context_dim.unwrap_or(cfg.query_dim);
        let lin = |i, o, bias, name: &str| linear_b(i, o, bias, vb.pp(name));
        Ok(Self {
            to_q: lin(cfg.query_dim, inner, cfg.qkv_bias, names.q)?,
            to_k: lin(context_dim, inner, cfg.qkv_bias, names.k)?,
            to_v: lin(context_dim, inner, cfg.qkv_bias, names.v)?,
            to_out: lin(inner, cfg.query_dim, cfg.out_bias, names.out)?,
            heads: cfg.heads,
            head_dim: cfg.head_dim,
            upcast: cfg.upcast,
        })
    }

    /// `x`: `[B, Lq, query_dim]`; `context`: `[B, Lk, context_dim]` or `None` (attend to
    /// `x`). Returns `[B, Lq, query_dim]`.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let (batch, lq, _) = x.dims3()?;
        let (cb, _, _) = context.dims3()?;
        if cb != batch {
            bail!("attention: batch {batch} of the queries but {cb} of the context");
        }
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        if let Some(kernel) = bf16_attention_kernel(&self.to_q, &q) {
            // `--dtype bf16` on a CPU with a bf16 dot-product kernel: both products in bf16,
            // the heads read and written in place (`[B, L, heads * d]`).
            let op = Bf16Attention {
                scale: scale as f32,
                kernel,
                heads: self.heads,
            };
            return self.to_out.forward(&q.apply_op3_no_bwd(&k, &v, &op)?);
        }
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        let out = scaled_dot_product_attention(&q, &k, &v, scale, self.upcast)?;
        let out = out
            .reshape((batch, self.heads, lq, self.head_dim))?
            .transpose(1, 2)?
            .reshape((batch, lq, self.heads * self.head_dim))?;
        self.to_out.forward(&out)
    }

    /// `[B, L, heads*d]` -> contiguous `[B*heads, L, d]`.
    fn split_heads(&self, t: &Tensor) -> Result<Tensor> {
        let (b, l, _) = t.dims3()?;
        t.reshape((b, l, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * self.heads, l, self.head_dim))
    }
}

/// The bf16 dot-product kernel when the layer's weights are bf16 on the CPU (`--dtype
/// bf16`), the queries f32 and not training, and the CPU has one.
fn bf16_attention_kernel(to_q: &Linear, q: &Tensor) -> Option<Kernel> {
    let applies = to_q.is_cpu_bf16() && q.dtype() == DType::F32 && !q.track_op();
    applies.then(Kernel::native).flatten()
}

/// `softmax(q k^T * scale) v` over `[N, Lq, d]`, `[N, Lk, d]`, `[N, Lk, dv]`, computed in
/// slices of at most [`MAX_SCORES_AT_ONCE`] scores. With `upcast`, scores and softmax are
/// computed in f32 whatever the input dtype.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    upcast: bool,
) -> Result<Tensor> {
    // On the CPU in f32: one fused op, with its analytic backward when training.
    use super::attention_op::AttentionOp;
    if super::cpu_f32::cpu_f32_training(&[q, k, v]) {
        let op = AttentionOp::training(scale as f32);
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let op = AttentionOp::inference(scale as f32);
    if [q, k, v]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
    {
        return q
            .contiguous()?
            .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op);
    }
    attention_in_slices(q, k, v, scale, upcast, MAX_SCORES_AT_ONCE)
}

/// [`scaled_dot_product_attention`] holding at most `max_scores` scores at once.
fn attention_in_slices(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    upcast: bool,
    max_scores: usize,
) -> Result<Tensor> {
    let (n, lq, d) = q.dims3()?;
    let (nk, lk, dk) = k.dims3()?;
    let (nv, lv, _) = v.dims3()?;
    if nk != n || nv != n || dk != d || lv != lk {
        bail!(
            "attention shapes do not fit: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let per_item = (lq * lk).max(1);
    let items_at_once = (max_scores / per_item).max(1);
    let rows_at_once = if items_at_once == 1 {
        (max_scores / lk.max(1)).clamp(1, lq.max(1))
    } else {
        lq
    };
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < n {
        let len = items_at_once.min(n - start);
        let (qs, ks, vs) = (
            q.narrow(0, start, len)?,
            k.narrow(0, start, len)?,
            v.narrow(0, start, len)?,
        );
        let kt = ks.t()?;
        let mut row = 0;
        while row < lq {
            let rows = rows_at_once.min(lq - row);
            let qr = if rows == lq {
                qs.clone()
            } else {
                qs.narrow(1, row, rows)?
            };
            pieces.push(attend(&qr, &kt, &vs, scale, upcast)?);
            row += rows;
        }
        start += len;
    }
    if pieces.len() == 1 {
        return Ok(pieces.remove(0));
    }
    // Pieces are ordered by item, then by rows within an item.
    if rows_at_once == lq {
        Tensor::cat(&pieces, 0)
    } else {
        let per = lq.div_ceil(rows_at_once);
        let items = pieces
            .chunks(per)
            .map(|c| Tensor::cat(c, 1))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&items, 0)
    }
}

/// One slice: `softmax(q kt * scale) v`.
fn attend(q: &Tensor, kt: &Tensor, v: &Tensor, scale: f64, upcast: bool) -> Result<Tensor> {
    let dtype = q.dtype();
    let compute = if upcast { DType::F32 } else { dtype };
    let scores = (q.to_dtype(compute)?.matmul(&kt.to_dtype(compute)?)? * scale)?;
    let probs = super::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5) * 2.0)
            .collect()
    }

    /// The textbook formula, in f64, one head at a time.
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n: usize,
        lq: usize,
        lk: usize,
        d: usize,
    ) -> Vec<f64> {
        let mut out = vec![0f64; n * lq * d];
        let scale = 1.0 / (d as f64).sqrt();
        for b in 0..n {
            for i in 0..lq {
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        (0..d)
                            .map(|c| {
                                q[(b * lq + i) * d + c] as f64 * k[(b * lk + j) * d + c] as f64
                            })
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    out[(b * lq + i) * d + c] = (0..lk)
                        .map(|j| e[j] / z * v[(b * lk + j) * d + c] as f64)
                        .sum();
                }
            }
        }
        out
    }

    /// The CPU f32 op (query blocks, the last one partial when Lq = 150) and the sliced
    /// candle path (f64) against the textbook formula.
    #[test]
    fn sdpa_matches_the_naive_formula() {
        let dev = Device::Cpu;
        for (n, lq, lk, d) in [(3, 5, 7, 4), (2, 150, 70, 16)] {
            let (q, k, v) = (
                data(n * lq * d, 1),
                data(n * lk * d, 2),
                data(n * lk * d, 3),
            );
            let want = naive(&q, &k, &v, n, lq, lk, d);
            let scale = 1.0 / (d as f64).sqrt();
            for dtype in [DType::F32, DType::F64] {
                let t = |x: &Vec<f32>, l| {
                    Tensor::from_vec(x.clone(), (n, l, d), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                };
                let out =
                    scaled_dot_product_attention(&t(&q, lq), &t(&k, lk), &t(&v, lk), scale, false)
                        .unwrap();
                let got: Vec<f64> = out
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max);
                // Values are O(1), averages of at most 70 values in f32: a few ulp.
                assert!(err < 1e-6, "{n}x{lq}x{lk}x{d} {dtype:?}: max error {err}");
            }
        }
    }

    #[test]
    fn attention_layer_matches_manual_heads() {
        // Two heads of width 2 with identity projections: the layer must equal per-head sdpa.
        let dev = Device::Cpu;
        let (b, l, dim) = (1, 3, 4);
        let eye = Tensor::eye(dim, DType::F32, &dev).unwrap();
        let zero = Tensor::zeros(dim, DType::F32, &dev).unwrap();
        let mut map = std::collections::HashMap::new();
        for name in ["to_q", "to_k", "to_v"] {
            map.insert(format!("{name}.weight"), eye.clone());
        }
        map.insert("to_out.0.weight".to_string(), eye.clone());
        map.insert("to_out.0.bias".to_string(), zero);
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let cfg = AttentionConfig {
            query_dim: dim,
            context_dim: None,
            heads: 2,
            head_dim: 2,
            qkv_bias: false,
            out_bias: true,
            upcast: false,
        };
        let attn = Attention::new(&cfg, vb).unwrap();
        let xv = data(b * l * dim, 5);
        let x = Tensor::from_vec(xv.clone(), (b, l, dim), &dev).unwrap();
        let got: Vec<f32> = attn
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for h in 0..2 {
            let head: Vec<f32> = (0..l)
                .flat_map(|i| [xv[i * dim + 2 * h], xv[i * dim + 2 * h + 1]])
                .collect();
            let want = naive(&head, &head, &head, 1, l, l, 2);
            for i in 0..l {
                for c in 0..2 {
                    let g = got[i * dim + 2 * h + c] as f64;
                    assert!((g - want[i * 2 + c]).abs() < 1e-6, "head {h} row {i}: {g}");
                }
            }
        }
    }

    #[test]
    fn slicing_gives_identical_numbers() {
        let dev = Device::Cpu;
        let (n, lq, lk, d) = (2, 6, 5, 3);
        let q = Tensor::from_vec(data(n * lq * d, 7), (n, lq, d), &dev).unwrap();
        let k = Tensor::from_vec(data(n * lk * d, 8), (n, lk, d), &dev).unwrap();
        let v = Tensor::from_vec(data(n * lk * d, 9), (n, lk, d), &dev).unwrap();
        let whole = attend(&q, &k.t().unwrap(), &v, 0.3, false).unwrap();
        // 60 scores: one item per slice; 10 scores: two query rows per slice; 1: one row.
        for max_scores in [60, 10, 1] {
            let sliced = attention_in_slices(&q, &k, &v, 0.3, false, max_scores).unwrap();
            assert_eq!(sliced.dims(), whole.dims());
            let diff = crate::nn::test_util::max_abs_diff(&whole, &sliced);
            assert_eq!(diff, 0.0, "max_scores {max_scores}");
        }
    }

    /// Self-attention of SD 1.5's 64x64 level (CFG batch 2 x 8 heads, 4096 tokens, head
    /// width 40) and its 32x32 level: milliseconds of the fused CPU op and of candle's
    /// matmul / softmax / matmul in slices.
    /// `cargo test --release -p kakusan-models --lib sd_attention_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn sd_attention_cost() {
        let dev = Device::Cpu;
        for (n, l, d) in [(16, 4096, 40), (16, 1024, 80)] {
            let t = || Tensor::randn(0f32, 1.0, (n, l, d), &dev).unwrap();
            let (q, k, v) = (t(), t(), t());
            let scale = 1.0 / (d as f64).sqrt();
            let time = |f: &dyn Fn() -> Tensor| {
                f();
                let start = std::time::Instant::now();
                for _ in 0..2 {
                    f();
                }
                start.elapsed().as_secs_f64() * 500.0
            };
            let fused = time(&|| scaled_dot_product_attention(&q, &k, &v, scale, false).unwrap());
            let sliced = time(&|| {
                attention_in_slices(&q, &k, &v, scale, false, MAX_SCORES_AT_ONCE).unwrap()
            });
            let bf16 = match Kernel::native() {
                Some(kernel) => {
                    let op = Bf16Attention {
                        scale: scale as f32,
                        kernel,
                        heads: 1,
                    };
                    format!(
                        "{:.0} ms",
                        time(&|| q.apply_op3_no_bwd(&k, &v, &op).unwrap())
                    )
                }
                None => "(no bf16 kernel)".to_string(),
            };
            println!(
                "[{n}, {l}, {d}]: fused {fused:.0} ms, bf16 {bf16}, candle in slices {sliced:.0} ms"
            );
        }
    }
}
