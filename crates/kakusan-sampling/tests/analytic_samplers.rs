//! The samplers on an analytic denoiser: data ~ N(mu, s^2) per element, whose exact
//! denoiser is x0 = (s^2 x + sigma^2 mu) / (s^2 + sigma^2). The probability-flow ODE then has
//! the closed form x(sigma) = mu + (x(sigma_0) - mu) * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_0^2).

use candle_core::{DType, Device, Tensor};
use kakusan_sampling::sampler::ddim::{sample_ddim, DdimOptions};
use kakusan_sampling::sampler::euler::{sample_euler, EulerOptions};
use kakusan_sampling::sampler::euler_ancestral::{sample_euler_ancestral, AncestralOptions};
use kakusan_sampling::{Denoiser, NoiseConvention, NoiseSource, Result, TorchBatchNoise};

const S: f64 = 0.5;
const MU: f64 = 0.7;

struct Gaussian;

impl Denoiser for Gaussian {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let d = S * S + sigma * sigma;
        Ok(x.affine(S * S / d, sigma * sigma * MU / d)?)
    }
}

/// Counts draws and hands out zeros (deterministic) or real noise.
struct Counting<N> {
    inner: N,
    draws: usize,
}

impl<N: NoiseSource> NoiseSource for Counting<N> {
    fn noise_like(&mut self, x: &Tensor) -> Result<Tensor> {
        self.draws += 1;
        self.inner.noise_like(x)
    }
}

fn start(batch: usize, sigma0: f64) -> (Tensor, TorchBatchNoise) {
    let mut noise = TorchBatchNoise::consecutive(1234, batch);
    let like = Tensor::zeros((batch, 4, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let x = noise
        .noise_like(&like)
        .unwrap()
        .affine(sigma0, 0.0)
        .unwrap();
    (x, noise)
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Geometric sigmas from sigma_max to sigma_min, then 0.
fn geometric(sigma_max: f64, sigma_min: f64, n: usize) -> Vec<f64> {
    let mut s: Vec<f64> = (0..n)
        .map(|i| sigma_max * (sigma_min / sigma_max).powf(i as f64 / (n - 1) as f64))
        .collect();
    s.push(0.0);
    s
}

fn euler_error(steps: usize) -> f64 {
    let sigmas = geometric(14.6, 0.002, steps);
    let (x, mut noise) = start(1, sigmas[0]);
    let x_start = values(&x);
    let out = sample_euler(
        &Gaussian,
        x,
        &sigmas,
        &mut noise,
        &EulerOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let scale = S / (S * S + sigmas[0] * sigmas[0]).sqrt();
    values(&out)
        .iter()
        .zip(&x_start)
        .map(|(got, x0)| (got - (MU + (x0 - MU) * scale)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn euler_converges_to_the_closed_form_ode_solution() {
    let coarse = euler_error(250);
    let fine = euler_error(1000);
    // First order: 4x the steps, ~4x smaller error; and small in absolute terms.
    assert!(fine < 5e-3, "error with 1000 steps: {fine}");
    assert!(
        coarse / fine > 3.0 && coarse / fine < 5.0,
        "coarse {coarse}, fine {fine}"
    );
}

#[test]
fn ddim_with_eta_0_is_euler_on_the_same_sigmas() {
    let sigmas = geometric(14.6, 0.03, 20);
    let (x, mut noise) = start(2, sigmas[0]);
    let euler = sample_euler(
        &Gaussian,
        x.clone(),
        &sigmas,
        &mut noise,
        &EulerOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let ddim = sample_ddim(
        &Gaussian,
        x,
        &sigmas,
        &mut noise,
        &DdimOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    // Same update, same operations: identical floats.
    assert_eq!(values(&euler), values(&ddim));
}

#[test]
fn noise_is_drawn_exactly_when_the_reference_draws() {
    let sigmas = geometric(14.6, 0.03, 10);
    let steps = sigmas.len() - 1;
    let run = |f: &dyn Fn(Tensor, &mut Counting<TorchBatchNoise>)| {
        let (x, noise) = start(1, sigmas[0]);
        let mut counting = Counting {
            inner: noise,
            draws: 0,
        };
        f(x, &mut counting);
        counting.draws
    };
    let sigmas_ref = &sigmas;
    let ancestral = |convention| {
        move |x: Tensor, n: &mut Counting<TorchBatchNoise>| {
            let opts = AncestralOptions {
                convention,
                ..AncestralOptions::default()
            };
            sample_euler_ancestral(&Gaussian, x, sigmas_ref, n, &opts, &mut |_| {}).unwrap();
        }
    };
    // diffusers: after every step, the last one included.
    assert_eq!(run(&ancestral(NoiseConvention::Diffusers)), steps);
    // k-diffusion: not after the last step (sigma_next = 0).
    assert_eq!(run(&ancestral(NoiseConvention::KDiffusion)), steps - 1);
    // Euler without churn and DDIM with eta 0 never draw; DDIM with eta > 0 every step.
    assert_eq!(
        run(&|x, n| {
            sample_euler(
                &Gaussian,
                x,
                &sigmas,
                n,
                &EulerOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        }),
        0
    );
    assert_eq!(
        run(&|x, n| {
            sample_ddim(
                &Gaussian,
                x,
                &sigmas,
                n,
                &DdimOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        }),
        0
    );
    assert_eq!(
        run(&|x, n| {
            let opts = DdimOptions {
                eta: 0.5,
                step_targets: None,
            };
            sample_ddim(&Gaussian, x, &sigmas, n, &opts, &mut |_| {}).unwrap();
        }),
        steps
    );
    // Churn draws on the steps it is active (sigma in [s_tmin, s_tmax]): here 4 of them.
    let churn_steps = sigmas[..steps]
        .iter()
        .filter(|&&s| (1.0..=10.0).contains(&s))
        .count();
    assert_eq!(
        run(&|x, n| {
            let opts = EulerOptions {
                s_churn: 1.0,
                s_tmin: 1.0,
                s_tmax: 10.0,
                ..EulerOptions::default()
            };
            sample_euler(&Gaussian, x, &sigmas, n, &opts, &mut |_| {}).unwrap();
        }),
        churn_steps
    );
    assert!(churn_steps > 0 && churn_steps < steps);
}

/// The standard deviation an ancestral run must end with, per element. With the exact
/// denoiser, y = x - MU evolves as `y' = a y + sigma_up z` with
/// `a = 1 + sigma (sigma_down - sigma) / (S^2 + sigma^2)`, so its variance follows
/// `V' = a^2 V + sigma_up^2` from `V = sigma_0^2`. This is the discretised process; it tends
/// to S as the steps get finer (0.450 at 30 steps, 0.484 at 100).
fn ancestral_std(sigmas: &[f64], eta: f64) -> f64 {
    let mut var = sigmas[0] * sigmas[0];
    for w in sigmas.windows(2) {
        let (down, up) =
            kakusan_sampling::sampler::euler_ancestral::ancestral_step(w[0], w[1], eta);
        let a = 1.0 + w[0] * (down - w[0]) / (S * S + w[0] * w[0]);
        var = var * a * a + up * up;
    }
    var.sqrt()
}

#[test]
fn ancestral_samplers_produce_the_discretised_distribution() {
    // 16 images x 1024 elements from the exact denoiser.
    let sigmas = geometric(14.6, 0.03, 30);
    let check = |out: Tensor, expected_std: f64, what: &str| {
        let v = values(&out);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        // 16384 samples: standard error of the mean ~0.0035, of the std ~0.0025; allow 4.
        assert!((mean - MU).abs() < 0.014, "{what}: mean {mean}");
        assert!(
            (std - expected_std).abs() < 0.01,
            "{what}: std {std}, expected {expected_std}"
        );
    };
    let expected = ancestral_std(&sigmas, 1.0);
    assert!((expected - 0.4505).abs() < 1e-3, "{expected}");
    let (x, mut noise) = start(16, sigmas[0]);
    check(
        sample_euler_ancestral(
            &Gaussian,
            x,
            &sigmas,
            &mut noise,
            &AncestralOptions::default(),
            &mut |_| {},
        )
        .unwrap(),
        expected,
        "euler a",
    );
    // DDIM with eta = 1 is the same process (its sigma_up formula without the min(), which
    // never binds for eta <= 1).
    let (x, mut noise) = start(16, sigmas[0]);
    let opts = DdimOptions {
        eta: 1.0,
        step_targets: None,
    };
    check(
        sample_ddim(&Gaussian, x, &sigmas, &mut noise, &opts, &mut |_| {}).unwrap(),
        expected,
        "ddim eta 1",
    );
    // eta = 0.5 keeps less noise: a different, also predictable spread.
    let half = ancestral_std(&sigmas, 0.5);
    let (x, mut noise) = start(16, sigmas[0]);
    let opts = AncestralOptions {
        eta: 0.5,
        ..AncestralOptions::default()
    };
    check(
        sample_euler_ancestral(&Gaussian, x, &sigmas, &mut noise, &opts, &mut |_| {}).unwrap(),
        half,
        "euler a eta 0.5",
    );
}

#[test]
fn callback_sees_every_step_in_order() {
    let sigmas = geometric(10.0, 0.1, 5);
    let (x, mut noise) = start(1, sigmas[0]);
    let mut seen = Vec::new();
    sample_euler_ancestral(
        &Gaussian,
        x,
        &sigmas,
        &mut noise,
        &AncestralOptions::default(),
        &mut |info| {
            seen.push((
                info.step,
                info.total,
                info.sigma,
                info.sigma_next,
                info.denoised.dims().to_vec(),
            ));
        },
    )
    .unwrap();
    assert_eq!(seen.len(), 5);
    for (i, (step, total, sigma, next, dims)) in seen.into_iter().enumerate() {
        assert_eq!((step, total), (i, 5));
        assert_eq!((sigma, next), (sigmas[i], sigmas[i + 1]));
        assert_eq!(dims, vec![1, 4, 16, 16]);
    }
}

#[test]
fn bad_sigmas_are_errors_not_panics() {
    let (x, mut noise) = start(1, 1.0);
    let err = sample_euler(
        &Gaussian,
        x.clone(),
        &[1.0],
        &mut noise,
        &EulerOptions::default(),
        &mut |_| {},
    );
    assert!(err.is_err());
    let err = sample_ddim(
        &Gaussian,
        x,
        &[2.0, 1.0, 0.0],
        &mut noise,
        &DdimOptions {
            eta: 0.0,
            step_targets: Some(&[1.0]),
        },
        &mut |_| {},
    );
    assert!(err.is_err());
}
