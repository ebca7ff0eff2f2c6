//! UNet forward parity with diffusers 0.42 on the tiny SD1- and SD2-shaped fixture models
//! made by `tools/parity` (random weights, f16-valued, computed in f32 on CPU).
//!
//! Tolerance: 1e-5 of max(1, max|reference|) per output (fidelity.md, "one UNet forward").
//! A correct f32 implementation differs from PyTorch only by summation order and libm
//! rounding (~1e-6 here); a wrong head count, projection kind, timestep embedding or
//! skip wiring moves the output by 1e-2 or more.

mod common;

use common::{component_vb, reference, relative_error};
use kakusan_models::unet::{UNet2DConditionModel, UNetConfig};

const TOLERANCE: f32 = 1e-5;

fn load_unet(model: &str) -> UNet2DConditionModel {
    let (vb, dir) = component_vb(model, "unet", "diffusion_pytorch_model.safetensors");
    let config = UNetConfig::from_file(dir.join("config.json")).unwrap();
    UNet2DConditionModel::new(vb, &config).unwrap()
}

fn check_model(model: &str) {
    let refs = reference(model);
    let get = |k: &str| {
        refs.get(k)
            .unwrap_or_else(|| panic!("{model}: no tensor {k}"))
            .clone()
    };
    let unet = load_unet(model);
    let (x, context) = (get("unet.x"), get("unet.context"));
    // Integer (500), fractional (417.25) and mixed (999, 0.5) timesteps.
    for case in ["t500", "t417_25", "t999_0_5"] {
        let t = get(&format!("unet.{case}.timestep"));
        let out = unet.forward(&x, &t, &context).unwrap();
        let err = relative_error(&out, &get(&format!("unet.{case}.out")));
        println!("{model} unet {case}: relative max error {err:.3e}");
        assert!(err < TOLERANCE, "{model} unet {case}: {err:e}");
    }
    // Odd latent height: up-sampling must match the skip connection's size.
    let odd = unet
        .forward(
            &get("unet.odd.x"),
            &get("unet.odd.timestep"),
            &get("text.prompt.last_hidden_state"),
        )
        .unwrap();
    let err = relative_error(&odd, &get("unet.odd.out"));
    println!("{model} unet odd 5x8: relative max error {err:.3e}");
    assert!(err < TOLERANCE, "{model} unet odd: {err:e}");
}

/// SD1 shape: conv proj_in/out, `attention_head_dim` 8 meaning 8 heads.
#[test]
fn sd1_tiny_unet_matches_diffusers() {
    check_model("sd1-tiny");
}

/// SD2 shape: linear proj_in/out, per-block heads [2, 4], upcast attention.
#[test]
fn sd2_tiny_unet_matches_diffusers() {
    check_model("sd2-tiny");
}
