//! `UNetConfig`: the fields of a diffusers `unet/config.json`
//! (`UNet2DConditionModel`), with diffusers' defaults for absent fields. Options we do not
//! implement are kept so that [`crate::unet::UNetLayout`] can name them in its error.

use super::UNetError;
use serde::Deserialize;
use std::path::Path;

/// A value given once for every block or as a list with one entry per block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same value for every block.
    Same(T),
    /// One value per down block, in down-block order.
    Each(Vec<T>),
}

impl<T: Clone + std::fmt::Debug> PerBlock<T> {
    /// One value per block for `blocks` blocks; errors if a list has the wrong length.
    pub fn per_block(&self, blocks: usize, field: &str) -> Result<Vec<T>, UNetError> {
        match self {
            Self::Same(v) => Ok(vec![v.clone(); blocks]),
            Self::Each(list) if list.len() == blocks => Ok(list.clone()),
            Self::Each(list) => Err(UNetError::InvalidConfig(format!(
                "{field} has {} entries ({list:?}) but there are {blocks} down blocks",
                list.len()
            ))),
        }
    }
}

/// `transformer_layers_per_block`: an int, a list per block, or (SDXL refiners) a list of
/// lists per block, which we do not support.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TransformerLayers {
    /// Same number of transformer layers everywhere.
    Same(usize),
    /// One number per down block.
    Each(Vec<usize>),
    /// One list per block (one number per resnet); not supported.
    Nested(Vec<Vec<usize>>),
}

impl TransformerLayers {
    /// One count per block for `blocks` blocks; nested lists are not supported.
    pub fn per_block(&self, blocks: usize) -> Result<Vec<usize>, UNetError> {
        match self {
            Self::Same(v) => Ok(vec![*v; blocks]),
            Self::Each(list) => {
                PerBlock::Each(list.clone()).per_block(blocks, "transformer_layers_per_block")
            }
            Self::Nested(v) => Err(UNetError::Unsupported {
                option: "transformer_layers_per_block",
                value: format!("{v:?}"),
                note: "; per-resnet lists are not implemented",
            }),
        }
    }
}

/// `sample_size`: an int or `[height, width]` (informational only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    /// Square latent size.
    Square(usize),
    /// `[height, width]`.
    HeightWidth(Vec<usize>),
}

/// diffusers' `UNet2DConditionModel` config. Field names and defaults follow diffusers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct UNetConfig {
    pub sample_size: Option<SampleSize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub only_cross_attention: PerBlock<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: PerBlock<usize>,
    pub downsample_padding: usize,
    pub mid_block_scale_factor: f64,
    /// Ignored: dropout is not applied at inference.
    pub dropout: f64,
    pub act_fn: String,
    /// `None` means no output group norm (and no activation before `conv_out`).
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    pub transformer_layers_per_block: TransformerLayers,
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    pub encoder_hid_dim: Option<usize>,
    pub encoder_hid_dim_type: Option<String>,
    /// In SD configs this is really the number of heads (a diffusers naming quirk) unless
    /// `num_attention_heads` is set.
    pub attention_head_dim: Option<PerBlock<usize>>,
    pub num_attention_heads: Option<PerBlock<usize>>,
    pub dual_cross_attention: bool,
    pub use_linear_projection: bool,
    pub class_embed_type: Option<String>,
    pub addition_embed_type: Option<String>,
    pub addition_time_embed_dim: Option<usize>,
    pub num_class_embeds: Option<usize>,
    pub upcast_attention: bool,
    pub resnet_time_scale_shift: String,
    pub resnet_skip_time_act: bool,
    pub resnet_out_scale_factor: f64,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<usize>,
    pub time_embedding_act_fn: Option<String>,
    pub timestep_post_act: Option<String>,
    pub time_cond_proj_dim: Option<usize>,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub projection_class_embeddings_input_dim: Option<usize>,
    pub attention_type: String,
    pub class_embeddings_concat: bool,
    pub mid_block_only_cross_attention: Option<bool>,
    pub cross_attention_norm: Option<String>,
    pub addition_embed_type_num_heads: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            sample_size: None,
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: strings(&[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".to_string()),
            up_block_types: strings(&[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]),
            only_cross_attention: PerBlock::Same(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::Same(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            dropout: 0.0,
            act_fn: "silu".to_string(),
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: PerBlock::Same(1280),
            transformer_layers_per_block: TransformerLayers::Same(1),
            reverse_transformer_layers_per_block: None,
            encoder_hid_dim: None,
            encoder_hid_dim_type: None,
            attention_head_dim: Some(PerBlock::Same(8)),
            num_attention_heads: None,
            dual_cross_attention: false,
            use_linear_projection: false,
            class_embed_type: None,
            addition_embed_type: None,
            addition_time_embed_dim: None,
            num_class_embeds: None,
            upcast_attention: false,
            resnet_time_scale_shift: "default".to_string(),
            resnet_skip_time_act: false,
            resnet_out_scale_factor: 1.0,
            time_embedding_type: "positional".to_string(),
            time_embedding_dim: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            projection_class_embeddings_input_dim: None,
            attention_type: "default".to_string(),
            class_embeddings_concat: false,
            mid_block_only_cross_attention: None,
            cross_attention_norm: None,
            addition_embed_type_num_heads: 64,
        }
    }
}

impl UNetConfig {
    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, UNetError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads and parses a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, UNetError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| UNetError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_diffusers_defaults() {
        let c = UNetConfig::from_json("{}").unwrap();
        assert_eq!(c, UNetConfig::default());
        assert_eq!(c.block_out_channels, vec![320, 640, 1280, 1280]);
        assert_eq!(c.attention_head_dim, Some(PerBlock::Same(8)));
    }

    #[test]
    fn sd2_style_config_parses() {
        let text = r#"{
            "_class_name": "UNet2DConditionModel",
            "attention_head_dim": [5, 10, 20, 20],
            "cross_attention_dim": 1024,
            "layers_per_block": 2,
            "num_attention_heads": null,
            "use_linear_projection": true,
            "upcast_attention": true,
            "sample_size": 96,
            "class_embed_type": null,
            "mid_block_type": "UNetMidBlock2DCrossAttn"
        }"#;
        let c = UNetConfig::from_json(text).unwrap();
        assert_eq!(
            c.attention_head_dim,
            Some(PerBlock::Each(vec![5, 10, 20, 20]))
        );
        assert_eq!(c.cross_attention_dim, PerBlock::Same(1024));
        assert!(c.use_linear_projection && c.upcast_attention);
        assert_eq!(c.sample_size, Some(SampleSize::Square(96)));
        assert_eq!(c.num_attention_heads, None);
    }

    #[test]
    fn nested_transformer_layers_parse_and_per_block_length_is_checked() {
        let c =
            UNetConfig::from_json(r#"{"transformer_layers_per_block": [[1, 2], [3, 4]]}"#).unwrap();
        assert!(matches!(
            c.transformer_layers_per_block,
            TransformerLayers::Nested(_)
        ));
        let err = PerBlock::Each(vec![1usize, 2])
            .per_block(3, "layers_per_block")
            .unwrap_err();
        assert!(
            err.to_string().contains("layers_per_block has 2 entries"),
            "{err}"
        );
    }

    #[test]
    fn wrong_field_type_is_an_error_not_a_panic() {
        assert!(UNetConfig::from_json(r#"{"block_out_channels": "wide"}"#).is_err());
    }
}
