//! The LDM/A1111 UNet naming (`model.diffusion_model.*`): diffusers' `down_blocks` /
//! `mid_block` / `up_blocks` are LDM's flat `input_blocks` / `middle_block` /
//! `output_blocks` lists, so the index arithmetic depends on the UNet layout (resnets per
//! level, which levels have attention).
//!
//! LDM's lists, for levels `0..n` with `L_l` resnets each:
//! - `input_blocks.0.0` is `conv_in`; then per level `l`: `L_l` entries `[resnet, attention?]`,
//!   and (all levels but the last) one entry `[downsample op]`.
//! - `middle_block.0` resnet, `.1` attention, `.2` resnet.
//! - `output_blocks`: per up block `b` (level `n-1-b`): `L_{n-1-b} + 1` entries
//!   `[resnet, attention?, upsample conv?]`, the upsampler on the last entry of every up
//!   block but the last, at position 1 without attention and 2 with it.

use super::{index, join, KeyNaming, Source};

/// What the name arithmetic needs of a UNet configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UNetLayout {
    /// Output channels per level (diffusers `block_out_channels`).
    pub block_out_channels: Vec<usize>,
    /// Resnets per down level (the up block of the same level has one more).
    pub layers_per_block: Vec<usize>,
    /// Whether each down level has cross-attention (`CrossAttnDownBlock2D`); the up block of
    /// the same level has it too.
    pub down_block_has_attention: Vec<bool>,
}

impl UNetLayout {
    /// A layout with the same number of resnets at every level.
    pub fn uniform(
        block_out_channels: Vec<usize>,
        layers_per_block: usize,
        down_block_has_attention: Vec<bool>,
    ) -> Self {
        let levels = block_out_channels.len();
        UNetLayout {
            block_out_channels,
            layers_per_block: vec![layers_per_block; levels],
            down_block_has_attention,
        }
    }

    /// The Stable Diffusion 1.x / 2.x UNet: channels 320/640/1280/1280, 2 resnets per level,
    /// attention on the first three levels.
    pub fn stable_diffusion() -> Self {
        Self::uniform(vec![320, 640, 1280, 1280], 2, vec![true, true, true, false])
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    fn resnets(&self, level: usize) -> Option<usize> {
        self.layers_per_block.get(level).copied()
    }

    fn has_attention(&self, level: usize) -> bool {
        self.down_block_has_attention
            .get(level)
            .copied()
            .unwrap_or(false)
    }

    /// Whether up block `up` (level `n-1-up`) has attention.
    pub fn up_block_has_attention(&self, up: usize) -> bool {
        self.levels()
            .checked_sub(1 + up)
            .is_some_and(|level| self.has_attention(level))
    }

    /// The `input_blocks` index of entry `j` of down level `level` (`j == L_level` is the
    /// downsampler).
    pub fn input_block(&self, level: usize, j: usize) -> usize {
        1 + (0..level)
            .map(|m| self.resnets(m).unwrap_or(0) + 1)
            .sum::<usize>()
            + j
    }

    /// The `output_blocks` index of entry `j` of up block `up`.
    pub fn output_block(&self, up: usize, j: usize) -> usize {
        let n = self.levels();
        (0..up)
            .map(|c| self.resnets(n - 1 - c).unwrap_or(0) + 1)
            .sum::<usize>()
            + j
    }

    /// The LDM key (without the `model.diffusion_model.` prefix) of diffusers UNet tensor
    /// `name`, or `None` when the layout has no such tensor.
    pub fn ldm_key(&self, name: &str) -> Option<String> {
        let parts: Vec<&str> = name.split('.').collect();
        let n = self.levels();
        match parts.as_slice() {
            ["conv_in", rest @ ..] if !rest.is_empty() => Some(join("input_blocks.0.0", rest)),
            ["time_embedding", "linear_1", rest @ ..] if !rest.is_empty() => {
                Some(join("time_embed.0", rest))
            }
            ["time_embedding", "linear_2", rest @ ..] if !rest.is_empty() => {
                Some(join("time_embed.2", rest))
            }
            ["class_embedding", "linear_1", rest @ ..] if !rest.is_empty() => {
                Some(join("label_emb.0.0", rest))
            }
            ["class_embedding", "linear_2", rest @ ..] if !rest.is_empty() => {
                Some(join("label_emb.0.2", rest))
            }
            ["conv_norm_out", rest @ ..] if !rest.is_empty() => Some(join("out.0", rest)),
            ["conv_out", rest @ ..] if !rest.is_empty() => Some(join("out.2", rest)),
            ["down_blocks", l, "resnets", j, sub, rest @ ..] if !rest.is_empty() => {
                let (l, j) = (index(l)?, index(j)?);
                if j >= self.resnets(l)? {
                    return None;
                }
                let i = self.input_block(l, j);
                Some(join(
                    &format!("input_blocks.{i}.0.{}", resnet_part(sub)?),
                    rest,
                ))
            }
            ["down_blocks", l, "attentions", j, rest @ ..] if !rest.is_empty() => {
                let (l, j) = (index(l)?, index(j)?);
                if j >= self.resnets(l)? || !self.has_attention(l) {
                    return None;
                }
                Some(join(
                    &format!("input_blocks.{}.1", self.input_block(l, j)),
                    rest,
                ))
            }
            ["down_blocks", l, "downsamplers", "0", "conv", rest @ ..] if !rest.is_empty() => {
                let l = index(l)?;
                if l + 1 >= n {
                    return None;
                }
                let i = self.input_block(l, self.resnets(l)?);
                Some(join(&format!("input_blocks.{i}.0.op"), rest))
            }
            ["mid_block", "resnets", j, sub, rest @ ..] if !rest.is_empty() => {
                let position = match index(j)? {
                    0 => 0,
                    1 => 2,
                    _ => return None,
                };
                Some(join(
                    &format!("middle_block.{position}.{}", resnet_part(sub)?),
                    rest,
                ))
            }
            ["mid_block", "attentions", "0", rest @ ..] if !rest.is_empty() => {
                Some(join("middle_block.1", rest))
            }
            ["up_blocks", b, "resnets", j, sub, rest @ ..] if !rest.is_empty() => {
                let (b, j) = (index(b)?, index(j)?);
                let level = n.checked_sub(1 + b)?;
                if j > self.resnets(level)? {
                    return None;
                }
                let k = self.output_block(b, j);
                Some(join(
                    &format!("output_blocks.{k}.0.{}", resnet_part(sub)?),
                    rest,
                ))
            }
            ["up_blocks", b, "attentions", j, rest @ ..] if !rest.is_empty() => {
                let (b, j) = (index(b)?, index(j)?);
                let level = n.checked_sub(1 + b)?;
                if j > self.resnets(level)? || !self.has_attention(level) {
                    return None;
                }
                Some(join(
                    &format!("output_blocks.{}.1", self.output_block(b, j)),
                    rest,
                ))
            }
            ["up_blocks", b, "upsamplers", "0", "conv", rest @ ..] if !rest.is_empty() => {
                let b = index(b)?;
                let level = n.checked_sub(1 + b)?;
                if level == 0 {
                    return None;
                }
                let k = self.output_block(b, self.resnets(level)?);
                let position = if self.has_attention(level) { 2 } else { 1 };
                Some(join(&format!("output_blocks.{k}.{position}.conv"), rest))
            }
            _ => None,
        }
    }
}

/// LDM's name of a diffusers `ResnetBlock2D` sub-layer.
fn resnet_part(diffusers: &str) -> Option<&'static str> {
    Some(match diffusers {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        _ => return None,
    })
}

/// The UNet of an LDM single-file checkpoint.
#[derive(Debug, Clone)]
pub struct LdmUnetNaming {
    prefix: String,
    layout: UNetLayout,
}

impl LdmUnetNaming {
    /// The usual prefix of the UNet in LDM checkpoints.
    pub const PREFIX: &'static str = "model.diffusion_model.";

    /// A naming for keys `prefix` + LDM name, with `layout`'s index arithmetic.
    pub fn new(prefix: impl Into<String>, layout: UNetLayout) -> Self {
        LdmUnetNaming {
            prefix: prefix.into(),
            layout,
        }
    }

    /// The layout used.
    pub fn layout(&self) -> &UNetLayout {
        &self.layout
    }
}

impl KeyNaming for LdmUnetNaming {
    fn candidates(&self, name: &str) -> Vec<Source> {
        self.layout
            .ldm_key(name)
            .map(|k| vec![Source::key(format!("{}{k}", self.prefix))])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known pairs of the SD 1.5 (and 2.x) UNet, as they appear in v1-5-pruned.safetensors and
    /// in the diffusers folder.
    const SD15_PAIRS: &[(&str, &str)] = &[
        ("conv_in.weight", "input_blocks.0.0.weight"),
        ("time_embedding.linear_1.weight", "time_embed.0.weight"),
        ("time_embedding.linear_2.bias", "time_embed.2.bias"),
        (
            "down_blocks.0.resnets.0.norm1.weight",
            "input_blocks.1.0.in_layers.0.weight",
        ),
        (
            "down_blocks.0.resnets.0.conv1.weight",
            "input_blocks.1.0.in_layers.2.weight",
        ),
        (
            "down_blocks.0.resnets.0.time_emb_proj.bias",
            "input_blocks.1.0.emb_layers.1.bias",
        ),
        (
            "down_blocks.0.resnets.1.norm2.bias",
            "input_blocks.2.0.out_layers.0.bias",
        ),
        (
            "down_blocks.0.resnets.1.conv2.weight",
            "input_blocks.2.0.out_layers.3.weight",
        ),
        (
            "down_blocks.0.attentions.0.proj_in.weight",
            "input_blocks.1.1.proj_in.weight",
        ),
        (
            "down_blocks.0.attentions.1.norm.weight",
            "input_blocks.2.1.norm.weight",
        ),
        (
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
        ),
        (
            "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0.bias",
            "input_blocks.5.1.transformer_blocks.0.attn2.to_out.0.bias",
        ),
        (
            "down_blocks.0.downsamplers.0.conv.weight",
            "input_blocks.3.0.op.weight",
        ),
        (
            "down_blocks.1.resnets.0.conv_shortcut.weight",
            "input_blocks.4.0.skip_connection.weight",
        ),
        (
            "down_blocks.1.downsamplers.0.conv.bias",
            "input_blocks.6.0.op.bias",
        ),
        (
            "down_blocks.2.attentions.0.proj_out.weight",
            "input_blocks.7.1.proj_out.weight",
        ),
        (
            "down_blocks.2.downsamplers.0.conv.weight",
            "input_blocks.9.0.op.weight",
        ),
        (
            "down_blocks.3.resnets.0.norm1.weight",
            "input_blocks.10.0.in_layers.0.weight",
        ),
        (
            "down_blocks.3.resnets.1.conv2.bias",
            "input_blocks.11.0.out_layers.3.bias",
        ),
        (
            "mid_block.resnets.0.conv1.weight",
            "middle_block.0.in_layers.2.weight",
        ),
        (
            "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
            "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
        ),
        (
            "mid_block.resnets.1.time_emb_proj.weight",
            "middle_block.2.emb_layers.1.weight",
        ),
        (
            "up_blocks.0.resnets.0.conv_shortcut.weight",
            "output_blocks.0.0.skip_connection.weight",
        ),
        (
            "up_blocks.0.resnets.2.norm1.bias",
            "output_blocks.2.0.in_layers.0.bias",
        ),
        (
            "up_blocks.0.upsamplers.0.conv.weight",
            "output_blocks.2.1.conv.weight",
        ),
        (
            "up_blocks.1.resnets.0.conv1.weight",
            "output_blocks.3.0.in_layers.2.weight",
        ),
        (
            "up_blocks.1.attentions.0.norm.bias",
            "output_blocks.3.1.norm.bias",
        ),
        (
            "up_blocks.1.attentions.2.proj_in.weight",
            "output_blocks.5.1.proj_in.weight",
        ),
        (
            "up_blocks.1.upsamplers.0.conv.weight",
            "output_blocks.5.2.conv.weight",
        ),
        (
            "up_blocks.2.attentions.1.transformer_blocks.0.norm3.weight",
            "output_blocks.7.1.transformer_blocks.0.norm3.weight",
        ),
        (
            "up_blocks.2.upsamplers.0.conv.bias",
            "output_blocks.8.2.conv.bias",
        ),
        ("up_blocks.3.resnets.0.skip_connection_missing.weight", ""),
        (
            "up_blocks.3.attentions.2.proj_out.bias",
            "output_blocks.11.1.proj_out.bias",
        ),
        (
            "up_blocks.3.attentions.2.transformer_blocks.0.norm1.bias",
            "output_blocks.11.1.transformer_blocks.0.norm1.bias",
        ),
        ("conv_norm_out.weight", "out.0.weight"),
        ("conv_out.bias", "out.2.bias"),
    ];

    #[test]
    fn sd15_known_pairs() {
        let layout = UNetLayout::stable_diffusion();
        for (diffusers, ldm) in SD15_PAIRS {
            let got = layout.ldm_key(diffusers);
            if ldm.is_empty() {
                assert_eq!(got, None, "{diffusers} should have no LDM key");
            } else {
                assert_eq!(got.as_deref(), Some(*ldm), "{diffusers}");
            }
        }
    }

    #[test]
    fn tensors_the_layout_does_not_have() {
        let layout = UNetLayout::stable_diffusion();
        for name in [
            "down_blocks.3.attentions.0.proj_in.weight", // last level has no attention
            "down_blocks.3.downsamplers.0.conv.weight",  // nor a downsampler
            "down_blocks.0.resnets.2.conv1.weight",      // 2 resnets per down level
            "up_blocks.0.attentions.0.norm.weight",      // first up block has no attention
            "up_blocks.3.upsamplers.0.conv.weight",      // last up block has no upsampler
            "up_blocks.1.resnets.3.conv1.weight",        // 3 resnets per up level
            "up_blocks.4.resnets.0.conv1.weight",        // 4 levels
            "mid_block.resnets.2.conv1.weight",
            "mid_block.attentions.1.norm.weight",
            "down_blocks.0.resnets.0.nonsense.weight",
            "conv_in",
            "add_embedding.linear_1.weight",
        ] {
            assert_eq!(layout.ldm_key(name), None, "{name}");
        }
    }

    /// Every diffusers name of a layout maps to a distinct LDM key, and the LDM keys are
    /// exactly those LDM's own block lists give (built here independently, LDM's way).
    #[test]
    fn mapping_is_a_bijection_on_block_prefixes() {
        for layout in [
            UNetLayout::stable_diffusion(),
            UNetLayout::uniform(vec![32, 64], 2, vec![false, true]),
            UNetLayout {
                block_out_channels: vec![8, 16, 16],
                layers_per_block: vec![1, 3, 2],
                down_block_has_attention: vec![true, false, true],
            },
        ] {
            let n = layout.levels();
            // Diffusers' module prefixes.
            let mut diffusers = vec![];
            for l in 0..n {
                for j in 0..layout.layers_per_block[l] {
                    diffusers.push(format!("down_blocks.{l}.resnets.{j}.conv1.weight"));
                    if layout.down_block_has_attention[l] {
                        diffusers.push(format!("down_blocks.{l}.attentions.{j}.proj_in.weight"));
                    }
                }
                if l + 1 < n {
                    diffusers.push(format!("down_blocks.{l}.downsamplers.0.conv.weight"));
                }
            }
            for b in 0..n {
                let level = n - 1 - b;
                for j in 0..=layout.layers_per_block[level] {
                    diffusers.push(format!("up_blocks.{b}.resnets.{j}.conv1.weight"));
                    if layout.down_block_has_attention[level] {
                        diffusers.push(format!("up_blocks.{b}.attentions.{j}.proj_in.weight"));
                    }
                }
                if level > 0 {
                    diffusers.push(format!("up_blocks.{b}.upsamplers.0.conv.weight"));
                }
            }
            // LDM's lists, built the way ldm's openaimodel.py builds them.
            let mut ldm = vec![];
            let mut i = 1;
            for l in 0..n {
                for _ in 0..layout.layers_per_block[l] {
                    ldm.push(format!("input_blocks.{i}.0.in_layers.2.weight"));
                    if layout.down_block_has_attention[l] {
                        ldm.push(format!("input_blocks.{i}.1.proj_in.weight"));
                    }
                    i += 1;
                }
                if l + 1 < n {
                    ldm.push(format!("input_blocks.{i}.0.op.weight"));
                    i += 1;
                }
            }
            let mut k = 0;
            for level in (0..n).rev() {
                for j in 0..=layout.layers_per_block[level] {
                    ldm.push(format!("output_blocks.{k}.0.in_layers.2.weight"));
                    let mut position = 1;
                    if layout.down_block_has_attention[level] {
                        ldm.push(format!("output_blocks.{k}.1.proj_in.weight"));
                        position = 2;
                    }
                    if level > 0 && j == layout.layers_per_block[level] {
                        ldm.push(format!("output_blocks.{k}.{position}.conv.weight"));
                    }
                    k += 1;
                }
            }
            let mut mapped: Vec<String> = diffusers
                .iter()
                .map(|d| layout.ldm_key(d).unwrap_or_else(|| panic!("{d} unmapped")))
                .collect();
            mapped.sort();
            ldm.sort();
            assert_eq!(mapped, ldm, "layout {layout:?}");
        }
    }

    #[test]
    fn naming_prefixes_keys() {
        let naming = LdmUnetNaming::new(LdmUnetNaming::PREFIX, UNetLayout::stable_diffusion());
        assert_eq!(
            naming.candidates("down_blocks.0.attentions.0.proj_in.weight"),
            vec![Source::key(
                "model.diffusion_model.input_blocks.1.1.proj_in.weight"
            )]
        );
        assert!(naming
            .candidates("down_blocks.9.resnets.0.conv1.weight")
            .is_empty());
    }
}
