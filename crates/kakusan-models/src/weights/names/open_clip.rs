//! The OpenCLIP text encoder of SD 2.x LDM checkpoints (`cond_stage_model.model.*`) seen
//! with transformers' CLIP names: `token_embedding`, the bare `positional_embedding` tensor,
//! `transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`,
//! `ln_final`, `text_projection`. The fused `in_proj_weight` `[3D, D]` / `in_proj_bias` `[3D]`
//! hold q, k, v in that order.

use super::{index, join, text_relative, KeyNaming, Source, Transform};

/// The SD 2.x text encoder of an LDM single-file checkpoint.
#[derive(Debug, Clone)]
pub struct OpenClipNaming {
    prefix: String,
}

impl OpenClipNaming {
    /// The usual prefix of the text encoder in SD 2.x LDM checkpoints.
    pub const PREFIX: &'static str = "cond_stage_model.model.";

    /// A naming for keys `prefix` + OpenCLIP name.
    pub fn new(prefix: impl Into<String>) -> Self {
        OpenClipNaming {
            prefix: prefix.into(),
        }
    }

    /// The OpenCLIP key (without prefix) and transform of transformers tensor `name`.
    pub fn open_clip_source(name: &str) -> Option<Source> {
        let relative = text_relative(name);
        let parts: Vec<&str> = relative.split('.').collect();
        let chunk = |index| Transform::Chunk { index, of: 3 };
        Some(match parts.as_slice() {
            ["embeddings", "token_embedding", "weight"] => Source::key("token_embedding.weight"),
            ["embeddings", "position_embedding", "weight"] => Source::key("positional_embedding"),
            ["final_layer_norm", rest @ ..] if !rest.is_empty() => {
                Source::key(join("ln_final", rest))
            }
            ["text_projection", "weight"] => Source::with("text_projection", Transform::Transpose),
            ["encoder", "layers", n, tail @ ..] => {
                let n = index(n)?;
                let block = format!("transformer.resblocks.{n}");
                match tail {
                    ["layer_norm1", rest @ ..] if !rest.is_empty() => {
                        Source::key(join(&format!("{block}.ln_1"), rest))
                    }
                    ["layer_norm2", rest @ ..] if !rest.is_empty() => {
                        Source::key(join(&format!("{block}.ln_2"), rest))
                    }
                    ["mlp", "fc1", rest @ ..] if !rest.is_empty() => {
                        Source::key(join(&format!("{block}.mlp.c_fc"), rest))
                    }
                    ["mlp", "fc2", rest @ ..] if !rest.is_empty() => {
                        Source::key(join(&format!("{block}.mlp.c_proj"), rest))
                    }
                    ["self_attn", "out_proj", rest @ ..] if !rest.is_empty() => {
                        Source::key(join(&format!("{block}.attn.out_proj"), rest))
                    }
                    ["self_attn", projection, which @ ("weight" | "bias")] => {
                        let position = match *projection {
                            "q_proj" => 0,
                            "k_proj" => 1,
                            "v_proj" => 2,
                            _ => return None,
                        };
                        Source::with(format!("{block}.attn.in_proj_{which}"), chunk(position))
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

impl KeyNaming for OpenClipNaming {
    fn candidates(&self, name: &str) -> Vec<Source> {
        Self::open_clip_source(name)
            .map(|s| {
                vec![Source {
                    key: format!("{}{}", self.prefix, s.key),
                    transform: s.transform,
                }]
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pairs() {
        let chunk = |index| Transform::Chunk { index, of: 3 };
        let pairs = [
            (
                "text_model.embeddings.token_embedding.weight",
                Source::key("token_embedding.weight"),
            ),
            (
                "text_model.embeddings.position_embedding.weight",
                Source::key("positional_embedding"),
            ),
            (
                "embeddings.position_embedding.weight",
                Source::key("positional_embedding"),
            ),
            (
                "text_model.final_layer_norm.bias",
                Source::key("ln_final.bias"),
            ),
            (
                "text_model.encoder.layers.0.layer_norm1.weight",
                Source::key("transformer.resblocks.0.ln_1.weight"),
            ),
            (
                "text_model.encoder.layers.22.layer_norm2.bias",
                Source::key("transformer.resblocks.22.ln_2.bias"),
            ),
            (
                "text_model.encoder.layers.5.self_attn.q_proj.weight",
                Source::with("transformer.resblocks.5.attn.in_proj_weight", chunk(0)),
            ),
            (
                "text_model.encoder.layers.5.self_attn.k_proj.bias",
                Source::with("transformer.resblocks.5.attn.in_proj_bias", chunk(1)),
            ),
            (
                "encoder.layers.5.self_attn.v_proj.weight",
                Source::with("transformer.resblocks.5.attn.in_proj_weight", chunk(2)),
            ),
            (
                "text_model.encoder.layers.1.self_attn.out_proj.weight",
                Source::key("transformer.resblocks.1.attn.out_proj.weight"),
            ),
            (
                "text_model.encoder.layers.1.mlp.fc1.bias",
                Source::key("transformer.resblocks.1.mlp.c_fc.bias"),
            ),
            (
                "text_model.encoder.layers.1.mlp.fc2.weight",
                Source::key("transformer.resblocks.1.mlp.c_proj.weight"),
            ),
            (
                "text_projection.weight",
                Source::with("text_projection", Transform::Transpose),
            ),
        ];
        for (name, source) in pairs {
            assert_eq!(
                OpenClipNaming::open_clip_source(name),
                Some(source),
                "{name}"
            );
        }
        for name in [
            "text_model.encoder.layers.1.self_attn.o_proj.weight",
            "text_model.encoder.layers.x.mlp.fc1.weight",
            "text_model.embeddings.position_ids",
            "logit_scale",
        ] {
            assert_eq!(OpenClipNaming::open_clip_source(name), None, "{name}");
        }
        let naming = OpenClipNaming::new(OpenClipNaming::PREFIX);
        assert_eq!(
            naming.candidates("text_model.final_layer_norm.weight"),
            vec![Source::key("cond_stage_model.model.ln_final.weight")]
        );
    }
}
