//! The parity fixtures' tiny SD1 and SD2 models, stored both as diffusers folders and as LDM
//! single files with the same weights: every tensor the folder holds, fetched from the single
//! file by its diffusers name, must be bit-identical to the folder's (this exercises the LDM
//! UNet index arithmetic, the reversed VAE up blocks, the VAE attention 1x1-conv reshapes,
//! the OpenCLIP q/k/v split and the extra text layer), and detection must give the folder's
//! configs for everything the weights can show.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use kakusan_models::weights::{
    Component, Family, ModelSource, OpenOptions, Prediction, PredictionEvidence, SourceFormat,
    TextEncoderKind,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    assert!(
        dir.join("sd1-tiny").is_dir(),
        "parity fixtures missing in {} (made by tools/parity)",
        dir.display()
    );
    dir
}

/// Bit-exact equality of two tensors (both loaded as f32 from the same f16 values).
fn assert_same(name: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{name}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let differing = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(
        differing,
        0,
        "{name}: {differing} of {} values differ",
        a.len()
    );
}

/// Every tensor of the folder's `component` equals the single file's tensor of that name.
/// Returns how many were compared.
fn compare_component(folder: &ModelSource, single: &ModelSource, component: Component) -> usize {
    let from_folder = folder.component_backend(component);
    let from_file = single.component_backend(component);
    let mut keys: Vec<String> = folder.store(component).keys().map(str::to_string).collect();
    keys.sort();
    assert!(!keys.is_empty());
    for key in &keys {
        let want = from_folder
            .load(key, None, DType::F32, &Device::Cpu)
            .unwrap();
        // Ask with the folder's shape, as a model would: the single file may store it
        // differently (1x1 convs, fused q/k/v) and the backend must deliver this shape.
        let got = from_file
            .load(key, Some(want.dims()), DType::F32, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{component}: `{key}` from the single file: {e}"));
        assert_same(&format!("{component} {key}"), &want, &got);
    }
    keys.len()
}

fn open_pair(model: &str) -> (ModelSource, ModelSource) {
    let dir = fixtures();
    let folder = ModelSource::open(dir.join(model)).unwrap();
    let single = ModelSource::open(dir.join(format!("{model}.safetensors"))).unwrap();
    assert_eq!(folder.format(), SourceFormat::DiffusersFolder);
    assert_eq!(single.format(), SourceFormat::SingleFile);
    (folder, single)
}

fn field<'a>(config: &'a Value, name: &str) -> &'a Value {
    config.get(name).unwrap_or(&Value::Null)
}

/// The fields detection must reproduce from the weights alone.
fn assert_configs_match(folder: &ModelSource, single: &ModelSource, unet_heads_detectable: bool) {
    let (fu, su) = (
        folder.config(Component::Unet),
        single.config(Component::Unet),
    );
    for name in [
        "block_out_channels",
        "layers_per_block",
        "down_block_types",
        "up_block_types",
        "mid_block_type",
        "use_linear_projection",
        "cross_attention_dim",
        "in_channels",
        "out_channels",
        "transformer_layers_per_block",
    ] {
        assert_eq!(field(su, name), field(fu, name), "unet `{name}`");
    }
    if unet_heads_detectable {
        assert_eq!(
            field(su, "attention_head_dim"),
            field(fu, "attention_head_dim")
        );
    }
    let (fv, sv) = (folder.config(Component::Vae), single.config(Component::Vae));
    for name in [
        "block_out_channels",
        "layers_per_block",
        "latent_channels",
        "in_channels",
        "out_channels",
        "down_block_types",
        "up_block_types",
        "scaling_factor",
    ] {
        assert_eq!(field(sv, name), field(fv, name), "vae `{name}`");
    }
    let (ft, st) = (
        folder.config(Component::TextEncoder),
        single.config(Component::TextEncoder),
    );
    for name in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "vocab_size",
        "max_position_embeddings",
        "hidden_act",
        "layer_norm_eps",
    ] {
        assert_eq!(field(st, name), field(ft, name), "text encoder `{name}`");
    }
    let (fs, ss) = (folder.scheduler_config(), single.scheduler_config());
    for name in [
        "beta_start",
        "beta_end",
        "beta_schedule",
        "num_train_timesteps",
        "prediction_type",
    ] {
        assert_eq!(field(ss, name), field(fs, name), "scheduler `{name}`");
    }
}

#[test]
fn sd1_single_file_tensors_equal_the_folder() {
    let (folder, single) = open_pair("sd1-tiny");
    let unet = compare_component(&folder, &single, Component::Unet);
    let vae = compare_component(&folder, &single, Component::Vae);
    let text = compare_component(&folder, &single, Component::TextEncoder);
    // The whole models, not a handful of keys (sd1-tiny: UNet 300+, VAE 100+, text 50+).
    assert!(unet > 300 && vae > 100 && text > 50, "{unet} {vae} {text}");
}

#[test]
fn sd2_single_file_tensors_equal_the_folder() {
    let (folder, single) = open_pair("sd2-tiny");
    let unet = compare_component(&folder, &single, Component::Unet);
    let vae = compare_component(&folder, &single, Component::Vae);
    let text = compare_component(&folder, &single, Component::TextEncoder);
    assert!(unet > 300 && vae > 100 && text > 40, "{unet} {vae} {text}");
    // The folder's text encoder has no `text_model.` prefix (transformers 5): the canonical
    // names with the prefix resolve in both.
    let name = "text_model.encoder.layers.2.self_attn.v_proj.weight";
    let a = folder
        .component_backend(Component::TextEncoder)
        .load(name, Some(&[8, 8]), DType::F32, &Device::Cpu)
        .unwrap();
    let b = single
        .component_backend(Component::TextEncoder)
        .load(name, Some(&[8, 8]), DType::F32, &Device::Cpu)
        .unwrap();
    assert_same(name, &a, &b);
}

#[test]
fn sd1_detection_gives_the_folder_configs() {
    let (folder, single) = open_pair("sd1-tiny");
    let detected = single.detected().unwrap();
    assert_eq!(detected.family, Family::Sd1);
    assert_eq!(detected.text.kind, TextEncoderKind::Clip);
    assert_eq!(detected.text.layers_in_file, 3);
    assert_eq!(detected.text.layers_used, 3);
    assert_eq!(detected.prediction, Prediction::Epsilon);
    assert_eq!(detected.prediction_evidence, PredictionEvidence::FamilyRule);
    assert!(!detected.unet.use_linear_projection);
    assert_eq!(detected.unet.cross_attention_dim, 8);
    // SD1's convention (8 heads) is what the tiny folder uses too.
    assert_configs_match(&folder, &single, true);
    assert_eq!(single.prediction(), Prediction::Epsilon);
}

#[test]
fn sd2_detection_gives_the_folder_configs() {
    let (folder, single) = open_pair("sd2-tiny");
    let detected = single.detected().unwrap();
    assert_eq!(detected.family, Family::Sd2);
    assert_eq!(detected.text.kind, TextEncoderKind::OpenClip);
    // The file holds 4 OpenCLIP layers; the model is built with 3 (the penultimate rule,
    // applied once, here), like the folder.
    assert_eq!(detected.text.layers_in_file, 4);
    assert_eq!(detected.text.layers_used, 3);
    assert!(detected.unet.use_linear_projection);
    assert_eq!(detected.unet.cross_attention_dim, 8);
    // Tiny model: ComfyUI's statistic needs real-sized weights, so SD2's default (v) decides.
    assert_eq!(detected.prediction, Prediction::VPrediction);
    assert_eq!(
        detected.prediction_evidence,
        PredictionEvidence::FamilyDefault
    );
    assert_eq!(single.prediction(), Prediction::VPrediction);
    // Heads cannot be read from weights. SD2's convention is heads of 64 channels; the tiny
    // folder uses heads of 8 channels ((2, 4) heads at (16, 32) channels): detection gives
    // the convention, a config folder gives the truth.
    assert_configs_match(&folder, &single, false);
    assert_eq!(
        single.config(Component::Unet)["attention_head_dim"],
        serde_json::json!([1, 1])
    );
}

#[test]
fn config_folder_overrides_what_weights_cannot_show() {
    let dir = fixtures();
    for model in ["sd1-tiny", "sd2-tiny"] {
        let options = OpenOptions {
            config_from: Some(dir.join(model)),
            ..OpenOptions::default()
        };
        let single =
            ModelSource::open_with(dir.join(format!("{model}.safetensors")), &options).unwrap();
        let folder = ModelSource::open(dir.join(model)).unwrap();
        for component in Component::ALL {
            assert_eq!(
                single.config(component),
                folder.config(component),
                "{model} {component}"
            );
        }
        assert_eq!(single.scheduler_config(), folder.scheduler_config());
        assert_eq!(
            single.tokenizer_dir(),
            Some(dir.join(model).join("tokenizer").as_path())
        );
    }
    // A config folder that does not describe the weights is refused up front.
    let options = OpenOptions {
        config_from: Some(dir.join("sd1-tiny")),
        ..OpenOptions::default()
    };
    let err = ModelSource::open_with(dir.join("sd2-tiny.safetensors"), &options).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("intermediate_size") && message.contains("37"),
        "{message}"
    );
}

#[test]
fn prediction_override_applies_to_both_layouts() {
    let dir = fixtures();
    let options = OpenOptions {
        prediction: Some(Prediction::Epsilon),
        ..OpenOptions::default()
    };
    let single = ModelSource::open_with(dir.join("sd2-tiny.safetensors"), &options).unwrap();
    assert_eq!(single.prediction(), Prediction::Epsilon);
    assert_eq!(
        single.detected().unwrap().prediction_evidence,
        PredictionEvidence::Override
    );
    let folder = ModelSource::open_with(dir.join("sd2-tiny"), &options).unwrap();
    assert_eq!(folder.prediction(), Prediction::Epsilon);
    assert_eq!(folder.scheduler_config()["prediction_type"], "epsilon");
}

#[test]
fn names_tokenizers_and_hashes() {
    let dir = fixtures();
    let (folder, single) = open_pair("sd1-tiny");
    assert_eq!(folder.name(), "sd1-tiny");
    assert_eq!(single.name(), "sd1-tiny");
    assert_eq!(
        folder.tokenizer_dir(),
        Some(dir.join("sd1-tiny/tokenizer").as_path())
    );
    // Single files carry no tokenizer: only the fallback given.
    assert_eq!(single.tokenizer_dir(), None);
    let with_fallback = ModelSource::open_with(
        dir.join("sd1-tiny.safetensors"),
        &OpenOptions {
            tokenizer_fallback: Some(dir.join("tokenizer")),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        with_fallback.tokenizer_dir(),
        Some(dir.join("tokenizer").as_path())
    );

    // AutoV2 = first 10 hex digits of the whole file's sha256.
    let hash = single.model_hash().unwrap();
    assert_eq!(hash.len(), 10);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(single.sha256().unwrap()[..10], hash);
    assert_eq!(
        folder.hashed_file(),
        dir.join("sd1-tiny/unet/diffusion_pytorch_model.safetensors")
    );
    assert_ne!(folder.model_hash().unwrap(), hash);
}

#[test]
fn var_builder_serves_models_by_diffusers_names() {
    let (_, single) = open_pair("sd2-tiny");
    let vb = single.component_vb(Component::Vae, DType::F32, &Device::Cpu);
    // A diffusers-style linear weight from an LDM 1x1 conv.
    let w = vb
        .pp("decoder")
        .pp("mid_block")
        .pp("attentions.0")
        .pp("to_q")
        .get((16, 16), "weight")
        .unwrap();
    assert_eq!(w.dims(), &[16, 16]);
    assert!(vb.contains_tensor("encoder.mid_block.attentions.0.to_out.0.weight"));
    assert!(!vb.contains_tensor("encoder.mid_block.attentions.1.to_out.0.weight"));
    // Wrong shape: an error naming the tensor and both shapes, no panic.
    let err = vb
        .get((16, 8), "decoder.conv_in.weight")
        .unwrap_err()
        .to_string();
    assert!(err.contains("decoder.conv_in.weight"), "{err}");
    assert!(
        err.contains("[16, 8]") && err.contains("[16, 4, 3, 3]"),
        "{err}"
    );
    // Half precision on request.
    let text = single.component_vb(Component::TextEncoder, DType::F16, &Device::Cpu);
    let q = text
        .get(
            (8, 8),
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
        )
        .unwrap();
    assert_eq!(q.dtype(), DType::F16);
}
