//! Diffusers folders written here: which weights file each component uses (fp16 variant,
//! shards), what a missing or pickled component says, old VAE attention names, text
//! encoders with or without `text_model.`, names and hashes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use kakusan_models::weights::{Component, ModelSource, OpenOptions, SourceFormat, WeightsError};
use serde_json::json;

fn save(path: &Path, tensors: &[(&str, f32)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), Tensor::new(&[*v, *v], &Device::Cpu).unwrap()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn write_json(path: &Path, value: serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, value.to_string()).unwrap();
}

/// A complete (tiny, meaningless) folder: one or two tensors per component.
fn make_folder(root: &Path) {
    write_json(
        &root.join("model_index.json"),
        json!({"_class_name": "StableDiffusionPipeline"}),
    );
    write_json(
        &root.join("unet/config.json"),
        json!({"block_out_channels": [4]}),
    );
    write_json(&root.join("vae/config.json"), json!({"latent_channels": 4}));
    write_json(
        &root.join("text_encoder/config.json"),
        json!({"hidden_size": 2}),
    );
    write_json(
        &root.join("scheduler/scheduler_config.json"),
        json!({"_class_name": "DDIMScheduler", "prediction_type": "v_prediction"}),
    );
    std::fs::create_dir_all(root.join("tokenizer")).unwrap();
    save(
        &root.join("unet/diffusion_pytorch_model.safetensors"),
        &[("conv_in.weight", 1.0)],
    );
    save(
        &root.join("vae/diffusion_pytorch_model.safetensors"),
        &[
            ("decoder.mid_block.attentions.0.query.weight", 2.0),
            ("decoder.mid_block.attentions.0.proj_attn.bias", 3.0),
        ],
    );
    // transformers 5 layout: no `text_model.`.
    save(
        &root.join("text_encoder/model.safetensors"),
        &[
            ("final_layer_norm.weight", 4.0),
            ("text_projection.weight", 5.0),
        ],
    );
}

fn first_value(model: &ModelSource, component: Component, name: &str) -> f32 {
    let t = model
        .component_backend(component)
        .load(name, None, DType::F32, &Device::Cpu)
        .unwrap();
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn opens_a_folder_with_its_name_variants() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("my-model");
    make_folder(&root);
    let model = ModelSource::open(&root).unwrap();
    assert_eq!(model.format(), SourceFormat::DiffusersFolder);
    assert_eq!(model.name(), "my-model");
    assert_eq!(
        model.config(Component::Unet)["block_out_channels"],
        json!([4])
    );
    assert_eq!(
        model.scheduler_config()["prediction_type"],
        json!("v_prediction")
    );
    assert_eq!(
        model.tokenizer_dir(),
        Some(root.join("tokenizer").as_path())
    );
    assert!(model.detected().is_none());
    // Old diffusers VAE attention names, new names asked.
    assert_eq!(
        first_value(
            &model,
            Component::Vae,
            "decoder.mid_block.attentions.0.to_q.weight"
        ),
        2.0
    );
    assert_eq!(
        first_value(
            &model,
            Component::Vae,
            "decoder.mid_block.attentions.0.to_out.0.bias"
        ),
        3.0
    );
    // Text encoder keys without `text_model.`, asked with it (and without).
    assert_eq!(
        first_value(
            &model,
            Component::TextEncoder,
            "text_model.final_layer_norm.weight"
        ),
        4.0
    );
    assert_eq!(
        first_value(&model, Component::TextEncoder, "final_layer_norm.weight"),
        4.0
    );
    assert_eq!(
        first_value(&model, Component::TextEncoder, "text_projection.weight"),
        5.0
    );
    // The hash is the UNet file's.
    assert_eq!(
        model.hashed_file(),
        root.join("unet/diffusion_pytorch_model.safetensors")
    );
    let sha = kakusan_models::weights::hash::sha256_file(model.hashed_file()).unwrap();
    assert_eq!(model.model_hash().unwrap(), sha[..10]);
}

#[test]
fn fp16_variant_when_alone_or_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    make_folder(&root);
    let fp16 = root.join("unet/diffusion_pytorch_model.fp16.safetensors");
    save(&fp16, &[("conv_in.weight", 9.0)]);

    let model = ModelSource::open(&root).unwrap();
    assert_eq!(first_value(&model, Component::Unet, "conv_in.weight"), 1.0);
    let asked = ModelSource::open_with(
        &root,
        &OpenOptions {
            prefer_fp16_variant: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(first_value(&asked, Component::Unet, "conv_in.weight"), 9.0);
    // VAE has no fp16 variant: the full one is used even when fp16 is preferred.
    assert_eq!(
        first_value(
            &asked,
            Component::Vae,
            "decoder.mid_block.attentions.0.to_q.weight"
        ),
        2.0
    );

    std::fs::remove_file(root.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let model = ModelSource::open(&root).unwrap();
    assert_eq!(first_value(&model, Component::Unet, "conv_in.weight"), 9.0);
}

#[test]
fn sharded_component() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    make_folder(&root);
    std::fs::remove_file(root.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    save(
        &root.join("unet/diffusion_pytorch_model-00001-of-00002.safetensors"),
        &[("conv_in.weight", 6.0)],
    );
    save(
        &root.join("unet/diffusion_pytorch_model-00002-of-00002.safetensors"),
        &[("conv_out.weight", 7.0)],
    );
    write_json(
        &root.join("unet/diffusion_pytorch_model.safetensors.index.json"),
        json!({"weight_map": {
            "conv_in.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "conv_out.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"
        }}),
    );
    let model = ModelSource::open(&root).unwrap();
    assert_eq!(first_value(&model, Component::Unet, "conv_in.weight"), 6.0);
    assert_eq!(first_value(&model, Component::Unet, "conv_out.weight"), 7.0);
    assert!(model
        .hashed_file()
        .ends_with("diffusion_pytorch_model-00001-of-00002.safetensors"));
}

#[test]
fn missing_parts_name_the_expected_file_and_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    make_folder(&root);
    std::fs::remove_file(root.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(root.join("vae/notes.txt"), "x").unwrap();
    let err = ModelSource::open(&root).unwrap_err();
    assert!(
        matches!(err, WeightsError::MissingComponent { .. }),
        "{err}"
    );
    let m = err.to_string();
    assert!(m.contains("VAE"), "{m}");
    assert!(m.contains("vae/diffusion_pytorch_model.safetensors"), "{m}");
    assert!(m.contains("config.json, notes.txt"), "{m}");

    // A missing sub-folder.
    let root2 = dir.path().join("m2");
    make_folder(&root2);
    std::fs::remove_dir_all(root2.join("text_encoder")).unwrap();
    let m = ModelSource::open(&root2).unwrap_err().to_string();
    assert!(
        m.contains("text_encoder/model.safetensors") && m.contains("no folder"),
        "{m}"
    );

    // A missing config.
    let root3 = dir.path().join("m3");
    make_folder(&root3);
    std::fs::remove_file(root3.join("scheduler/scheduler_config.json")).unwrap();
    let m = ModelSource::open(&root3).unwrap_err().to_string();
    assert!(m.contains("scheduler_config.json"), "{m}");

    // A bad config.
    let root4 = dir.path().join("m4");
    make_folder(&root4);
    std::fs::write(root4.join("unet/config.json"), "{ not json").unwrap();
    let err = ModelSource::open(&root4).unwrap_err();
    assert!(matches!(err, WeightsError::BadConfig { .. }), "{err}");

    // Not a model folder at all.
    let err = ModelSource::open(dir.path().join("m").join("vae")).unwrap_err();
    assert!(matches!(err, WeightsError::NotAModelFolder { .. }), "{err}");

    // Nothing there.
    let err = ModelSource::open(dir.path().join("nope.safetensors")).unwrap_err();
    assert!(matches!(err, WeightsError::MissingFile { .. }), "{err}");
}

#[test]
fn pickled_components_and_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    make_folder(&root);
    std::fs::remove_file(root.join("text_encoder/model.safetensors")).unwrap();
    std::fs::write(root.join("text_encoder/pytorch_model.bin"), "PK").unwrap();
    let err = ModelSource::open(&root).unwrap_err();
    assert!(matches!(err, WeightsError::PickleRefused { .. }), "{err}");
    assert!(err.to_string().contains("pytorch_model.bin"), "{err}");

    let ckpt = dir.path().join("v1-5-pruned.ckpt");
    std::fs::write(&ckpt, "PK").unwrap();
    let err = ModelSource::open(&ckpt).unwrap_err();
    assert!(matches!(err, WeightsError::PickleRefused { .. }), "{err}");
    assert!(err.to_string().contains("v1-5-pruned.safetensors"), "{err}");
    // Even when the path does not exist, the answer is about pickles.
    let err = ModelSource::open(dir.path().join("absent.pth")).unwrap_err();
    assert!(matches!(err, WeightsError::PickleRefused { .. }), "{err}");
}
