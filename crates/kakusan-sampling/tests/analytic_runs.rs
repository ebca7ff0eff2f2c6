//! Our schedules + samplers + noise streams against diffusers' schedulers and k-diffusion's
//! samplers run on the same analytic model (tests/golden/analytic_runs.json, made by
//! tests/golden/make_analytic_runs.py with torch 2.14.1 / diffusers 0.42.1 /
//! k-diffusion 0.1.1.post1).
//!
//! The "network" is the exact denoiser of data ~ N(mu, 0.5^2) per element, so the runs are
//! smooth and well-conditioned, and any convention error (initial scale, timestep spacing,
//! final DDIM scaling, a noise draw too many or too few) moves the result by 1e-2 or more,
//! while correct float32 implementations agree to ~1e-6.

use candle_core::{DType, Device, Tensor};
use kakusan_sampling::discrete_schedule::DiscreteSchedule;
use kakusan_sampling::schedule::{diffusers::model_schedule, k_diffusion};
use kakusan_sampling::{
    Denoiser, DiffusersScheduler, DiscreteDenoiser, Img2ImgConvention, Interpolation, ModelFn,
    NoiseSource, Prediction, Result, Sampler, SamplerOptions, SchedulerConfig, SigmaSchedule,
    TorchBatchNoise,
};
use serde_json::Value;

/// Final latents: max abs difference relative to max(1, max |reference|). Measured
/// agreement is ~1e-6 (float32 rounding of the same formulas in a different order);
/// 1e-5 leaves room and is 1000x below what a convention error produces.
const FINAL_TOLERANCE: f64 = 1e-5;
/// Initial latents: a product of the same noise and one scale, ~1 ulp.
const INITIAL_TOLERANCE: f64 = 1e-6;
const DATA_STD: f64 = 0.5;
const IMAGE_SHAPE: [usize; 3] = [4, 4, 4];

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/analytic_runs.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn seeds(run: &Value) -> Vec<u64> {
    run["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

/// mu[c, h, w] = 0.3 sin(c + 2h + 3w), the same for every image.
fn mu(batch: usize) -> Tensor {
    let [c, h, w] = IMAGE_SHAPE;
    let mut data = Vec::new();
    for _ in 0..batch {
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    data.push((0.3 * ((ci + 2 * hi + 3 * wi) as f64).sin()) as f32);
                }
            }
        }
    }
    Tensor::from_vec(data, (batch, c, h, w), &Device::Cpu).unwrap()
}

fn exact_x0(x: &Tensor, sigma: f64, mu: &Tensor) -> Result<Tensor> {
    let s2 = DATA_STD * DATA_STD;
    let denom = s2 + sigma * sigma;
    Ok((x.affine(s2 / denom, 0.0)? + mu.affine(sigma * sigma / denom, 0.0)?)?)
}

/// The analytic data's exact denoiser (what k-diffusion's run called directly).
struct Analytic {
    mu: Tensor,
}

impl Denoiser for Analytic {
    fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        exact_x0(x, sigma, &self.mu)
    }
}

/// The same as a network: eps or v from (x_in, t), sigma recovered from t linearly over the
/// table (what the Python side did with np.interp).
struct AnalyticNet {
    mu: Tensor,
    table: DiscreteSchedule,
    prediction: Prediction,
}

impl ModelFn for AnalyticNet {
    fn predict(&self, x_in: &Tensor, t: f64) -> Result<Tensor> {
        let sigma = self.table.t_to_sigma(t, Interpolation::Linear);
        let x = x_in.affine((sigma * sigma + 1.0).sqrt(), 0.0)?;
        let x0 = exact_x0(&x, sigma, &self.mu)?;
        let eps = ((&x - &x0)? / sigma)?;
        Ok(match self.prediction {
            Prediction::Epsilon => eps,
            Prediction::VPrediction => {
                let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
                (eps.affine(alpha, 0.0)? - x0.affine((1.0 - alpha * alpha).sqrt(), 0.0)?)?
            }
        })
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn rel_max_diff(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

fn class(name: &str) -> (DiffusersScheduler, Sampler) {
    match name {
        "EulerDiscreteScheduler" => (DiffusersScheduler::Euler, Sampler::Euler),
        "EulerAncestralDiscreteScheduler" => {
            (DiffusersScheduler::EulerAncestral, Sampler::EulerAncestral)
        }
        "DDIMScheduler" => (DiffusersScheduler::Ddim, Sampler::Ddim),
        other => panic!("unexpected scheduler {other}"),
    }
}

/// Checks the generators consumed exactly what the reference did: the next 4 draws match.
fn check_next_draws(noise: &mut TorchBatchNoise, run: &Value, name: &str) {
    for (generator, expected) in noise
        .generators_mut()
        .iter_mut()
        .zip(run["next_draw"].as_array().unwrap())
    {
        // Compared as f32 (what they are): serde_json's default float parsing can be 1 f64
        // ulp off, which rounding to f32 removes.
        let ours = generator.randn(&[4]);
        let reference: Vec<f32> = f64s(expected).into_iter().map(|v| v as f32).collect();
        assert_eq!(
            ours, reference,
            "{name}: the noise streams were consumed differently"
        );
    }
}

fn zeros(batch: usize) -> Tensor {
    let [c, h, w] = IMAGE_SHAPE;
    Tensor::zeros((batch, c, h, w), DType::F32, &Device::Cpu).unwrap()
}

fn run_diffusers(run: &Value) -> (f64, f64) {
    let name = run["name"].as_str().unwrap();
    let config: SchedulerConfig = serde_json::from_value(run["config"].clone()).unwrap();
    let (scheduler, sampler) = class(run["scheduler"].as_str().unwrap());
    let steps = run["steps"].as_u64().unwrap() as usize;
    let mut schedule: SigmaSchedule = model_schedule(&config, scheduler, steps).unwrap();
    if let Some(strength) = run["strength"].as_f64() {
        schedule = schedule
            .for_img2img(strength, Img2ImgConvention::Diffusers)
            .unwrap();
        assert_eq!(
            steps - schedule.steps(),
            run["begin_index"].as_u64().unwrap() as usize,
            "{name}: img2img start"
        );
    }
    // Timesteps: exact, except Karras ones, which diffusers inverts in float32 logs.
    let reference_t = f64s(&run["timesteps"]);
    assert_eq!(schedule.timesteps.len(), reference_t.len(), "{name}");
    for (a, b) in schedule.timesteps.iter().zip(&reference_t) {
        assert!((a - b).abs() <= 1e-3, "{name}: timestep {a} vs {b}");
    }
    if run["strength"].is_null() && scheduler != DiffusersScheduler::Ddim {
        let init = run["init_noise_sigma"].as_f64().unwrap();
        assert!(
            (schedule.init_noise_scale / init - 1.0).abs() < 1e-6,
            "{name}: init {} vs {init}",
            schedule.init_noise_scale
        );
    }

    let batch = seeds(run).len();
    let mut noise = TorchBatchNoise::from_seeds(&seeds(run));
    let drawn = noise.noise_like(&zeros(batch)).unwrap();
    let mu_t = mu(batch);
    let x = match run["strength"].as_f64() {
        None => schedule.initial_latents(&drawn).unwrap(),
        Some(_) => schedule
            .img2img_latents(
                &mu_t
                    .affine(1.0, run["init_offset"].as_f64().unwrap())
                    .unwrap(),
                &drawn,
            )
            .unwrap(),
    };
    // diffusers' DDIM sample is the unscaled one: x / sqrt(1 + sigma^2).
    let to_reference_space = if scheduler == DiffusersScheduler::Ddim {
        1.0 / (1.0 + schedule.sigmas[0].powi(2)).sqrt()
    } else {
        1.0
    };
    let initial_diff = rel_max_diff(
        &flat(&x.affine(to_reference_space, 0.0).unwrap()),
        &f64s(&run["initial_latents"]),
    );
    assert!(
        initial_diff < INITIAL_TOLERANCE,
        "{name}: initial latents off by {initial_diff:e}"
    );

    let net = AnalyticNet {
        mu: mu_t,
        table: schedule.table.clone(),
        prediction: config.prediction().unwrap(),
    };
    let denoiser = DiscreteDenoiser::new(
        net,
        schedule.table.clone(),
        config.prediction().unwrap(),
        schedule.interpolation,
    );
    let options = SamplerOptions {
        eta: run["eta"].as_f64(),
        ..SamplerOptions::default()
    };
    let mut calls = 0;
    let out = sampler
        .sample(&denoiser, x, &schedule, &mut noise, &options, &mut |_| {
            calls += 1
        })
        .unwrap();
    assert_eq!(
        calls,
        reference_t.len(),
        "{name}: one denoiser call per step"
    );
    let final_latents = schedule.final_latents(&out).unwrap();
    let final_diff = rel_max_diff(&flat(&final_latents), &f64s(&run["final_latents"]));
    check_next_draws(&mut noise, run, name);
    (initial_diff, final_diff)
}

#[test]
fn diffusers_scheduler_runs_are_reproduced() {
    let doc = golden();
    let mut report = Vec::new();
    for run in doc["runs"].as_array().unwrap() {
        if run.get("scheduler").is_none() {
            continue;
        }
        let name = run["name"].as_str().unwrap().to_string();
        let (initial, fin) = run_diffusers(run);
        report.push(format!("{name}: initial {initial:.1e}, final {fin:.1e}"));
        assert!(
            fin < FINAL_TOLERANCE,
            "{name}: final latents off by {fin:e}\n{}",
            report.join("\n")
        );
    }
    assert!(report.len() >= 14, "all diffusers runs checked");
    eprintln!("{}", report.join("\n"));
}

#[test]
fn k_diffusion_runs_are_reproduced() {
    let doc = golden();
    let table = DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap();
    let mut checked = 0;
    for run in doc["runs"].as_array().unwrap() {
        let Some(sampler) = run["sampler"].as_str() else {
            continue;
        };
        let name = run["name"].as_str().unwrap();
        let steps = run["steps"].as_u64().unwrap() as usize;
        let schedule = k_diffusion::normal(&table, steps).unwrap();
        let sigma_diff = rel_max_diff(&schedule.sigmas, &f64s(&run["sigmas"]));
        assert!(sigma_diff < 1e-6, "{name}: sigmas off by {sigma_diff:e}");
        let batch = seeds(run).len();
        let mut noise = TorchBatchNoise::from_seeds(&seeds(run));
        let x = schedule
            .initial_latents(&noise.noise_like(&zeros(batch)).unwrap())
            .unwrap();
        let sampler: Sampler = sampler.parse().unwrap();
        let denoiser = Analytic { mu: mu(batch) };
        let out = sampler
            .sample(
                &denoiser,
                x,
                &schedule,
                &mut noise,
                &SamplerOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        let diff = rel_max_diff(
            &flat(&schedule.final_latents(&out).unwrap()),
            &f64s(&run["final_latents"]),
        );
        eprintln!("{name}: final {diff:.1e}");
        assert!(
            diff < FINAL_TOLERANCE,
            "{name}: final latents off by {diff:e}"
        );
        check_next_draws(&mut noise, run, name);
        checked += 1;
    }
    assert_eq!(checked, 2);
}
