//! The text encoder's configuration, read from a diffusers `text_encoder/config.json`
//! (transformers' `CLIPTextConfig`), with transformers' defaults for absent fields.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::TextModelError;

/// The activation of the encoder MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClipActivation {
    /// `x * sigmoid(1.702 x)`: OpenAI CLIP (SD 1.x).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU with erf, as `torch.nn.functional.gelu`: OpenCLIP (SD 2.x).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new")]
    GeluTanh,
}

/// Configuration of a CLIP text transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
    /// Width of the text projection (used by CLIP's contrastive head, not by SD).
    pub projection_dim: Option<usize>,
}

impl Default for ClipTextConfig {
    /// transformers' `CLIPTextConfig()` defaults (ViT-B/32's text tower).
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
            projection_dim: Some(512),
        }
    }
}

impl ClipTextConfig {
    /// Parses a `config.json` text.
    pub fn from_json_str(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Reads a `config.json` file (e.g. `text_encoder/config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TextModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TextModelError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_json_str(&text).map_err(|e| TextModelError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), TextModelError> {
        let bad = |m: String| Err(TextModelError::InvalidConfig(m));
        if self.num_hidden_layers == 0 {
            return bad("num_hidden_layers is 0".into());
        }
        if self.num_attention_heads == 0
            || self.hidden_size / self.num_attention_heads * self.num_attention_heads
                != self.hidden_size
        {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.max_position_embeddings == 0 || self.vocab_size == 0 {
            return bad("vocab_size and max_position_embeddings must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sd1_style_config_and_fills_defaults() {
        let json = r#"{
            "architectures": ["CLIPTextModel"],
            "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
            "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768,
            "torch_dtype": "float32", "transformers_version": "5.24.0"
        }"#;
        let cfg = ClipTextConfig::from_json_str(json).unwrap();
        assert_eq!(cfg.hidden_size, 768);
        assert_eq!(cfg.head_dim(), 64);
        assert_eq!(cfg.vocab_size, 49408);
        assert_eq!(cfg.max_position_embeddings, 77);
        assert_eq!(cfg.layer_norm_eps, 1e-5);
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn activations() {
        let parse = |a: &str| {
            ClipTextConfig::from_json_str(&format!(r#"{{"hidden_act": "{a}"}}"#))
                .map(|c| c.hidden_act)
        };
        assert_eq!(parse("gelu").unwrap(), ClipActivation::Gelu);
        assert_eq!(parse("quick_gelu").unwrap(), ClipActivation::QuickGelu);
        assert_eq!(parse("gelu_new").unwrap(), ClipActivation::GeluTanh);
        assert!(parse("relu").is_err());
    }

    #[test]
    fn validate_rejects_bad_heads() {
        let cfg = ClipTextConfig {
            hidden_size: 30,
            num_attention_heads: 4,
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(TextModelError::InvalidConfig(_))
        ));
    }
}
