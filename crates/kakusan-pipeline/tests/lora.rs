//! LoRA on the tiny SD1 fixture, with kohya-layout files written by the test: the merged
//! weights are the base plus `weight · alpha/rank · up·down` (checked on the tensors the model
//! gets, to 1e-6: one f32 matmul of rank 2 and an add, on values of order 1); several LoRAs
//! add; a job without LoRAs after one with them gets the base networks back exactly (0
//! difference in its conditioning); `generate` refuses a job whose LoRAs were not prepared.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use kakusan_models::weights::{Component, LoraBackend, LoraFile, LoraTarget, ModelSource};
use kakusan_pipeline::conditioning::PromptOptions;
use kakusan_pipeline::{Job, LoadOptions, StableDiffusion};

mod common;

use common::{max_abs, sd1_tiny as fixture};

const TE_MODULE: &str = "text_model_encoder_layers_0_self_attn_q_proj";
const TE_NAME: &str = "text_model.encoder.layers.0.self_attn.q_proj.weight";
const UNET_MODULE: &str = "down_blocks_0_attentions_0_proj_in";
const UNET_NAME: &str = "down_blocks.0.attentions.0.proj_in.weight";

fn ramp(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.5)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A kohya LoRA of rank 2 on one text-encoder linear (8x8) and one UNet 1x1 conv (16x16).
fn write_kohya(path: &Path, seed: f32, alpha: f32) {
    let mut m: HashMap<String, Tensor> = HashMap::new();
    m.insert(
        format!("lora_te_{TE_MODULE}.lora_down.weight"),
        ramp(&[2, 8], seed),
    );
    m.insert(
        format!("lora_te_{TE_MODULE}.lora_up.weight"),
        ramp(&[8, 2], seed + 1.0),
    );
    m.insert(
        format!("lora_te_{TE_MODULE}.alpha"),
        Tensor::new(alpha, &Device::Cpu).unwrap(),
    );
    m.insert(
        format!("lora_unet_{UNET_MODULE}.lora_down.weight"),
        ramp(&[2, 16, 1, 1], seed + 2.0),
    );
    m.insert(
        format!("lora_unet_{UNET_MODULE}.lora_up.weight"),
        ramp(&[16, 2, 1, 1], seed + 3.0),
    );
    m.insert(
        format!("lora_unet_{UNET_MODULE}.alpha"),
        Tensor::new(alpha, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&m, path).unwrap();
}

#[test]
fn merged_weights_are_base_plus_scaled_updates() {
    let dir = tempfile::tempdir().unwrap();
    write_kohya(&dir.path().join("a.safetensors"), 0.0, 1.0);
    write_kohya(&dir.path().join("b.safetensors"), 5.0, 4.0);
    let a = std::sync::Arc::new(LoraFile::load(&dir.path().join("a.safetensors")).unwrap());
    let b = std::sync::Arc::new(LoraFile::load(&dir.path().join("b.safetensors")).unwrap());
    assert_eq!(a.modules.len(), 2);
    let source = ModelSource::open(fixture()).unwrap();
    for (target, component, name, shape, off) in [
        (
            LoraTarget::TextEncoder,
            Component::TextEncoder,
            TE_NAME,
            vec![8usize, 8],
            0.0,
        ),
        (
            LoraTarget::Unet,
            Component::Unet,
            UNET_NAME,
            vec![16, 16, 1, 1],
            2.0,
        ),
    ] {
        let base = source
            .component_backend(component)
            .load(name, Some(&shape), DType::F32, &Device::Cpu)
            .unwrap();
        let backend = LoraBackend {
            base: source.component_backend(component),
            target,
            loras: vec![(a.clone(), 0.7), (b.clone(), -0.3)],
        };
        let merged = backend
            .load_merged(name, Some(&shape), DType::F32, &Device::Cpu)
            .unwrap();
        // By hand: alpha/rank = 1/2 for a, 4/2 for b.
        let delta = |seed: f32, scale: f64| {
            let (o, i) = (shape[0], shape[1]);
            let down = ramp(&[2, i], seed + off);
            let up = ramp(&[o, 2], seed + off + 1.0);
            up.matmul(&down)
                .unwrap()
                .affine(scale, 0.0)
                .unwrap()
                .reshape(shape.as_slice())
                .unwrap()
        };
        let want = ((&base + delta(0.0, 0.5 * 0.7)).unwrap() + delta(5.0, 2.0 * -0.3)).unwrap();
        let err = max_abs(&(&merged - &want).unwrap());
        assert!(err <= 1e-6, "{name}: {err}");
        assert!(
            max_abs(&(&merged - &base).unwrap()) > 1e-2,
            "{name} changed"
        );
        // Other weights are untouched.
        let other = "text_model.encoder.layers.1.self_attn.q_proj.weight";
        if target == LoraTarget::TextEncoder {
            let x = backend
                .load_merged(other, None, DType::F32, &Device::Cpu)
                .unwrap();
            let y = source
                .component_backend(component)
                .load(other, None, DType::F32, &Device::Cpu)
                .unwrap();
            assert_eq!(max_abs(&(x - y).unwrap()), 0.0);
        }
    }
}

fn cond(model: &StableDiffusion, prompt: &str) -> Tensor {
    let c = model
        .encode_conditioning(prompt, "", 4, 1, &PromptOptions::default())
        .unwrap();
    c.parts[0].1[0].1.clone()
}

#[test]
fn loras_apply_per_job_and_unapply_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_kohya(&dir.path().join("style.safetensors"), 0.0, 2.0);
    std::fs::write(dir.path().join("old.ckpt"), b"PK\x03\x04").unwrap();
    let opts = LoadOptions {
        lora_dir: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let mut model = StableDiffusion::load(&fixture(), &opts).unwrap();
    let base = cond(&model, "a red cat");
    let job = |prompt: &str| Job {
        prompt: prompt.into(),
        steps: 2,
        width: 64,
        height: 64,
        ..Job::default()
    };
    let with = job("a red cat <lora:style:0.8>");
    // Not prepared: refused rather than silently generated without the LoRA.
    assert!(model.generate(&with, &mut |_| {}).is_err());
    assert!(model.prepare_job(&with).unwrap().is_empty());
    assert_eq!(model.applied_loras(), &[("style".to_string(), 0.8, 0.8)]);
    let lora = cond(&model, "a red cat");
    assert!(max_abs(&(&lora - &base).unwrap()) > 1e-3);
    model.generate(&with, &mut |_| {}).unwrap();
    // Same set again: nothing rebuilt, same result.
    model.prepare_job(&with).unwrap();
    assert_eq!(max_abs(&(cond(&model, "a red cat") - &lora).unwrap()), 0.0);
    // A job without it: the base, exactly.
    let without = job("a red cat");
    model.prepare_job(&without).unwrap();
    assert!(model.applied_loras().is_empty());
    assert_eq!(max_abs(&(cond(&model, "a red cat") - &base).unwrap()), 0.0);
    // Missing and pickled LoRAs are skipped with a warning.
    let w = model
        .prepare_job(&job("x <lora:nope:1> <lora:old:1>"))
        .unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[1].contains("pickle"), "{w:?}");
    assert!(model.applied_loras().is_empty());
}

/// The kohya file of [`write_kohya`] with `sshs_model_hash` in its metadata.
fn write_kohya_with_hash(path: &Path, hash: &str) {
    let plain = path.with_extension("plain");
    write_kohya(&plain, 1.0, 1.0);
    let tensors = candle_core::safetensors::load(&plain, &Device::Cpu).unwrap();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), t.dims().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(k, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (k.clone(), view)
        })
        .collect();
    let meta = HashMap::from([("sshs_model_hash".to_string(), hash.to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), path).unwrap();
    std::fs::remove_file(plain).unwrap();
}

/// A1111's `TI hashes` and `Lora hashes` in the PNG parameters. The expected hashes were
/// computed outside kakusan, with Python's hashlib as A1111 does: `sha256sum` of the committed
/// embedding, and A1111's `addnet_hash_safetensors` (the SHA-256 after the header) of the
/// committed PEFT LoRA; a file with `sshs_model_hash` metadata is listed by that value.
#[test]
fn infotext_lists_embedding_and_lora_hashes() {
    let fixtures = common::fixtures();
    let loras = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures.join("lora-sd1-tiny.safetensors"),
        loras.path().join("my,style.safetensors"),
    )
    .unwrap();
    write_kohya_with_hash(
        &loras.path().join("hashed.safetensors"),
        "ABCDEF0123456789ff",
    );
    let opts = LoadOptions {
        lora_dir: Some(loras.path().to_path_buf()),
        embeddings_dir: Some(fixtures.join("ti-sd1-tiny")),
        ..LoadOptions::default()
    };
    let mut model = StableDiffusion::load(&fixture(), &opts).unwrap();
    let job = |prompt: &str, negative: &str| Job {
        prompt: prompt.into(),
        negative_prompt: negative.into(),
        steps: 2,
        width: 64,
        height: 64,
        ..Job::default()
    };
    let infotext = |model: &mut StableDiffusion, job: &Job| {
        model.prepare_job(job).unwrap();
        let generation = model.generate(job, &mut |_| {}).unwrap();
        assert_eq!(generation.images.len(), 1);
        kakusan_pipeline::save::parameters_for(model, job, &generation, 0).to_a1111_string()
    };
    let text = infotext(
        &mut model,
        &job("a red cat <lora:my,style:0.5> <lora:hashed:1>", "kksemb"),
    );
    assert!(
        text.contains(r#"TI hashes: "kksemb: ecfbc59105cd""#),
        "{text}"
    );
    assert!(
        text.contains(r#"Lora hashes: "mystyle: 111a734359dd, hashed: ABCDEF012345""#),
        "{text}"
    );
    // Read back as A1111 reads it.
    let read = kakusan_core::png_meta::parse_a1111(&text).unwrap();
    assert!(read
        .extra
        .contains(&("TI hashes".to_string(), "kksemb: ecfbc59105cd".to_string())));
    // Neither used: neither key.
    let text = infotext(&mut model, &job("a red cat", ""));
    assert!(
        !text.contains("TI hashes") && !text.contains("Lora hashes"),
        "{text}"
    );
}
