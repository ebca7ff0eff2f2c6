//! Schedules, initial latents and noise streams against the parity fixtures recorded from
//! diffusers 0.42.1 / k-diffusion 0.1.1.post1 (tests/fixtures/sd{1,2}-tiny-ref.*, made by
//! tools/parity/make_fixtures.py; see tests/fixtures/README.md).
//!
//! Tolerances: sigmas and init_noise_sigma 1e-6 relative (the references hold float32
//! values computed in float32; we compute in float64 from the same float32 tables and round
//! to float32, which lands within an ulp or two); timesteps exactly (they are integers or
//! float32 linspace values) and the timestep our denoiser derives from a sigma within 1e-4
//! (float32 rounding of sigma, ~6e-8 relative, divided by the table's slope); noise bit for
//! bit (fidelity.md).

use candle_core::{DType, Device, Tensor};
use kakusan_sampling::discrete_schedule::DiscreteSchedule;
use kakusan_sampling::schedule::{diffusers::model_schedule, k_diffusion};
use kakusan_sampling::{
    DiffusersScheduler, Img2ImgConvention, NoiseSource, SchedulerConfig, SigmaSchedule,
    TorchBatchNoise,
};
use safetensors::SafeTensors;
use serde_json::Value;
use std::path::PathBuf;

const SIGMA_RTOL: f64 = 1e-6;
const DERIVED_T_ATOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Reference {
    json: Value,
    bytes: Vec<u8>,
}

impl Reference {
    fn load(model: &str) -> Self {
        let dir = fixtures();
        let read = |name: String| {
            std::fs::read(dir.join(&name)).unwrap_or_else(|e| {
                panic!("fixture {name} missing ({e}); it is made by tools/parity/make_fixtures.py")
            })
        };
        let json = serde_json::from_slice(&read(format!("{model}-ref.json"))).unwrap();
        let bytes = read(format!("{model}-ref.safetensors"));
        Self { json, bytes }
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn shape(&self, name: &str) -> Vec<usize> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        st.tensor(name).unwrap().shape().to_vec()
    }

    fn has(&self, name: &str) -> bool {
        self.json["tensors"].get(name).is_some()
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(ours: &[f64], reference: &[f64], rtol: f64, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= rtol * b.abs(),
            "{what}[{i}]: ours {a} vs reference {b} (rel {:e})",
            (a - b).abs() / b.abs()
        );
    }
}

fn scheduler_of(class: &str) -> DiffusersScheduler {
    match class {
        "EulerDiscreteScheduler" => DiffusersScheduler::Euler,
        "EulerAncestralDiscreteScheduler" => DiffusersScheduler::EulerAncestral,
        "DDIMScheduler" => DiffusersScheduler::Ddim,
        other => panic!("unexpected scheduler {other}"),
    }
}

fn tensor(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Checks every recorded diffusers run of one model.
fn check_model(model: &str) -> usize {
    let r = Reference::load(model);
    let mut checked = 0;
    for (key, run) in r.json["runs"].as_object().unwrap() {
        let prefix = format!("run.{key}");
        let config: SchedulerConfig =
            serde_json::from_value(run["scheduler_config"].clone()).unwrap();
        let scheduler = scheduler_of(run["scheduler"].as_str().unwrap());
        let steps = run["steps"].as_u64().unwrap() as usize;
        let schedule: SigmaSchedule = model_schedule(&config, scheduler, steps).unwrap();

        // All timesteps of set_timesteps, exactly (as float32: serde_json's default float
        // parsing may be 1 f64 ulp off, which the rounding removes).
        let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        assert_eq!(
            as_f32(&schedule.timesteps),
            as_f32(&f64s(&run["timesteps_all"])),
            "{key}: timesteps"
        );
        let recorded_t: Vec<f64> = r
            .f32s(&format!("{prefix}.timesteps"))
            .into_iter()
            .map(f64::from)
            .collect();
        assert_eq!(schedule.timesteps, recorded_t, "{key}: timesteps tensor");

        // Sigmas (Euler family records them; DDIM has none, we check its table instead).
        if r.has(&format!("{prefix}.sigmas")) {
            let reference: Vec<f64> = r
                .f32s(&format!("{prefix}.sigmas"))
                .into_iter()
                .map(f64::from)
                .collect();
            assert_close(
                &schedule.sigmas[..steps],
                &reference[..steps],
                SIGMA_RTOL,
                &format!("{key}: sigmas"),
            );
            assert_eq!(
                schedule.sigmas[steps], reference[steps],
                "{key}: final sigma"
            );
        }

        // Cut for img2img the way the pipeline does.
        let strength = run["strength"].as_f64();
        let used = match strength {
            Some(s) => {
                let cut = schedule
                    .for_img2img(s, Img2ImgConvention::Diffusers)
                    .unwrap();
                assert_eq!(
                    steps - cut.steps(),
                    run["begin_index"].as_u64().unwrap() as usize,
                    "{key}: begin index"
                );
                assert_eq!(
                    cut.timesteps[0],
                    run["latent_timestep"].as_f64().unwrap(),
                    "{key}: latent timestep"
                );
                cut
            }
            None => schedule.clone(),
        };

        // The timestep our denoiser derives from each sigma is the one diffusers fed the UNet.
        let fed = f64s(&run["timesteps_fed_to_unet"]);
        assert_eq!(fed.len(), used.steps(), "{key}: number of UNet calls");
        for (sigma, t) in used.sigmas.iter().zip(&fed) {
            let derived = used.table.sigma_to_t(*sigma, used.interpolation);
            assert!(
                (derived - t).abs() <= DERIVED_T_ATOL,
                "{key}: t({sigma}) = {derived}, diffusers fed {t}"
            );
        }

        // init_noise_sigma: ours is in k-diffusion scaling; diffusers' DDIM works unscaled
        // (init 1), which is sqrt(1 + sigma_max^2) in our scaling.
        let init = run["init_noise_sigma"].as_f64().unwrap();
        let expected_init = match scheduler {
            DiffusersScheduler::Ddim => init * (1.0 + schedule.sigmas[0].powi(2)).sqrt(),
            _ => init,
        };
        assert!(
            (schedule.init_noise_scale / expected_init - 1.0).abs() <= SIGMA_RTOL,
            "{key}: init {} vs {expected_init}",
            schedule.init_noise_scale
        );

        // Noise: per-image generators seeded 42 + i; img2img first draws the VAE posterior
        // sample from the same generator.
        let seeds: Vec<u64> = run["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        let mut noise = TorchBatchNoise::from_seeds(&seeds);
        let shape = r.shape(&format!("{prefix}.noise"));
        let like = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
        if strength.is_some() {
            let eps = noise.noise_like(&like).unwrap();
            assert_eq!(
                flat(&eps),
                r.f32s(&format!("{prefix}.posterior_eps")),
                "{key}: posterior eps"
            );
        }
        let drawn = noise.noise_like(&like).unwrap();
        assert_eq!(
            flat(&drawn),
            r.f32s(&format!("{prefix}.noise")),
            "{key}: noise"
        );

        // Initial latents, converted to diffusers' space for DDIM.
        let x = match strength {
            None => used.initial_latents(&drawn).unwrap(),
            Some(_) => {
                let init = tensor(r.f32s(&format!("{prefix}.init_latents")), &shape);
                used.img2img_latents(&init, &drawn).unwrap()
            }
        };
        let x = match scheduler {
            DiffusersScheduler::Ddim => x
                .affine(1.0 / (1.0 + used.sigmas[0].powi(2)).sqrt(), 0.0)
                .unwrap(),
            _ => x,
        };
        let reference = r.f32s(&format!("{prefix}.initial_latents"));
        let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = flat(&x)
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
            / scale;
        // One or two float32 roundings of the same products: 1e-6.
        assert!(diff <= 1e-6, "{key}: initial latents off by {diff:e}");

        // Euler ancestral: each step's noise continues each image's generator, one draw per
        // step including the last.
        if r.has(&format!("{prefix}.step_noise")) {
            let all = r.f32s(&format!("{prefix}.step_noise"));
            let per_step = shape.iter().product::<usize>();
            assert_eq!(
                all.len(),
                per_step * used.steps(),
                "{key}: one draw per step"
            );
            for step in all.chunks_exact(per_step) {
                assert_eq!(
                    flat(&noise.noise_like(&like).unwrap()),
                    step,
                    "{key}: step noise"
                );
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn sd1_diffusers_runs_schedules_and_noise() {
    assert_eq!(check_model("sd1-tiny"), 13);
}

#[test]
fn sd2_diffusers_runs_schedules_and_noise() {
    assert!(check_model("sd2-tiny") >= 12);
}

#[test]
fn k_diffusion_tables_and_schedules() {
    for model in ["sd1-tiny", "sd2-tiny"] {
        let r = Reference::load(model);
        let table = DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap();
        // LDM's alphas_cumprod: float64 arithmetic stored as float32, bit for bit.
        let reference_ac = r.f32s("kdiff.alphas_cumprod");
        let ours_ac: Vec<f32> = table.alphas_cumprod().iter().map(|&a| a as f32).collect();
        assert_eq!(ours_ac, reference_ac, "{model}: alphas_cumprod");
        let kd = &r.json["k_diffusion"];
        assert_close(
            &[table.sigma_min(), table.sigma_max()],
            &[
                kd["sigma_min"].as_f64().unwrap(),
                kd["sigma_max"].as_f64().unwrap(),
            ],
            SIGMA_RTOL,
            "sigma range",
        );

        for (name, schedule) in [
            (
                "kdiff.sigmas_normal",
                k_diffusion::normal(&table, 20).unwrap(),
            ),
            (
                "kdiff.sigmas_karras",
                k_diffusion::karras(&table, 20, k_diffusion::KARRAS_RHO).unwrap(),
            ),
            (
                "kdiff.sigmas_exponential",
                k_diffusion::exponential(&table, 20).unwrap(),
            ),
        ] {
            let reference: Vec<f64> = r.f32s(name).into_iter().map(f64::from).collect();
            assert_close(&schedule.sigmas[..20], &reference[..20], SIGMA_RTOL, name);
            assert_eq!(schedule.sigmas[20], 0.0);
            assert_eq!(
                schedule.init_noise_scale, schedule.sigmas[0],
                "k-diffusion starts at noise * sigmas[0]"
            );
        }

        // The timesteps k-diffusion fed the UNet in its Euler run (float32 round trip of
        // linspace values) against ours from the same sigmas.
        let normal = k_diffusion::normal(&table, 20).unwrap();
        let fed = f64s(&kd["runs"]["euler_normal"]["timesteps_fed_to_unet_first"]);
        for (sigma, t) in normal.sigmas.iter().zip(&fed) {
            let derived = table.sigma_to_t(*sigma, normal.interpolation);
            // k-diffusion computes this in float32: ~3e-5 at t ~ 900.
            assert!(
                (derived - t).abs() < 1e-3,
                "{model}: t({sigma}) = {derived}, k-diffusion fed {t}"
            );
        }

        // k-diffusion's run noise = one generator seeded 42.
        let mut noise = TorchBatchNoise::from_seeds(&[42]);
        let like = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            flat(&noise.noise_like(&like).unwrap()),
            r.f32s("kdiff.run.euler_normal.noise")
        );
    }
}

#[test]
fn linspace_euler_is_close_to_but_not_the_normal_schedule() {
    // diffusers' linspace Euler (f32 table, linear interpolation) vs k-diffusion's normal
    // (LDM table, log interpolation): the same idea, ~1e-5 apart, as the fixture README says.
    let r = Reference::load("sd1-tiny");
    let linspace: Vec<f64> = r
        .f32s("run.txt2img_64_linspace.euler.sigmas")
        .into_iter()
        .map(f64::from)
        .collect();
    let normal: Vec<f64> = r
        .f32s("kdiff.sigmas_normal")
        .into_iter()
        .map(f64::from)
        .collect();
    let worst = linspace[..20]
        .iter()
        .zip(&normal[..20])
        .map(|(a, b)| (a - b).abs() / b)
        .fold(0.0, f64::max);
    assert!(worst > 1e-6 && worst < 5e-5, "{worst:e}");
}
