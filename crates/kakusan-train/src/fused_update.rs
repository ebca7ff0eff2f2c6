//! One-pass CPU f32 kernels for the per-step updates of [`AdamW`](crate::AdamW) and
//! [`Ema`](crate::Ema).
//!
//! Written as candle operations, an AdamW update is twelve element-wise operations per
//! variable, each a full pass with a fresh buffer on the main thread (about 4 % of a
//! kakusan-mini training step in `perf`, with the EMA and the workers idle meanwhile). These
//! kernels read each operand once, on all threads, and compute every element with the same
//! f32 operations in the same order as those candle operations (`Tensor * f64` is candle's
//! `affine(mul, 0)`, i.e. `x * mul + 0`, `Tensor / f64` is `affine(1 / d, 0)`, `Tensor + f64`
//! is `affine(1, add)`), so the results are bit-identical to the composite path: resumed and
//! repeated runs are unchanged. Tensors that are not contiguous f32 on the CPU keep the
//! composite path (the callers check [`cpu_f32_values`]).

use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements a variable is updated on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The AdamW step's constants, as the composite path rounds them to f32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWCoefficients {
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// `1 / (1 - beta1^t)` (candle's `Tensor / f64` multiplies by the f64 reciprocal).
    pub inv_bias1: f32,
    pub inv_bias2: f32,
    pub eps: f32,
    /// `1 - lr * weight_decay`.
    pub keep: f32,
    pub lr: f32,
}

impl AdamWCoefficients {
    /// From the f64 hyper-parameters, each constant computed in f64 and then rounded, as
    /// candle rounds an `affine`'s f64 arguments.
    pub fn new(beta1: f64, beta2: f64, eps: f64, weight_decay: f64, step: i32, lr: f64) -> Self {
        Self {
            beta1: beta1 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            inv_bias1: (1.0 / (1.0 - beta1.powi(step))) as f32,
            inv_bias2: (1.0 / (1.0 - beta2.powi(step))) as f32,
            eps: eps as f32,
            keep: (1.0 - lr * weight_decay) as f32,
            lr: lr as f32,
        }
    }

    /// One element: `(p, m, v)` after the step with gradient `g`.
    #[inline(always)]
    fn apply(&self, p: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let m = (m * self.beta1 + 0.0) + (g * self.one_minus_beta1 + 0.0);
        let v = (v * self.beta2 + 0.0) + ((g * g) * self.one_minus_beta2 + 0.0);
        let m_hat = m * self.inv_bias1 + 0.0;
        let v_hat = v * self.inv_bias2 + 0.0;
        let update = m_hat / (v_hat.sqrt() * 1.0 + self.eps);
        let p = (p * self.keep + 0.0) - (update * self.lr + 0.0);
        (p, m, v)
    }
}

/// The contiguous f32 values of a CPU tensor, read-locked while the guard lives; `None` for
/// any other tensor.
pub(crate) struct F32Slice<'a> {
    storage: candle_core::StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for F32Slice<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(data)) => &data[self.range.clone()],
            // `cpu_f32_values` only builds an F32Slice over f32 CPU storage.
            _ => unreachable!("F32Slice holds f32 CPU storage"),
        }
    }
}

/// [`F32Slice`] of `t` when it is a contiguous f32 CPU tensor.
pub(crate) fn cpu_f32_values(t: &Tensor) -> Option<F32Slice<'_>> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(_)), Some((a, b))) => Some(F32Slice {
            storage,
            range: a..b,
        }),
        _ => None,
    }
}

/// New `(p, m, v)` of one AdamW step. All four slices have the same length.
pub(crate) fn adamw(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    c: &AdamWCoefficients,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: operand lengths differ"
    );
    // Written element by element below, so not zeroed first (three parameter-sized memsets
    // per variable per step on the training thread).
    let (mut new_p, mut new_m, mut new_v) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let run = |range: std::ops::Range<usize>,
               np: &mut [MaybeUninit<f32>],
               nm: &mut [MaybeUninit<f32>],
               nv: &mut [MaybeUninit<f32>]| {
        for (k, i) in range.enumerate() {
            let (pi, mi, vi) = c.apply(p[i], g[i], m[i], v[i]);
            np[k].write(pi);
            nm[k].write(mi);
            nv[k].write(vi);
        }
    };
    let (sp, sm, sv) = (
        &mut new_p.spare_capacity_mut()[..n],
        &mut new_m.spare_capacity_mut()[..n],
        &mut new_v.spare_capacity_mut()[..n],
    );
    if n < PARALLEL_MIN {
        run(0..n, sp, sm, sv);
    } else {
        sp.par_chunks_mut(CHUNK)
            .zip(sm.par_chunks_mut(CHUNK))
            .zip(sv.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(chunk, ((np, nm), nv))| {
                let start = chunk * CHUNK;
                run(start..start + np.len(), np, nm, nv);
            });
    }
    // SAFETY: `run` wrote elements 0..n of all three (every chunk, or the whole range).
    unsafe {
        new_p.set_len(n);
        new_m.set_len(n);
        new_v.set_len(n);
    }
    (new_p, new_m, new_v)
}

/// The new average `s * decay + w * (1 - decay)` (the two factors rounded to f32 as candle's
/// `affine` rounds them).
pub(crate) fn ema(shadow: &[f32], weights: &[f32], decay: f64) -> Vec<f32> {
    let n = shadow.len();
    assert_eq!(weights.len(), n, "ema: operand lengths differ");
    let (d, rest) = (decay as f32, (1.0 - decay) as f32);
    // Written element by element below, so not zeroed first.
    let mut out = Vec::with_capacity(n);
    let run = |start: usize, out: &mut [MaybeUninit<f32>]| {
        for (k, o) in out.iter_mut().enumerate() {
            let i = start + k;
            o.write((shadow[i] * d + 0.0) + (weights[i] * rest + 0.0));
        }
    };
    let spare = &mut out.spare_capacity_mut()[..n];
    if n < PARALLEL_MIN {
        run(0, spare);
    } else {
        spare
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, o)| run(chunk * CHUNK, o));
    }
    // SAFETY: `run` wrote elements 0..n (every chunk, or the whole range).
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values with both signs, zeros of both signs, tiny and large magnitudes.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match i % 11 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 1e-30 * (state as f32 / u32::MAX as f32 - 0.5),
                    _ => 4.0 * (state as f32 / u32::MAX as f32 - 0.5),
                }
            })
            .collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    #[test]
    fn adamw_is_bit_identical_to_the_candle_composite() {
        let dev = Device::Cpu;
        // Below and above the parallel threshold, and not a multiple of the chunk.
        for n in [1000, PARALLEL_MIN + 12_345] {
            let p = Tensor::new(values(n, 1).as_slice(), &dev).unwrap();
            let g = Tensor::new(values(n, 2).as_slice(), &dev).unwrap();
            let m = Tensor::new(values(n, 3).as_slice(), &dev).unwrap();
            let v = (Tensor::new(values(n, 4).as_slice(), &dev).unwrap().abs()).unwrap();
            for step in [1, 2, 37] {
                let (beta1, beta2, eps, wd, lr) = (0.9, 0.999, 1e-8, 0.01, 3e-4);
                let c = AdamWCoefficients::new(beta1, beta2, eps, wd, step, lr);
                let (np, nm, nv) = adamw(
                    &cpu_f32_values(&p).unwrap(),
                    &cpu_f32_values(&g).unwrap(),
                    &cpu_f32_values(&m).unwrap(),
                    &cpu_f32_values(&v).unwrap(),
                    &c,
                );
                // The composite path of AdamW::step, operation for operation.
                let bias1 = 1.0 - f64::powi(beta1, step);
                let bias2 = 1.0 - f64::powi(beta2, step);
                let em = ((&m * beta1).unwrap() + (&g * (1.0 - beta1)).unwrap()).unwrap();
                let ev =
                    ((&v * beta2).unwrap() + (g.sqr().unwrap() * (1.0 - beta2)).unwrap()).unwrap();
                let m_hat = (&em / bias1).unwrap();
                let v_hat = (&ev / bias2).unwrap();
                let update = (m_hat / (v_hat.sqrt().unwrap() + eps).unwrap()).unwrap();
                let ep = ((&p * (1.0 - lr * wd)).unwrap() - (update * lr).unwrap()).unwrap();
                let t = |x: Vec<f32>| Tensor::new(x.as_slice(), &dev).unwrap();
                assert_eq!(bits(&t(nm)), bits(&em), "m, n {n}, step {step}");
                assert_eq!(bits(&t(nv)), bits(&ev), "v, n {n}, step {step}");
                assert_eq!(bits(&t(np)), bits(&ep), "p, n {n}, step {step}");
            }
        }
    }

    #[test]
    fn ema_is_bit_identical_to_the_candle_composite() {
        let dev = Device::Cpu;
        for n in [999, PARALLEL_MIN + 77] {
            let s = Tensor::new(values(n, 5).as_slice(), &dev).unwrap();
            let w = Tensor::new(values(n, 6).as_slice(), &dev).unwrap();
            for d in [0.1, 0.999, 0.9999] {
                let got = ema(
                    &cpu_f32_values(&s).unwrap(),
                    &cpu_f32_values(&w).unwrap(),
                    d,
                );
                let want = ((&s * d).unwrap() + (&w * (1.0 - d)).unwrap()).unwrap();
                let got = Tensor::new(got.as_slice(), &dev).unwrap();
                assert_eq!(bits(&got), bits(&want), "n {n}, decay {d}");
            }
        }
    }

    #[test]
    fn only_contiguous_f32_cpu_tensors_have_values() {
        let dev = Device::Cpu;
        let t = Tensor::arange(0f32, 6.0, &dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        assert_eq!(
            &*cpu_f32_values(&t).unwrap(),
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert!(cpu_f32_values(&t.t().unwrap()).is_none());
        let h = t.to_dtype(candle_core::DType::F16).unwrap();
        assert!(cpu_f32_values(&h).is_none());
        // A narrowed contiguous view: the values it covers, not the whole storage.
        let row = t.narrow(0, 1, 1).unwrap();
        assert_eq!(&*cpu_f32_values(&row).unwrap(), &[3.0, 4.0, 5.0]);
    }
}
