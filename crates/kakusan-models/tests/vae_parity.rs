//! VAE encode/decode parity with diffusers 0.42 on the tiny SD1- and SD2-shaped fixture
//! autoencoders made by `tools/parity` (random weights, f16-valued, computed in f32 on CPU).
//!
//! Tolerance: 1e-5 of max(1, max|reference|) per output (fidelity.md, "one VAE forward").
//! Summation order and libm rounding account for ~1e-6; a wrong padding, group count or
//! attention layout moves the result by far more.

mod common;

use common::{component_vb, reference, relative_error};
use kakusan_models::vae::{AutoencoderKL, VaeConfig};

const TOLERANCE: f32 = 1e-5;

fn load_vae(model: &str) -> AutoencoderKL {
    let (vb, dir) = component_vb(model, "vae", "diffusion_pytorch_model.safetensors");
    let config = VaeConfig::from_file(dir.join("config.json")).unwrap();
    AutoencoderKL::new(vb, &config).unwrap()
}

fn check_model(model: &str) {
    let refs = reference(model);
    let get = |k: &str| {
        refs.get(k)
            .unwrap_or_else(|| panic!("{model}: no tensor {k}"))
            .clone()
    };
    let vae = load_vae(model);

    let posterior = vae.encode(&get("vae.encode.image")).unwrap();
    let std = posterior.std().unwrap();
    for (name, got, want) in [
        ("mean", &posterior.mean, "vae.encode.mean"),
        ("logvar", &posterior.logvar, "vae.encode.logvar"),
        ("std", &std, "vae.encode.std"),
    ] {
        let err = relative_error(got, &get(want));
        println!("{model} vae encode {name}: relative max error {err:.3e}");
        assert!(err < TOLERANCE, "{model} encode {name}: {err:e}");
    }

    for (z, image) in [
        ("vae.decode.z", "vae.decode.image"),
        ("vae.decode.z_odd", "vae.decode.image_odd"),
    ] {
        let out = vae.decode(&get(z)).unwrap();
        let err = relative_error(&out, &get(image));
        println!("{model} vae decode {z}: relative max error {err:.3e}");
        assert!(err < TOLERANCE, "{model} decode {z}: {err:e}");
    }
}

#[test]
fn sd1_tiny_vae_matches_diffusers() {
    check_model("sd1-tiny");
}

#[test]
fn sd2_tiny_vae_matches_diffusers() {
    check_model("sd2-tiny");
}
