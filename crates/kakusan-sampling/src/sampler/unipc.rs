//! UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework"), the
//! multistep data-prediction variant with corrector, as diffusers'
//! `UniPCMultistepScheduler` runs it (B(h) = h: "bh1"; B(h) = e^h - 1: "bh2"), written in
//! k-diffusion scaling (`x = x_unscaled * sqrt(1 + sigma^2)`), where with
//! `lambda = -ln sigma` the predictor from s to t is
//! `x_t = (sigma_t / sigma_s) x_s - (e^{-h} - 1) m_s - B(-h) sum_k rho_k D_k`.
//!
//! Each step: the model at the current level; from the second step on the UniC corrector
//! refines the current sample with that evaluation (no extra model call); then the UniP
//! predictor to the next level. Orders warm up from 1 and, with `lower_order_final`, go
//! down again for the last steps (diffusers' defaults).

use super::{check_sigmas, lin, Callback, StepInfo};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use candle_core::Tensor;

/// UniPC's B(h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UniPcVariant {
    /// B(h) = h (A1111's and ComfyUI's default "uni_pc").
    Bh1,
    /// B(h) = e^h - 1 (diffusers' default, ComfyUI's "uni_pc_bh2").
    #[default]
    Bh2,
}

/// UniPC's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniPcOptions {
    /// Solver order (1 to 3).
    pub order: usize,
    pub variant: UniPcVariant,
    /// Lower the order for the last steps (more stable with few steps).
    pub lower_order_final: bool,
}

impl Default for UniPcOptions {
    fn default() -> Self {
        Self {
            order: 2,
            variant: UniPcVariant::Bh2,
            lower_order_final: true,
        }
    }
}

/// Solves `a x = b` for a small dense system (Gaussian elimination, partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[pivot][col].abs() < 1e-300 || !a[pivot][col].is_finite() {
            return Err(Error::InvalidSchedule(
                "UniPC: the step sizes give a singular system".into(),
            ));
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col].clone();
            for (value, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *value -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Ok(x)
}

/// The shared part of UniP and UniC for a step of log-SNR length `h` with ratios `rks`
/// (last one 1): `(h_phi_1, B_h, R, b)`.
fn coefficients(
    h: f64,
    rks: &[f64],
    order: usize,
    variant: UniPcVariant,
) -> (f64, f64, Vec<Vec<f64>>, Vec<f64>) {
    let hh = -h;
    let h_phi_1 = hh.exp_m1();
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1.0;
    let b_h = match variant {
        UniPcVariant::Bh1 => hh,
        UniPcVariant::Bh2 => hh.exp_m1(),
    };
    let mut r = Vec::new();
    let mut b = Vec::new();
    for i in 1..=order {
        r.push(
            rks.iter()
                .map(|rk| rk.powi(i as i32 - 1))
                .collect::<Vec<f64>>(),
        );
        b.push(h_phi_k * factorial / b_h);
        factorial *= (i + 1) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    (h_phi_1, b_h, r, b)
}

/// One UniP (predictor) or UniC (corrector) update of `x` from level index `s` to `t`
/// using the estimates `ms` (most recent last, the one at `s` included) at the levels
/// `levels` (same order), and for the corrector the new estimate `m_t`.
#[allow(clippy::too_many_arguments)]
fn update(
    x: &Tensor,
    sigma_s: f64,
    sigma_t: f64,
    ms: &[Tensor],
    levels: &[f64],
    order: usize,
    variant: UniPcVariant,
    m_t: Option<&Tensor>,
) -> Result<Tensor> {
    let n = ms.len();
    let m0 = &ms[n - 1];
    let lambda = |s: f64| -s.ln();
    let h = lambda(sigma_t) - lambda(sigma_s);
    let mut rks = Vec::new();
    let mut d1s = Vec::new();
    for k in 1..order {
        let rk = (lambda(levels[n - 1 - k]) - lambda(sigma_s)) / h;
        rks.push(rk);
        d1s.push((&ms[n - 1 - k] - m0)?.affine(1.0 / rk, 0.0)?);
    }
    rks.push(1.0);
    let (h_phi_1, b_h, r, b) = coefficients(h, &rks, order, variant);
    // x_t_ = (sigma_t / sigma_s) x - h_phi_1 m0 (k-diffusion scaling).
    let mut x_t = lin(x, sigma_t / sigma_s, m0, -h_phi_1)?;
    match m_t {
        None => {
            if !d1s.is_empty() {
                let rhos = if order == 2 {
                    vec![0.5]
                } else {
                    let r_sub: Vec<Vec<f64>> = r[..order - 1]
                        .iter()
                        .map(|row| row[..order - 1].to_vec())
                        .collect();
                    solve(r_sub, b[..order - 1].to_vec())?
                };
                for (rho, d) in rhos.iter().zip(&d1s) {
                    x_t = (x_t - d.affine(b_h * rho, 0.0)?)?;
                }
            }
        }
        Some(m_t) => {
            let rhos = if order == 1 { vec![0.5] } else { solve(r, b)? };
            for (rho, d) in rhos.iter().zip(&d1s) {
                x_t = (x_t - d.affine(b_h * rho, 0.0)?)?;
            }
            let d1_t = (m_t - m0)?;
            x_t = (x_t - d1_t.affine(b_h * rhos[rhos.len() - 1], 0.0)?)?;
        }
    }
    Ok(x_t)
}

/// UniPC sampling from `x` at `sigmas[0]`.
pub fn sample_unipc(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    opts: &UniPcOptions,
    callback: &mut Callback<'_>,
) -> Result<Tensor> {
    check_sigmas(sigmas)?;
    if !(1..=3).contains(&opts.order) {
        return Err(Error::InvalidSchedule(format!(
            "UniPC order must be 1, 2 or 3, got {}",
            opts.order
        )));
    }
    let total = sigmas.len() - 1;
    let mut ms: Vec<Tensor> = Vec::new();
    let mut levels: Vec<f64> = Vec::new();
    let mut last_sample: Option<Tensor> = None;
    let mut this_order = 1;
    let mut lower_order_nums = 0;
    for step in 0..total {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        callback(&StepInfo {
            step,
            total,
            sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
        });
        if let Some(last) = &last_sample {
            x = update(
                last,
                sigmas[step - 1],
                sigma,
                &ms,
                &levels,
                this_order,
                opts.variant,
                Some(&denoised),
            )?;
        }
        ms.push(denoised);
        levels.push(sigma);
        if ms.len() > opts.order {
            ms.remove(0);
            levels.remove(0);
        }
        this_order = if opts.lower_order_final {
            opts.order.min(total - step)
        } else {
            opts.order
        };
        this_order = this_order.min(lower_order_nums + 1);
        last_sample = Some(x.clone());
        x = update(
            &x,
            sigma,
            sigma_next,
            &ms,
            &levels,
            this_order,
            opts.variant,
            None,
        )?;
        if lower_order_nums < opts.order {
            lower_order_nums += 1;
        }
    }
    Ok(x)
}
