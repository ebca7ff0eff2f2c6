//! Detection on real-sized SD 1.x / 2.x "skeleton" checkpoints written here: the LDM keys
//! detection reads, with the real shapes where it reads them (small stand-ins elsewhere),
//! zeros except the tensor ComfyUI's v-prediction statistic uses. Also the families that are
//! refused with a clear message.

use std::path::Path;

use kakusan_models::weights::{
    Component, Family, ModelSource, OpenOptions, Prediction, PredictionEvidence, TextEncoderKind,
    WeightsError,
};
use serde_json::json;

/// One tensor: name, shape, values (zeros when `None`); stored as F16.
type Spec = (String, Vec<usize>, Option<Vec<f32>>);

fn write(path: &Path, tensors: &[Spec], metadata: Option<serde_json::Value>) {
    let mut header = serde_json::Map::new();
    if let Some(m) = metadata {
        header.insert("__metadata__".to_string(), m);
    }
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        for i in 0..n {
            let v = values.as_ref().map_or(0.0, |v| v[i]);
            data.extend(half::f16::from_f32(v).to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).unwrap();
}

#[derive(Clone)]
struct Skeleton {
    channels: Vec<usize>,
    layers: usize,
    attention: Vec<bool>,
    context: usize,
    linear_projection: bool,
    in_channels: usize,
    /// `None`: no text encoder.
    text: Option<(TextEncoderKind, usize)>,
    /// Standard deviation of `output_blocks.11.1.transformer_blocks.0.norm1.bias`.
    norm1_std: f32,
    extra: Vec<Spec>,
}

impl Skeleton {
    fn sd1() -> Self {
        Skeleton {
            channels: vec![320, 640, 1280, 1280],
            layers: 2,
            attention: vec![true, true, true, false],
            context: 768,
            linear_projection: false,
            in_channels: 4,
            text: Some((TextEncoderKind::Clip, 12)),
            norm1_std: 0.02,
            extra: vec![],
        }
    }

    fn sd2(norm1_std: f32) -> Self {
        Skeleton {
            context: 1024,
            linear_projection: true,
            text: Some((TextEncoderKind::OpenClip, 24)),
            norm1_std,
            ..Self::sd1()
        }
    }

    fn tensors(&self) -> Vec<Spec> {
        let m = "model.diffusion_model.";
        let z = |name: String, shape: Vec<usize>| -> Spec { (name, shape, None) };
        let c0 = self.channels[0];
        let proj = if self.linear_projection {
            vec![1, 1]
        } else {
            vec![1, 1, 1, 1]
        };
        let mut t = vec![
            z(
                format!("{m}input_blocks.0.0.weight"),
                vec![c0, self.in_channels, 3, 3],
            ),
            z(format!("{m}time_embed.0.weight"), vec![4, c0]),
            z(format!("{m}out.2.weight"), vec![4, c0, 3, 3]),
            z(format!("{m}middle_block.1.proj_in.weight"), proj.clone()),
            z(
                format!("{m}middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
                vec![1, self.context],
            ),
        ];
        let n = self.channels.len();
        let mut i = 1;
        for l in 0..n {
            let c = self.channels[l];
            for _ in 0..self.layers {
                t.push(z(
                    format!("{m}input_blocks.{i}.0.in_layers.0.weight"),
                    vec![c],
                ));
                t.push(z(
                    format!("{m}input_blocks.{i}.0.out_layers.3.weight"),
                    vec![c],
                ));
                if self.attention[l] {
                    t.push(z(
                        format!("{m}input_blocks.{i}.1.proj_in.weight"),
                        proj.clone(),
                    ));
                    t.push(z(
                        format!("{m}input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight"),
                        vec![1, self.context],
                    ));
                }
                i += 1;
            }
            if l + 1 < n {
                t.push(z(format!("{m}input_blocks.{i}.0.op.weight"), vec![c]));
                i += 1;
            }
        }
        let mut k = 0;
        for level in (0..n).rev() {
            let c = self.channels[level];
            for _ in 0..=self.layers {
                t.push(z(
                    format!("{m}output_blocks.{k}.0.in_layers.0.weight"),
                    vec![c],
                ));
                if self.attention[level] {
                    let name = format!("{m}output_blocks.{k}.1.transformer_blocks.0.norm1.bias");
                    // Alternating +-std: population standard deviation exactly `std` (in f16).
                    let values = (0..c)
                        .map(|j| {
                            if j % 2 == 0 {
                                self.norm1_std
                            } else {
                                -self.norm1_std
                            }
                        })
                        .collect();
                    t.push((name, vec![c], Some(values)));
                }
                k += 1;
            }
        }
        let f = "first_stage_model.";
        let vae_channels = [128, 256, 512, 512];
        t.push(z(format!("{f}encoder.conv_in.weight"), vec![128, 3, 3, 3]));
        for (l, c) in vae_channels.iter().enumerate() {
            for j in 0..2 {
                t.push(z(
                    format!("{f}encoder.down.{l}.block.{j}.conv1.weight"),
                    vec![*c],
                ));
            }
        }
        t.push(z(format!("{f}decoder.conv_in.weight"), vec![512, 4, 3, 3]));
        t.push(z(format!("{f}decoder.conv_out.weight"), vec![3, 128, 3, 3]));
        match self.text {
            Some((TextEncoderKind::Clip, layers)) => {
                let p = "cond_stage_model.transformer.text_model.";
                t.push(z(
                    format!("{p}embeddings.token_embedding.weight"),
                    vec![10, 768],
                ));
                t.push(z(
                    format!("{p}embeddings.position_embedding.weight"),
                    vec![77, 768],
                ));
                for layer in 0..layers {
                    t.push(z(
                        format!("{p}encoder.layers.{layer}.mlp.fc1.weight"),
                        vec![3072],
                    ));
                }
            }
            Some((TextEncoderKind::OpenClip, layers)) => {
                let p = "cond_stage_model.model.";
                t.push(z(format!("{p}token_embedding.weight"), vec![10, 1024]));
                t.push(z(format!("{p}positional_embedding"), vec![77, 1024]));
                t.push(z(format!("{p}text_projection"), vec![1, 1024]));
                for layer in 0..layers {
                    t.push(z(
                        format!("{p}transformer.resblocks.{layer}.mlp.c_fc.weight"),
                        vec![4096],
                    ));
                }
            }
            None => {}
        }
        t.extend(self.extra.iter().cloned());
        t
    }

    fn open(
        &self,
        dir: &Path,
        metadata: Option<serde_json::Value>,
        options: &OpenOptions,
    ) -> Result<ModelSource, WeightsError> {
        let path = dir.join("model.safetensors");
        write(&path, &self.tensors(), metadata);
        ModelSource::open_with(path, options)
    }
}

fn open(skeleton: &Skeleton) -> ModelSource {
    let dir = tempfile::tempdir().unwrap();
    skeleton
        .open(dir.path(), None, &OpenOptions::default())
        .unwrap()
}

#[test]
fn sd1_layout_and_configs() {
    let model = open(&Skeleton::sd1());
    let d = model.detected().unwrap();
    assert_eq!(d.family, Family::Sd1);
    assert_eq!(d.prediction, Prediction::Epsilon);
    assert_eq!(d.prediction_evidence, PredictionEvidence::FamilyRule);
    let unet = model.config(Component::Unet);
    assert_eq!(unet["block_out_channels"], json!([320, 640, 1280, 1280]));
    assert_eq!(unet["layers_per_block"], json!(2));
    assert_eq!(unet["attention_head_dim"], json!(8));
    assert_eq!(unet["cross_attention_dim"], json!(768));
    assert_eq!(unet["use_linear_projection"], json!(false));
    assert_eq!(
        unet["down_block_types"],
        json!([
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D"
        ])
    );
    assert_eq!(
        unet["up_block_types"],
        json!([
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D"
        ])
    );
    assert_eq!(unet["sample_size"], json!(64));
    assert_eq!(unet["in_channels"], json!(4));
    let vae = model.config(Component::Vae);
    assert_eq!(vae["block_out_channels"], json!([128, 256, 512, 512]));
    assert_eq!(vae["layers_per_block"], json!(2));
    assert_eq!(vae["latent_channels"], json!(4));
    assert_eq!(vae["scaling_factor"], json!(0.18215));
    let text = model.config(Component::TextEncoder);
    assert_eq!(text["num_hidden_layers"], json!(12));
    assert_eq!(text["num_attention_heads"], json!(12));
    assert_eq!(text["hidden_size"], json!(768));
    assert_eq!(text["intermediate_size"], json!(3072));
    assert_eq!(text["hidden_act"], json!("quick_gelu"));
    let scheduler = model.scheduler_config();
    assert_eq!(scheduler["prediction_type"], json!("epsilon"));
    assert_eq!(scheduler["beta_schedule"], json!("scaled_linear"));
    assert_eq!(scheduler["rescale_betas_zero_snr"], json!(false));
}

#[test]
fn sd2_v_by_weight_statistic_and_penultimate_layer() {
    let model = open(&Skeleton::sd2(0.2));
    let d = model.detected().unwrap();
    assert_eq!(d.family, Family::Sd2);
    assert_eq!(d.prediction, Prediction::VPrediction);
    match d.prediction_evidence {
        PredictionEvidence::WeightStatistic { std } => assert!((std - 0.2).abs() < 1e-3, "{std}"),
        other => panic!("{other:?}"),
    }
    let unet = model.config(Component::Unet);
    assert_eq!(unet["attention_head_dim"], json!([5, 10, 20, 20]));
    assert_eq!(unet["use_linear_projection"], json!(true));
    assert_eq!(unet["cross_attention_dim"], json!(1024));
    assert_eq!(unet["sample_size"], json!(96));
    // 24 OpenCLIP layers in the file, 23 in the model: penultimate, once.
    assert_eq!(d.text.layers_in_file, 24);
    let text = model.config(Component::TextEncoder);
    assert_eq!(text["num_hidden_layers"], json!(23));
    assert_eq!(text["num_attention_heads"], json!(16));
    assert_eq!(text["intermediate_size"], json!(4096));
    assert_eq!(text["hidden_act"], json!("gelu"));
    assert_eq!(text["projection_dim"], json!(1024));
    assert_eq!(
        model.scheduler_config()["prediction_type"],
        json!("v_prediction")
    );
    assert_eq!(model.prediction(), Prediction::VPrediction);
}

#[test]
fn sd2_epsilon_by_weight_statistic() {
    let model = open(&Skeleton::sd2(0.05));
    let d = model.detected().unwrap();
    assert_eq!(d.prediction, Prediction::Epsilon);
    assert!(matches!(
        d.prediction_evidence,
        PredictionEvidence::WeightStatistic { .. }
    ));
    assert_eq!(model.config(Component::Unet)["sample_size"], json!(64));
}

#[test]
fn prediction_markers_override_the_statistic() {
    // A `v_pred` key (written by merge tools for v models).
    let mut s = Skeleton::sd1();
    s.extra.push(("v_pred".to_string(), vec![], None));
    let d = open(&s).detected().unwrap().clone();
    assert_eq!(
        (d.prediction, d.prediction_evidence),
        (Prediction::VPrediction, PredictionEvidence::VPredKey)
    );

    // The file's modelspec metadata.
    let dir = tempfile::tempdir().unwrap();
    let model = Skeleton::sd2(0.2)
        .open(
            dir.path(),
            Some(json!({"modelspec.prediction_type": "epsilon"})),
            &OpenOptions::default(),
        )
        .unwrap();
    let d = model.detected().unwrap();
    assert_eq!(
        (d.prediction, d.prediction_evidence),
        (Prediction::Epsilon, PredictionEvidence::Metadata)
    );

    // The caller's word beats everything.
    let model = Skeleton::sd2(0.2)
        .open(
            dir.path(),
            None,
            &OpenOptions {
                prediction: Some(Prediction::Epsilon),
                ..OpenOptions::default()
            },
        )
        .unwrap();
    assert_eq!(model.prediction(), Prediction::Epsilon);

    // SD2 inpainting (9 input channels) is epsilon, whatever the statistic says.
    let mut s = Skeleton::sd2(0.2);
    s.in_channels = 9;
    let model = open(&s);
    assert_eq!(model.prediction(), Prediction::Epsilon);
    assert_eq!(model.config(Component::Unet)["in_channels"], json!(9));

    // Zero-terminal-SNR marker.
    let mut s = Skeleton::sd2(0.2);
    s.extra.push(("ztsnr".to_string(), vec![], None));
    assert_eq!(
        open(&s).scheduler_config()["rescale_betas_zero_snr"],
        json!(true)
    );
}

#[test]
fn openclip_cut_to_23_layers_is_used_as_stored() {
    let mut s = Skeleton::sd2(0.2);
    s.text = Some((TextEncoderKind::OpenClip, 23));
    let model = open(&s);
    assert_eq!(model.detected().unwrap().text.layers_used, 23);
    assert_eq!(
        model.config(Component::TextEncoder)["num_hidden_layers"],
        json!(23)
    );
}

fn open_err(tensors: &[Spec]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    write(&path, tensors, None);
    let err = ModelSource::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    message
}

#[test]
fn other_families_are_refused_clearly() {
    let mut sdxl = Skeleton::sd1().tensors();
    sdxl.push((
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight".into(),
        vec![1, 768],
        None,
    ));
    let m = open_err(&sdxl);
    assert!(
        m.contains("Stable Diffusion XL") && m.contains("not support"),
        "{m}"
    );

    let m = open_err(&[(
        "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale".into(),
        vec![1],
        None,
    )]);
    assert!(m.contains("Flux"), "{m}");

    let m = open_err(&[(
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight".into(),
        vec![1],
        None,
    )]);
    assert!(m.contains("LoRA"), "{m}");

    let m = open_err(&[
        ("conv_in.weight".into(), vec![1], None),
        ("down_blocks.0.resnets.0.conv1.weight".into(), vec![1], None),
    ]);
    assert!(m.contains("diffusers folder"), "{m}");

    let m = open_err(&[]);
    assert!(m.contains("no UNet"), "{m}");

    let mut no_text = Skeleton::sd1();
    no_text.text = None;
    let m = open_err(&no_text.tensors());
    assert!(m.contains("no text encoder"), "{m}");

    // A 768-wide text encoder with a UNet attending to 1024-wide embeddings.
    let mut mixed = Skeleton::sd1();
    mixed.context = 1024;
    let m = open_err(&mixed.tensors());
    assert!(m.contains("1024") && m.contains("768"), "{m}");
}
