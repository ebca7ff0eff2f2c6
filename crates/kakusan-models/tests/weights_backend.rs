//! The mapped backend on small files written here: OpenCLIP's fused q/k/v rows, the
//! transposed text projection, 1x1-conv <-> linear reshapes in both directions, shape errors
//! and missing tensors as errors (never panics), dtype on request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
use kakusan_models::weights::names::{
    DiffusersNaming, DiffusersPart, LdmVaeNaming, OpenClipNaming,
};
use kakusan_models::weights::{MappedBackend, SafetensorsStore, WeightsError};

fn arange(n: usize, shape: &[usize]) -> Tensor {
    Tensor::arange(0f32, n as f32, &Device::Cpu)
        .unwrap()
        .reshape(shape)
        .unwrap()
}

fn save(path: &Path, tensors: &[(&str, Tensor)]) -> Arc<SafetensorsStore> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
    Arc::new(SafetensorsStore::open(path).unwrap())
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn open_clip_fused_attention_and_projection() {
    let dir = tempfile::tempdir().unwrap();
    let p = "cond_stage_model.model.";
    // Fused q; k; v of 2 rows each (rows need not be square for the split).
    let in_proj = arange(24, &[6, 4]).affine(1.0, 0.5).unwrap();
    let store = save(
        &dir.path().join("clip.safetensors"),
        &[
            (
                &format!("{p}transformer.resblocks.0.attn.in_proj_weight"),
                in_proj.clone(),
            ),
            (
                &format!("{p}transformer.resblocks.0.attn.in_proj_bias"),
                arange(6, &[6]),
            ),
            (&format!("{p}text_projection"), arange(6, &[2, 3])),
            (&format!("{p}positional_embedding"), arange(8, &[4, 2])),
        ],
    );
    let backend = MappedBackend::new(store, Arc::new(OpenClipNaming::new(p)), "text_encoder");
    let cpu = &Device::Cpu;
    for (i, which) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        let w = backend
            .load(
                &format!("text_model.encoder.layers.0.self_attn.{which}.weight"),
                Some(&[2, 4]),
                DType::F32,
                cpu,
            )
            .unwrap();
        assert_eq!(
            values(&w),
            values(&in_proj.narrow(0, 2 * i, 2).unwrap()),
            "{which}"
        );
        let b = backend
            .load(
                &format!("encoder.layers.0.self_attn.{which}.bias"),
                Some(&[2]),
                DType::F32,
                cpu,
            )
            .unwrap();
        assert_eq!(
            values(&b),
            vec![(2 * i) as f32, (2 * i + 1) as f32],
            "{which}"
        );
    }
    // text_projection [D, P] = [2, 3] is served as transformers' Linear weight [P, D] = [3, 2].
    let proj = backend
        .load("text_projection.weight", Some(&[3, 2]), DType::F32, cpu)
        .unwrap();
    assert_eq!(
        proj.to_vec2::<f32>().unwrap(),
        vec![vec![0.0, 3.0], vec![1.0, 4.0], vec![2.0, 5.0]]
    );
    // The bare positional_embedding tensor.
    let pos = backend
        .load(
            "text_model.embeddings.position_embedding.weight",
            Some(&[4, 2]),
            DType::F32,
            cpu,
        )
        .unwrap();
    assert_eq!(values(&pos), values(&arange(8, &[4, 2])));
    // Through a VarBuilder, as the CLIP model will ask.
    let vb = backend.clone().into_var_builder(DType::F16, cpu);
    let k = vb
        .pp("text_model.encoder.layers.0.self_attn.k_proj")
        .get((2, 4), "weight")
        .unwrap();
    assert_eq!(k.dtype(), DType::F16);
    assert!(vb.contains_tensor("text_model.encoder.layers.0.self_attn.v_proj.bias"));
    assert!(!vb.contains_tensor("text_model.encoder.layers.1.self_attn.v_proj.bias"));
}

#[test]
fn unit_dimensions_reshape_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    // LDM VAE attention stored as a 1x1 conv; diffusers asks for a linear.
    let conv = arange(16, &[4, 4, 1, 1]);
    let store = save(
        &dir.path().join("vae.safetensors"),
        &[(
            "first_stage_model.encoder.mid.attn_1.q.weight",
            conv.clone(),
        )],
    );
    let vae = MappedBackend::new(
        store,
        Arc::new(LdmVaeNaming::new(LdmVaeNaming::PREFIX, 4)),
        "vae",
    );
    let w = vae
        .load(
            "encoder.mid_block.attentions.0.to_q.weight",
            Some(&[4, 4]),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    assert_eq!(w.dims(), &[4, 4]);
    assert_eq!(values(&w), values(&conv));
    // Unchecked: as stored.
    let raw = vae
        .get_unchecked(
            "encoder.mid_block.attentions.0.to_q.weight",
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    assert_eq!(raw.dims(), &[4, 4, 1, 1]);

    // A linear in the file; a model built with conv projections asks for [C, C, 1, 1].
    let linear = arange(9, &[3, 3]);
    let store = save(
        &dir.path().join("unet.safetensors"),
        &[("down_blocks.0.attentions.0.proj_in.weight", linear.clone())],
    );
    let unet = MappedBackend::new(
        store,
        Arc::new(DiffusersNaming::new(DiffusersPart::Unet)),
        "unet",
    );
    let w = unet
        .load(
            "down_blocks.0.attentions.0.proj_in.weight",
            Some(&[3, 3, 1, 1]),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    assert_eq!(w.dims(), &[3, 3, 1, 1]);
    assert_eq!(values(&w), values(&linear));
}

#[test]
fn wrong_shapes_and_missing_tensors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unet.safetensors");
    let store = save(
        &path,
        &[("conv_in.weight", arange(8 * 4 * 9, &[8, 4, 3, 3]))],
    );
    let unet = MappedBackend::new(
        store,
        Arc::new(DiffusersNaming::new(DiffusersPart::Unet)),
        "unet",
    );

    let err = unet
        .load(
            "conv_in.weight",
            Some(&[8, 9, 3, 3]),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err();
    assert!(matches!(err, WeightsError::ShapeMismatch(_)), "{err}");
    let message = err.to_string();
    for part in [
        "conv_in.weight",
        "[8, 9, 3, 3]",
        "[8, 4, 3, 3]",
        "unet",
        &path.display().to_string(),
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    // The same through candle's VarBuilder: an Err, with our message.
    let vb = unet.clone().into_var_builder(DType::F32, &Device::Cpu);
    let err = vb
        .get((8, 9, 3, 3), "conv_in.weight")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[8, 9, 3, 3]") && err.contains("conv_in.weight"),
        "{err}"
    );

    let err = unet
        .load("conv_out.weight", None, DType::F32, &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, WeightsError::TensorNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("conv_out.weight") && err.to_string().contains("unet"),
        "{err}"
    );

    // A fused tensor whose rows do not split in three: an error, not a panic.
    let p = "cond_stage_model.model.";
    let store = save(
        &dir.path().join("clip.safetensors"),
        &[(
            &format!("{p}transformer.resblocks.0.attn.in_proj_bias"),
            arange(5, &[5]),
        )],
    );
    let clip = MappedBackend::new(store, Arc::new(OpenClipNaming::new(p)), "text_encoder");
    let err = clip
        .load(
            "text_model.encoder.layers.0.self_attn.q_proj.bias",
            None,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err();
    assert!(matches!(err, WeightsError::ShapeMismatch(_)), "{err}");
}
