//! `VaeConfig`: the fields of a diffusers `vae/config.json` (`AutoencoderKL`), with
//! diffusers' defaults for absent fields, and the checks that it describes a network we can
//! build.

use super::VaeError;
use crate::nn::Activation;
use crate::unet::SampleSize;
use serde::Deserialize;
use std::path::Path;

/// diffusers' `AutoencoderKL` config. Field names and defaults follow diffusers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    pub sample_size: Option<SampleSize>,
    /// Latents are multiplied by this after encoding (the caller's job).
    pub scaling_factor: f64,
    /// Subtracted before scaling by some newer models (the caller's job).
    pub shift_factor: Option<f64>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
    /// Ignored: a hint to run the VAE in f32.
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".to_string()],
            up_block_types: vec!["UpDecoderBlock2D".to_string()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".to_string(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: Some(SampleSize::Square(32)),
            scaling_factor: 0.18215,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl VaeConfig {
    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, VaeError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads and parses a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VaeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| VaeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Checks the config and resolves the activation.
    pub(crate) fn validate(&self) -> Result<Activation, VaeError> {
        let act = Activation::from_name(&self.act_fn).map_err(|_| VaeError::Unsupported {
            option: "act_fn",
            value: format!("{:?}", self.act_fn),
            note: "; implemented: silu, swish, gelu, mish, relu",
        })?;
        let n = self.block_out_channels.len();
        if n == 0 {
            return Err(VaeError::InvalidConfig(
                "block_out_channels is empty".into(),
            ));
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(VaeError::InvalidConfig(format!(
                "{n} block_out_channels but {} down_block_types and {} up_block_types",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        for kind in &self.down_block_types {
            if kind != "DownEncoderBlock2D" {
                return Err(VaeError::Unsupported {
                    option: "down_block_types",
                    value: format!("{kind:?}"),
                    note: "; implemented: DownEncoderBlock2D",
                });
            }
        }
        for kind in &self.up_block_types {
            if kind != "UpDecoderBlock2D" {
                return Err(VaeError::Unsupported {
                    option: "up_block_types",
                    value: format!("{kind:?}"),
                    note: "; implemented: UpDecoderBlock2D",
                });
            }
        }
        let g = self.norm_num_groups;
        for &c in &self.block_out_channels {
            if g == 0 || !c.is_multiple_of(g) {
                return Err(VaeError::InvalidConfig(format!(
                    "norm_num_groups {g} does not divide block channels {c}"
                )));
            }
        }
        Ok(act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_vae_config_parses_with_defaults() {
        let text = r#"{
            "_class_name": "AutoencoderKL",
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "layers_per_block": 2,
            "sample_size": 512
        }"#;
        let c = VaeConfig::from_json(text).unwrap();
        assert_eq!(c.scaling_factor, 0.18215);
        assert_eq!(c.latent_channels, 4);
        assert!(c.mid_block_add_attention && c.use_quant_conv);
        assert_eq!(c.validate().unwrap(), Activation::Silu);
    }

    #[test]
    fn unsupported_block_is_named() {
        let c = VaeConfig {
            up_block_types: vec!["AttnUpDecoderBlock2D".into()],
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("AttnUpDecoderBlock2D"), "{err}");
    }
}
