//! LoRA parity with diffusers + peft (tools/parity/make_lora_fixture.py): a random rank-4
//! (UNet: attention projections, proj_in/proj_out 1x1 convs, resnet 3x3 conv1; alpha 8) and
//! rank-2 (text encoder: q/k/v/out_proj and fc1; alpha 3) LoRA in diffusers' PEFT layout with
//! the alphas in `lora_adapter_metadata`, loaded by diffusers at weight 0.7; we merge it into
//! the weights and compare the text encoder's last hidden state and the UNet output.
//!
//! Tolerance: 1e-4 of max(1, max|ref|). diffusers runs the LoRA unmerged (`W x + s·B(A x)`),
//! we merge (`(W + s·B A) x`): the same sums re-associated in f32 (~1e-6 relative per layer),
//! through 3 encoder layers or the UNet's ~20 layers. The LoRA moves the outputs by 2.6 (text)
//! and 1.1 (UNet) (lora-sd1-tiny-ref.json), so a wrong scale (alpha/r), a missed module or a
//! wrong weight is far outside it; the base outputs are checked too.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kakusan_models::clip::{ClipTextConfig, ClipTextModel};
use kakusan_models::unet::{UNet2DConditionModel, UNetConfig};
use kakusan_models::weights::{Component, LoraBackend, LoraFile, LoraTarget, ModelSource};

mod common;

use common::{fixtures, max_abs, max_abs_diff};

const TOL: f32 = 1e-4;

fn check(name: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{name}");
    let range = max_abs(want).max(1.0);
    let err = max_abs_diff(got, want);
    assert!(
        err <= TOL * range,
        "{name}: off by {err:.3e} (range {range:.3})"
    );
    err
}

#[test]
fn peft_lora_matches_diffusers() {
    let dev = Device::Cpu;
    let dir = fixtures();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("lora-sd1-tiny-ref.json")).unwrap())
            .unwrap();
    let weight = meta["weight"].as_f64().unwrap();
    let r =
        candle_core::safetensors::load(dir.join("lora-sd1-tiny-ref.safetensors"), &dev).unwrap();
    let lora = Arc::new(LoraFile::load(&dir.join("lora-sd1-tiny.safetensors")).unwrap());
    assert!(lora.unknown_keys.is_empty(), "{:?}", lora.unknown_keys);
    let source = ModelSource::open(dir.join("sd1-tiny")).unwrap();
    let te_cfg: ClipTextConfig =
        serde_json::from_value(source.config(Component::TextEncoder).clone()).unwrap();
    let unet_cfg: UNetConfig =
        serde_json::from_value(source.config(Component::Unet).clone()).unwrap();
    let backend = |target, component, w: f64| {
        LoraBackend {
            base: source.component_backend(component),
            target,
            loras: vec![(lora.clone(), w)],
        }
        .into_var_builder(DType::F32, &dev)
    };
    let ids = r["ids"].to_dtype(DType::U32).unwrap();
    let sample = &r["sample"];
    let context = &r["context"];
    let t = &r["timestep"];
    for (w, te_key, unet_key) in [
        (0.0, "te_base", "unet_base"),
        (weight, "te_lora", "unet_lora"),
    ] {
        let te = ClipTextModel::new(
            backend(LoraTarget::TextEncoder, Component::TextEncoder, w),
            &te_cfg,
        )
        .unwrap();
        check(te_key, &te.forward(&ids, 1).unwrap(), &r[te_key]);
        let unet =
            UNet2DConditionModel::new(backend(LoraTarget::Unet, Component::Unet, w), &unet_cfg)
                .unwrap();
        check(
            unet_key,
            &unet.forward(sample, t, context).unwrap(),
            &r[unet_key],
        );
    }
}
