//! The diffusers configuration files (`unet/config.json`, `vae/config.json`,
//! `text_encoder/config.json`, `scheduler/scheduler_config.json`) that a detected single-file
//! checkpoint corresponds to, as JSON values the model builders deserialise like a folder's
//! files. Values the weights cannot show are those of the family's reference diffusers
//! folders (stable-diffusion-v1-5, stable-diffusion-2-1): GroupNorm of 32 groups and eps 1e-5
//! (LDM hard-codes both), the scaled-linear betas 0.00085..0.012 over 1000 steps (LDM's
//! `linear_start/linear_end`), VAE scaling factor 0.18215.

use serde_json::{json, Value};

use super::detect::{Detected, Family, Prediction, TextEncoderKind};

/// One number when every level has the same value (diffusers' shorthand), else the list.
fn int_if_uniform(values: &[usize]) -> Value {
    match values.split_first() {
        Some((first, rest)) if rest.iter().all(|v| v == first) => json!(first),
        _ => json!(values),
    }
}

impl Detected {
    /// The pixel size the model was trained at (768 for SD 2.x v-prediction, else 512).
    pub fn native_resolution(&self) -> usize {
        match (self.family, self.prediction) {
            (Family::Sd2, Prediction::VPrediction) => 768,
            _ => 512,
        }
    }

    fn downscale(&self) -> usize {
        1 << self.vae.block_out_channels.len().saturating_sub(1)
    }

    /// The UNet's diffusers `config.json`.
    pub fn unet_config(&self) -> Value {
        let u = &self.unet;
        let layout = &u.layout;
        let n = layout.levels();
        let down_block_types: Vec<&str> = layout
            .down_block_has_attention
            .iter()
            .map(|&a| {
                if a {
                    "CrossAttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
            })
            .collect();
        let up_block_types: Vec<&str> = (0..n)
            .map(|b| {
                if layout.up_block_has_attention(b) {
                    "CrossAttnUpBlock2D"
                } else {
                    "UpBlock2D"
                }
            })
            .collect();
        // SD 1.x folders say `8`; SD 2.x folders list the heads per level.
        let attention_head_dim = match self.family {
            Family::Sd1 => int_if_uniform(&u.attention_heads),
            Family::Sd2 => json!(u.attention_heads),
        };
        let layers_per_block = int_if_uniform(&layout.layers_per_block);
        let transformer_layers = int_if_uniform(&u.transformer_layers_per_block);
        json!({
            "_class_name": "UNet2DConditionModel",
            "act_fn": "silu",
            "attention_head_dim": attention_head_dim,
            "block_out_channels": layout.block_out_channels,
            "center_input_sample": false,
            "cross_attention_dim": u.cross_attention_dim,
            "down_block_types": down_block_types,
            "downsample_padding": 1,
            "dual_cross_attention": false,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "in_channels": u.in_channels,
            "layers_per_block": layers_per_block,
            "mid_block_scale_factor": 1,
            "mid_block_type": if u.mid_block_has_attention { "UNetMidBlock2DCrossAttn" } else { "UNetMidBlock2D" },
            "norm_eps": 1e-5,
            "norm_num_groups": 32,
            "only_cross_attention": false,
            "out_channels": u.out_channels,
            "sample_size": self.native_resolution() / self.downscale(),
            "transformer_layers_per_block": transformer_layers,
            "up_block_types": up_block_types,
            "upcast_attention": false,
            "use_linear_projection": u.use_linear_projection,
        })
    }

    /// The autoencoder's diffusers `config.json`.
    pub fn vae_config(&self) -> Value {
        let v = &self.vae;
        let n = v.block_out_channels.len();
        json!({
            "_class_name": "AutoencoderKL",
            "act_fn": "silu",
            "block_out_channels": v.block_out_channels,
            "down_block_types": vec!["DownEncoderBlock2D"; n],
            "in_channels": v.in_channels,
            "latent_channels": v.latent_channels,
            "layers_per_block": v.layers_per_block,
            "norm_num_groups": 32,
            "out_channels": v.out_channels,
            "sample_size": self.native_resolution(),
            "scaling_factor": 0.18215,
            "up_block_types": vec!["UpDecoderBlock2D"; n],
        })
    }

    /// The text encoder's transformers `config.json` (with [`super::TextDetected::layers_used`]
    /// layers: see the module docs of `detect`).
    pub fn text_encoder_config(&self) -> Value {
        let t = &self.text;
        let hidden_act = match t.kind {
            TextEncoderKind::Clip => "quick_gelu",
            TextEncoderKind::OpenClip => "gelu",
        };
        json!({
            "architectures": ["CLIPTextModel"],
            "model_type": "clip_text_model",
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "dropout": 0.0,
            "eos_token_id": 2,
            "hidden_act": hidden_act,
            "hidden_size": t.hidden_size,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": t.intermediate_size,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": t.max_position_embeddings,
            "num_attention_heads": t.num_attention_heads,
            "num_hidden_layers": t.layers_used,
            "pad_token_id": 1,
            "projection_dim": t.projection_dim,
            "vocab_size": t.vocab_size,
        })
    }

    /// The scheduler's diffusers `scheduler_config.json`: the training noise schedule and the
    /// prediction type (the scheduler class is the one of the family's reference folder).
    pub fn scheduler_config(&self) -> Value {
        let class = match self.family {
            Family::Sd1 => "PNDMScheduler",
            Family::Sd2 => "DDIMScheduler",
        };
        json!({
            "_class_name": class,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "clip_sample": false,
            "num_train_timesteps": 1000,
            "prediction_type": self.prediction.diffusers_name(),
            "rescale_betas_zero_snr": self.zero_terminal_snr,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "trained_betas": null,
        })
    }
}
