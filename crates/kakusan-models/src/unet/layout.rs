//! `UNetLayout`: the shape of every block, derived from a [`UNetConfig`] the way diffusers'
//! `UNet2DConditionModel.__init__` derives it (per-block lists, reversed lists for the up
//! path, the `attention_head_dim`-means-heads quirk), after checking that the config asks
//! only for what we implement and that its numbers fit together.

use super::{UNetConfig, UNetError};
use crate::nn::{Activation, ResnetConfig, Transformer2DConfig};

/// Options shared by the residual blocks of one part of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetSettings {
    /// Width of the timestep embedding.
    pub temb_channels: usize,
    /// Group-norm groups.
    pub groups: usize,
    /// Group-norm epsilon.
    pub eps: f64,
    /// Non-linearity.
    pub act: Activation,
    /// Output divisor.
    pub output_scale_factor: f64,
}

impl ResnetSettings {
    /// The residual block `in_channels -> out_channels`.
    pub fn block(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: self.eps,
            act: self.act,
            output_scale_factor: self.output_scale_factor,
        }
    }
}

/// The spatial transformers of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossAttentionSettings {
    /// Attention heads (head width = channels / heads).
    pub heads: usize,
    /// `transformer_blocks` per transformer.
    pub transformer_layers: usize,
    /// Width of the text context.
    pub context_dim: usize,
    /// Groups of the transformer's input norm.
    pub norm_groups: usize,
    /// Linear instead of 1x1-conv projections.
    pub use_linear_projection: bool,
    /// Self-attention attends to the context too.
    pub only_cross_attention: bool,
    /// f32 scores for half-precision runs.
    pub upcast_attention: bool,
}

impl CrossAttentionSettings {
    /// The transformer over a feature map with `channels` channels.
    pub fn transformer(&self, channels: usize) -> Transformer2DConfig {
        Transformer2DConfig {
            in_channels: channels,
            heads: self.heads,
            head_dim: channels / self.heads,
            layers: self.transformer_layers,
            context_dim: self.context_dim,
            norm_groups: self.norm_groups,
            use_linear_projection: self.use_linear_projection,
            only_cross_attention: self.only_cross_attention,
            upcast_attention: self.upcast_attention,
        }
    }
}

/// One down block (`DownBlock2D` or, with attention, `CrossAttnDownBlock2D`).
#[derive(Debug, Clone, PartialEq)]
pub struct DownBlockLayout {
    /// Channels coming in.
    pub in_channels: usize,
    /// Channels of every resnet output.
    pub out_channels: usize,
    /// Number of resnets (`layers_per_block`).
    pub resnets: usize,
    /// Ends with a `Downsample2D` (all but the last block).
    pub downsample: bool,
    /// Transformers after each resnet, for cross-attention blocks.
    pub cross_attention: Option<CrossAttentionSettings>,
}

/// The mid block (`UNetMidBlock2DCrossAttn`: resnet, transformer, resnet).
#[derive(Debug, Clone, PartialEq)]
pub struct MidBlockLayout {
    /// Channels throughout.
    pub channels: usize,
    /// Its transformer.
    pub cross_attention: CrossAttentionSettings,
    /// Its resnets (with `mid_block_scale_factor`).
    pub resnet: ResnetSettings,
}

/// One up block (`UpBlock2D` or, with attention, `CrossAttnUpBlock2D`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpBlockLayout {
    /// Channels of the down block this one mirrors the input of.
    pub in_channels: usize,
    /// Channels of every resnet output.
    pub out_channels: usize,
    /// Channels coming from the previous up block (or the mid block).
    pub prev_output_channels: usize,
    /// Number of resnets (`layers_per_block + 1`), each eating one skip connection.
    pub resnets: usize,
    /// Ends with an `Upsample2D` (all but the last block).
    pub upsample: bool,
    /// Transformers after each resnet, for cross-attention blocks.
    pub cross_attention: Option<CrossAttentionSettings>,
}

/// Every number needed to build the UNet.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetLayout {
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out.
    pub out_channels: usize,
    /// Map the input from [0, 1] to [-1, 1] first.
    pub center_input_sample: bool,
    /// Width of the sinusoidal timestep features (`block_out_channels[0]`).
    pub timestep_features: usize,
    /// Cosines first in the sinusoidal features.
    pub flip_sin_to_cos: bool,
    /// `freq_shift`.
    pub freq_shift: f64,
    /// Width of the timestep embedding.
    pub time_embed_dim: usize,
    /// Activation of the time MLP and the output.
    pub act: Activation,
    /// Kernel of `conv_in`.
    pub conv_in_kernel: usize,
    /// Kernel of `conv_out`.
    pub conv_out_kernel: usize,
    /// Channels after `conv_in` (`block_out_channels[0]`).
    pub first_channels: usize,
    /// Groups and epsilon of `conv_norm_out`, if any.
    pub out_norm: Option<(usize, f64)>,
    /// Padding of the down-sampling convolutions.
    pub downsample_padding: usize,
    /// Settings of the down/up resnets.
    pub resnet: ResnetSettings,
    /// Down blocks in order.
    pub down: Vec<DownBlockLayout>,
    /// The mid block, if the config has one.
    pub mid: Option<MidBlockLayout>,
    /// Up blocks in order.
    pub up: Vec<UpBlockLayout>,
}

fn unsupported(option: &'static str, value: impl std::fmt::Debug, note: &'static str) -> UNetError {
    UNetError::Unsupported {
        option,
        value: format!("{value:?}"),
        note,
    }
}

/// Rejects the options we do not implement, naming each.
fn check_supported(cfg: &UNetConfig) -> Result<(), UNetError> {
    const LATER: &str = "; class/addition embeddings (SDXL, upscalers) are not implemented yet";
    if cfg.resnet_time_scale_shift != "default" {
        return Err(unsupported(
            "resnet_time_scale_shift",
            &cfg.resnet_time_scale_shift,
            "; only \"default\" is implemented",
        ));
    }
    if let Some(v) = &cfg.class_embed_type {
        return Err(unsupported("class_embed_type", v, LATER));
    }
    if let Some(v) = &cfg.addition_embed_type {
        return Err(unsupported("addition_embed_type", v, LATER));
    }
    if let Some(v) = cfg.num_class_embeds {
        return Err(unsupported("num_class_embeds", v, LATER));
    }
    if cfg.class_embeddings_concat {
        return Err(unsupported("class_embeddings_concat", true, LATER));
    }
    if cfg.time_embedding_type != "positional" {
        return Err(unsupported(
            "time_embedding_type",
            &cfg.time_embedding_type,
            "; only \"positional\" is implemented",
        ));
    }
    if let Some(v) = cfg.encoder_hid_dim {
        return Err(unsupported("encoder_hid_dim", v, ""));
    }
    if let Some(v) = &cfg.encoder_hid_dim_type {
        return Err(unsupported("encoder_hid_dim_type", v, ""));
    }
    if let Some(v) = cfg.time_cond_proj_dim {
        return Err(unsupported("time_cond_proj_dim", v, ""));
    }
    if let Some(v) = &cfg.timestep_post_act {
        return Err(unsupported("timestep_post_act", v, ""));
    }
    if let Some(v) = &cfg.time_embedding_act_fn {
        return Err(unsupported("time_embedding_act_fn", v, ""));
    }
    if cfg.dual_cross_attention {
        return Err(unsupported("dual_cross_attention", true, ""));
    }
    if cfg.attention_type != "default" {
        return Err(unsupported(
            "attention_type",
            &cfg.attention_type,
            "; only \"default\" is implemented",
        ));
    }
    if cfg.resnet_skip_time_act {
        return Err(unsupported("resnet_skip_time_act", true, ""));
    }
    if let Some(v) = &cfg.cross_attention_norm {
        return Err(unsupported("cross_attention_norm", v, ""));
    }
    if let Some(v) = &cfg.reverse_transformer_layers_per_block {
        return Err(unsupported("reverse_transformer_layers_per_block", v, ""));
    }
    if cfg.norm_num_groups.is_none() {
        return Err(unsupported(
            "norm_num_groups",
            "null",
            "; the blocks need group norms",
        ));
    }
    for (name, k) in [
        ("conv_in_kernel", cfg.conv_in_kernel),
        ("conv_out_kernel", cfg.conv_out_kernel),
    ] {
        if k % 2 == 0 {
            return Err(UNetError::InvalidConfig(format!(
                "{name} must be odd, got {k}"
            )));
        }
    }
    Ok(())
}

/// Whether a block type has transformers; errors on types we do not implement.
fn has_attention(option: &'static str, kind: &str) -> Result<bool, UNetError> {
    match kind {
        "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" => Ok(true),
        "DownBlock2D" | "UpBlock2D" => Ok(false),
        other => Err(unsupported(
            option,
            other,
            "; implemented: CrossAttnDownBlock2D, DownBlock2D, CrossAttnUpBlock2D, UpBlock2D",
        )),
    }
}

impl UNetLayout {
    /// Derives and checks the layout.
    pub fn from_config(cfg: &UNetConfig) -> Result<Self, UNetError> {
        check_supported(cfg)?;
        let act = Activation::from_name(&cfg.act_fn).map_err(|_| {
            unsupported(
                "act_fn",
                &cfg.act_fn,
                "; implemented: silu, swish, gelu, mish, relu",
            )
        })?;
        let channels = &cfg.block_out_channels;
        let n = channels.len();
        if n == 0 {
            return Err(UNetError::InvalidConfig(
                "block_out_channels is empty".into(),
            ));
        }
        if cfg.down_block_types.len() != n || cfg.up_block_types.len() != n {
            return Err(UNetError::InvalidConfig(format!(
                "{n} block_out_channels but {} down_block_types and {} up_block_types",
                cfg.down_block_types.len(),
                cfg.up_block_types.len()
            )));
        }
        let groups = cfg.norm_num_groups.unwrap_or(32);
        for &c in channels {
            if groups == 0 || !c.is_multiple_of(groups) {
                return Err(UNetError::InvalidConfig(format!(
                    "norm_num_groups {groups} does not divide block channels {c}"
                )));
            }
        }
        // diffusers: `num_attention_heads = num_attention_heads or attention_head_dim`.
        let heads_source = cfg
            .num_attention_heads
            .as_ref()
            .or(cfg.attention_head_dim.as_ref());
        let heads = match heads_source {
            Some(h) => h.per_block(n, "attention_head_dim / num_attention_heads")?,
            None => Vec::new(),
        };
        let layers = cfg.layers_per_block.per_block(n, "layers_per_block")?;
        let context_dims = cfg
            .cross_attention_dim
            .per_block(n, "cross_attention_dim")?;
        let only_cross = cfg
            .only_cross_attention
            .per_block(n, "only_cross_attention")?;
        let transformer_layers = cfg.transformer_layers_per_block.per_block(n)?;

        // The transformers of block i (down-block numbering), checked against `channels`.
        let attention =
            |i: usize, block_channels: usize| -> Result<CrossAttentionSettings, UNetError> {
                let Some(&h) = heads.get(i) else {
                    return Err(UNetError::InvalidConfig(
                        "attention blocks need attention_head_dim or num_attention_heads".into(),
                    ));
                };
                if h == 0 || !block_channels.is_multiple_of(h) {
                    return Err(UNetError::InvalidConfig(format!(
                        "{h} attention heads do not divide {block_channels} channels (block {i})"
                    )));
                }
                Ok(CrossAttentionSettings {
                    heads: h,
                    transformer_layers: transformer_layers[i],
                    context_dim: context_dims[i],
                    norm_groups: groups,
                    use_linear_projection: cfg.use_linear_projection,
                    only_cross_attention: only_cross[i],
                    upcast_attention: cfg.upcast_attention,
                })
            };

        let time_embed_dim = cfg.time_embedding_dim.unwrap_or(channels[0] * 4);
        let resnet = ResnetSettings {
            temb_channels: time_embed_dim,
            groups,
            eps: cfg.norm_eps,
            act,
            output_scale_factor: cfg.resnet_out_scale_factor,
        };

        let mut down = Vec::with_capacity(n);
        for (i, kind) in cfg.down_block_types.iter().enumerate() {
            let in_channels = if i == 0 { channels[0] } else { channels[i - 1] };
            let out_channels = channels[i];
            let cross_attention = if has_attention("down_block_types", kind)? {
                Some(attention(i, out_channels)?)
            } else {
                None
            };
            down.push(DownBlockLayout {
                in_channels,
                out_channels,
                resnets: layers[i],
                downsample: i + 1 < n,
                cross_attention,
            });
        }

        let mid = match cfg.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => Some(MidBlockLayout {
                channels: channels[n - 1],
                cross_attention: attention(n - 1, channels[n - 1])?,
                resnet: ResnetSettings {
                    output_scale_factor: cfg.mid_block_scale_factor,
                    ..resnet
                },
            }),
            None => None,
            Some(other) => {
                return Err(unsupported(
                    "mid_block_type",
                    other,
                    "; implemented: UNetMidBlock2DCrossAttn or null",
                ))
            }
        };

        let mut up = Vec::with_capacity(n);
        let mut output_channels = channels[n - 1];
        for (i, kind) in cfg.up_block_types.iter().enumerate() {
            let mirrored = n - 1 - i; // the down block this up block mirrors
            let prev_output_channels = output_channels;
            output_channels = channels[mirrored];
            let in_channels = channels[mirrored.saturating_sub(1)];
            let cross_attention = if has_attention("up_block_types", kind)? {
                Some(attention(mirrored, output_channels)?)
            } else {
                None
            };
            up.push(UpBlockLayout {
                in_channels,
                out_channels: output_channels,
                prev_output_channels,
                resnets: layers[mirrored] + 1,
                upsample: i + 1 < n,
                cross_attention,
            });
        }

        Ok(Self {
            in_channels: cfg.in_channels,
            out_channels: cfg.out_channels,
            center_input_sample: cfg.center_input_sample,
            timestep_features: channels[0],
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            time_embed_dim,
            act,
            conv_in_kernel: cfg.conv_in_kernel,
            conv_out_kernel: cfg.conv_out_kernel,
            first_channels: channels[0],
            out_norm: cfg.norm_num_groups.map(|g| (g, cfg.norm_eps)),
            downsample_padding: cfg.downsample_padding,
            resnet,
            down,
            mid,
            up,
        })
    }

    /// Total down-sampling factor (2 per down-sampling block).
    pub fn downsampling_factor(&self) -> usize {
        1 << self.down.iter().filter(|b| b.downsample).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::PerBlock;

    #[test]
    fn sd15_layout() {
        let cfg = UNetConfig {
            cross_attention_dim: PerBlock::Same(768),
            ..Default::default()
        };
        let l = UNetLayout::from_config(&cfg).unwrap();
        assert_eq!(l.time_embed_dim, 1280);
        assert_eq!(l.down[0].in_channels, 320);
        assert_eq!(l.down[1].in_channels, 320);
        assert_eq!(l.down[1].out_channels, 640);
        assert!(l.down[3].cross_attention.is_none() && !l.down[3].downsample);
        assert_eq!(l.down[0].cross_attention.unwrap().heads, 8);
        assert_eq!(
            l.down[0].cross_attention.unwrap().transformer(320).head_dim,
            40
        );
        // up_blocks.0 mirrors down_blocks.3: UpBlock2D 1280 -> 1280, skips from 1280s.
        assert_eq!(
            (
                l.up[0].prev_output_channels,
                l.up[0].out_channels,
                l.up[0].in_channels
            ),
            (1280, 1280, 1280)
        );
        // up_blocks.3 mirrors down_blocks.0: 640 from below, 320 out, first skip 320.
        assert_eq!(
            (
                l.up[3].prev_output_channels,
                l.up[3].out_channels,
                l.up[3].in_channels
            ),
            (640, 320, 320)
        );
        assert_eq!(l.up[3].resnets, 3);
        assert!(!l.up[3].upsample && l.up[2].upsample);
        assert_eq!(l.downsampling_factor(), 8);
    }

    #[test]
    fn sd2_per_block_heads_are_reversed_on_the_way_up() {
        let cfg = UNetConfig {
            attention_head_dim: Some(PerBlock::Each(vec![5, 10, 20, 20])),
            cross_attention_dim: PerBlock::Same(1024),
            use_linear_projection: true,
            ..Default::default()
        };
        let l = UNetLayout::from_config(&cfg).unwrap();
        assert_eq!(l.down[0].cross_attention.unwrap().heads, 5);
        assert_eq!(l.mid.as_ref().unwrap().cross_attention.heads, 20);
        assert_eq!(l.up[1].cross_attention.unwrap().heads, 20);
        assert_eq!(l.up[3].cross_attention.unwrap().heads, 5);
        assert_eq!(
            l.up[3].cross_attention.unwrap().transformer(320).head_dim,
            64
        );
    }

    #[test]
    fn unsupported_options_are_named() {
        let cfg = UNetConfig {
            addition_embed_type: Some("text_time".into()),
            ..Default::default()
        };
        let err = UNetLayout::from_config(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("addition_embed_type") && err.contains("text_time"),
            "{err}"
        );
        let cfg = UNetConfig {
            resnet_time_scale_shift: "scale_shift".into(),
            ..Default::default()
        };
        let err = UNetLayout::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("resnet_time_scale_shift"), "{err}");
        let mut cfg = UNetConfig::default();
        cfg.down_block_types[0] = "SimpleCrossAttnDownBlock2D".into();
        let err = UNetLayout::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("SimpleCrossAttnDownBlock2D"), "{err}");
    }

    #[test]
    fn inconsistent_numbers_are_reported() {
        let cfg = UNetConfig {
            attention_head_dim: Some(PerBlock::Same(7)),
            ..Default::default()
        };
        let err = UNetLayout::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("7 attention heads do not divide 320"), "{err}");
        let cfg = UNetConfig {
            block_out_channels: vec![32, 64],
            ..Default::default()
        };
        assert!(UNetLayout::from_config(&cfg).is_err());
    }
}
