//! The LDM/A1111 autoencoder naming (`first_stage_model.*`): `encoder.down.N.block.M`,
//! `.downsample`, `mid.block_1/attn_1/block_2`, `norm_out`, and the decoder's `up.N` lists in
//! reverse order (diffusers' `up_blocks.0` is LDM's `up.{n-1}`). The mid-block attention's
//! `q/k/v/proj_out` are 1x1 convolutions `[C, C, 1, 1]` where diffusers has linears `[C, C]`;
//! the backend reshapes them.

use super::{index, join, KeyNaming, Source};

/// The VAE of an LDM single-file checkpoint.
#[derive(Debug, Clone)]
pub struct LdmVaeNaming {
    prefix: String,
    levels: usize,
}

impl LdmVaeNaming {
    /// The usual prefix of the autoencoder in LDM checkpoints.
    pub const PREFIX: &'static str = "first_stage_model.";

    /// A naming for keys `prefix` + LDM name, for an autoencoder with `levels` resolution
    /// levels (`len(ch_mult)`, 4 for Stable Diffusion).
    pub fn new(prefix: impl Into<String>, levels: usize) -> Self {
        LdmVaeNaming {
            prefix: prefix.into(),
            levels,
        }
    }

    /// The LDM key (without prefix) of diffusers VAE tensor `name`.
    pub fn ldm_key(&self, name: &str) -> Option<String> {
        let parts: Vec<&str> = name.split('.').collect();
        let n = self.levels;
        match parts.as_slice() {
            [part @ ("quant_conv" | "post_quant_conv"), rest @ ..] if !rest.is_empty() => {
                Some(join(part, rest))
            }
            [coder @ ("encoder" | "decoder"), tail @ ..] => {
                let mapped = match tail {
                    [part @ ("conv_in" | "conv_out"), rest @ ..] if !rest.is_empty() => {
                        join(part, rest)
                    }
                    ["conv_norm_out", rest @ ..] if !rest.is_empty() => join("norm_out", rest),
                    ["mid_block", "resnets", j, sub, rest @ ..] if !rest.is_empty() => {
                        let block = match index(j)? {
                            0 => 1,
                            1 => 2,
                            _ => return None,
                        };
                        join(&format!("mid.block_{block}.{}", resnet_part(sub)?), rest)
                    }
                    ["mid_block", "attentions", "0", tail @ ..] => {
                        let (part, rest) = match tail {
                            ["group_norm", rest @ ..] => ("norm", rest),
                            ["to_q", rest @ ..] => ("q", rest),
                            ["to_k", rest @ ..] => ("k", rest),
                            ["to_v", rest @ ..] => ("v", rest),
                            ["to_out", "0", rest @ ..] => ("proj_out", rest),
                            _ => return None,
                        };
                        if rest.is_empty() {
                            return None;
                        }
                        join(&format!("mid.attn_1.{part}"), rest)
                    }
                    ["down_blocks", i, "resnets", j, sub, rest @ ..]
                        if *coder == "encoder" && !rest.is_empty() =>
                    {
                        let (i, j) = (index(i)?, index(j)?);
                        if i >= n {
                            return None;
                        }
                        join(&format!("down.{i}.block.{j}.{}", resnet_part(sub)?), rest)
                    }
                    ["down_blocks", i, "downsamplers", "0", "conv", rest @ ..]
                        if *coder == "encoder" && !rest.is_empty() =>
                    {
                        let i = index(i)?;
                        if i + 1 >= n {
                            return None;
                        }
                        join(&format!("down.{i}.downsample.conv"), rest)
                    }
                    ["up_blocks", i, "resnets", j, sub, rest @ ..]
                        if *coder == "decoder" && !rest.is_empty() =>
                    {
                        let (i, j) = (index(i)?, index(j)?);
                        let level = n.checked_sub(1 + i)?;
                        join(&format!("up.{level}.block.{j}.{}", resnet_part(sub)?), rest)
                    }
                    ["up_blocks", i, "upsamplers", "0", "conv", rest @ ..]
                        if *coder == "decoder" && !rest.is_empty() =>
                    {
                        let level = n.checked_sub(1 + index(i)?)?;
                        if level == 0 {
                            return None;
                        }
                        join(&format!("up.{level}.upsample.conv"), rest)
                    }
                    _ => return None,
                };
                Some(format!("{coder}.{mapped}"))
            }
            _ => None,
        }
    }
}

/// LDM's name of a diffusers VAE resnet sub-layer.
fn resnet_part(diffusers: &str) -> Option<&'static str> {
    Some(match diffusers {
        "norm1" => "norm1",
        "conv1" => "conv1",
        "norm2" => "norm2",
        "conv2" => "conv2",
        "conv_shortcut" => "nin_shortcut",
        _ => return None,
    })
}

impl KeyNaming for LdmVaeNaming {
    fn candidates(&self, name: &str) -> Vec<Source> {
        self.ldm_key(name)
            .map(|k| vec![Source::key(format!("{}{k}", self.prefix))])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_vae_known_pairs() {
        let naming = LdmVaeNaming::new("", 4);
        let pairs = [
            ("encoder.conv_in.weight", "encoder.conv_in.weight"),
            (
                "encoder.down_blocks.0.resnets.1.norm2.bias",
                "encoder.down.0.block.1.norm2.bias",
            ),
            (
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                "encoder.down.1.block.0.nin_shortcut.weight",
            ),
            (
                "encoder.down_blocks.2.downsamplers.0.conv.weight",
                "encoder.down.2.downsample.conv.weight",
            ),
            (
                "encoder.mid_block.resnets.0.conv1.weight",
                "encoder.mid.block_1.conv1.weight",
            ),
            (
                "encoder.mid_block.resnets.1.norm1.weight",
                "encoder.mid.block_2.norm1.weight",
            ),
            (
                "encoder.mid_block.attentions.0.group_norm.weight",
                "encoder.mid.attn_1.norm.weight",
            ),
            (
                "encoder.mid_block.attentions.0.to_q.weight",
                "encoder.mid.attn_1.q.weight",
            ),
            (
                "decoder.mid_block.attentions.0.to_v.bias",
                "decoder.mid.attn_1.v.bias",
            ),
            (
                "decoder.mid_block.attentions.0.to_out.0.weight",
                "decoder.mid.attn_1.proj_out.weight",
            ),
            ("encoder.conv_norm_out.bias", "encoder.norm_out.bias"),
            ("decoder.conv_norm_out.weight", "decoder.norm_out.weight"),
            (
                "decoder.up_blocks.0.resnets.2.conv2.weight",
                "decoder.up.3.block.2.conv2.weight",
            ),
            (
                "decoder.up_blocks.0.upsamplers.0.conv.bias",
                "decoder.up.3.upsample.conv.bias",
            ),
            (
                "decoder.up_blocks.2.resnets.0.conv_shortcut.bias",
                "decoder.up.1.block.0.nin_shortcut.bias",
            ),
            (
                "decoder.up_blocks.3.resnets.0.norm1.weight",
                "decoder.up.0.block.0.norm1.weight",
            ),
            ("quant_conv.weight", "quant_conv.weight"),
            ("post_quant_conv.bias", "post_quant_conv.bias"),
        ];
        for (diffusers, ldm) in pairs {
            assert_eq!(
                naming.ldm_key(diffusers).as_deref(),
                Some(ldm),
                "{diffusers}"
            );
        }
        for missing in [
            "encoder.down_blocks.3.downsamplers.0.conv.weight",
            "decoder.up_blocks.3.upsamplers.0.conv.weight",
            "decoder.up_blocks.4.resnets.0.conv1.weight",
            "encoder.up_blocks.0.resnets.0.conv1.weight",
            "decoder.down_blocks.0.resnets.0.conv1.weight",
            "encoder.mid_block.attentions.0.to_out.1.weight",
            "encoder.mid_block.attentions.0.to_q",
        ] {
            assert_eq!(naming.ldm_key(missing), None, "{missing}");
        }
        assert_eq!(
            LdmVaeNaming::new(LdmVaeNaming::PREFIX, 4).candidates("quant_conv.bias"),
            vec![Source::key("first_stage_model.quant_conv.bias")]
        );
    }
}
