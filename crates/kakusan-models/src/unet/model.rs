//! `UNet2DConditionModel`: the noise-prediction network of Stable Diffusion 1.x/2.x.
//! `conv_in` -> down blocks (keeping skip connections) -> mid block -> up blocks (eating the
//! skips, up-sampling to each skip's size so odd latent sizes work) -> `conv_norm_out` ->
//! act -> `conv_out`, every residual block conditioned on the timestep embedding and every
//! transformer on the text context.

use super::cross_attn_down_block::CrossAttnDownBlock2D;
use super::cross_attn_up_block::CrossAttnUpBlock2D;
use super::down_block::DownBlock2D;
use super::error::At;
use super::layout::UNetLayout;
use super::mid_block::UNetMidBlock2DCrossAttn;
use super::up_block::UpBlock2D;
use super::{UNetConfig, UNetError};
use crate::nn::Conv2d;
use crate::nn::{conv2d, GroupNorm, TimestepEmbedding, Timesteps};
use candle_core::{DType, Tensor};
use candle_nn::{Module, VarBuilder};

/// A down block of either kind.
#[derive(Debug, Clone)]
enum DownBlock {
    Plain(DownBlock2D),
    CrossAttn(CrossAttnDownBlock2D),
}

/// An up block of either kind.
#[derive(Debug, Clone)]
enum UpBlock {
    Plain(UpBlock2D),
    CrossAttn(CrossAttnUpBlock2D),
}

impl UpBlock {
    fn skips_needed(&self) -> usize {
        match self {
            Self::Plain(b) => b.skips_needed(),
            Self::CrossAttn(b) => b.skips_needed(),
        }
    }
}

/// diffusers' `UNet2DConditionModel` (SD 1.x / 2.x layouts).
#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    config: UNetConfig,
    layout: UNetLayout,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<(String, DownBlock)>,
    mid_block: Option<UNetMidBlock2DCrossAttn>,
    up_blocks: Vec<(String, UpBlock)>,
    conv_norm_out: Option<GroupNorm>,
    conv_out: Conv2d,
    /// Width every transformer expects of the context, when they all agree.
    context_dim: Option<usize>,
}

impl UNet2DConditionModel {
    /// Builds the network described by `config` from weights with diffusers names
    /// (`conv_in.weight`, `down_blocks.0.resnets.0.norm1.weight`, ...).
    pub fn new(vb: VarBuilder, config: &UNetConfig) -> Result<Self, UNetError> {
        let layout = UNetLayout::from_config(config)?;
        let l = &layout;
        let time_proj = Timesteps {
            dim: l.timestep_features,
            flip_sin_to_cos: l.flip_sin_to_cos,
            downscale_freq_shift: l.freq_shift,
        };
        let time_embedding = TimestepEmbedding::new(
            l.timestep_features,
            l.time_embed_dim,
            l.act,
            vb.pp("time_embedding"),
        )
        .loading("time_embedding")?;
        let conv_in = conv2d(
            l.in_channels,
            l.first_channels,
            l.conv_in_kernel,
            1,
            (l.conv_in_kernel - 1) / 2,
            vb.pp("conv_in"),
        )
        .loading("conv_in")?;

        let mut down_blocks = Vec::with_capacity(l.down.len());
        for (i, block) in l.down.iter().enumerate() {
            let place = format!("down_blocks.{i}");
            let bvb = vb.pp(&place);
            let built = match &block.cross_attention {
                Some(attn) => DownBlock::CrossAttn(
                    CrossAttnDownBlock2D::new(block, attn, &l.resnet, l.downsample_padding, bvb)
                        .loading(&place)?,
                ),
                None => DownBlock::Plain(
                    DownBlock2D::new(block, &l.resnet, l.downsample_padding, bvb)
                        .loading(&place)?,
                ),
            };
            down_blocks.push((place, built));
        }

        let mid_block = match &l.mid {
            Some(mid) => {
                Some(UNetMidBlock2DCrossAttn::new(mid, vb.pp("mid_block")).loading("mid_block")?)
            }
            None => None,
        };

        let mut up_blocks = Vec::with_capacity(l.up.len());
        for (i, block) in l.up.iter().enumerate() {
            let place = format!("up_blocks.{i}");
            let bvb = vb.pp(&place);
            let built = match &block.cross_attention {
                Some(attn) => UpBlock::CrossAttn(
                    CrossAttnUpBlock2D::new(block, attn, &l.resnet, bvb).loading(&place)?,
                ),
                None => UpBlock::Plain(UpBlock2D::new(block, &l.resnet, bvb).loading(&place)?),
            };
            up_blocks.push((place, built));
        }

        let conv_norm_out = match l.out_norm {
            Some((groups, eps)) => Some(
                GroupNorm::new(groups, l.first_channels, eps, vb.pp("conv_norm_out"))
                    .loading("conv_norm_out")?,
            ),
            None => None,
        };
        let conv_out = conv2d(
            l.first_channels,
            l.out_channels,
            l.conv_out_kernel,
            1,
            (l.conv_out_kernel - 1) / 2,
            vb.pp("conv_out"),
        )
        .loading("conv_out")?;

        let mut dims = l
            .down
            .iter()
            .filter_map(|b| b.cross_attention.map(|a| a.context_dim))
            .chain(l.mid.iter().map(|m| m.cross_attention.context_dim))
            .chain(
                l.up.iter()
                    .filter_map(|b| b.cross_attention.map(|a| a.context_dim)),
            );
        let first = dims.next();
        let context_dim = first.filter(|d| dims.all(|x| x == *d));

        tracing::debug!(
            down = l.down.len(),
            up = l.up.len(),
            channels = ?config.block_out_channels,
            "built UNet2DConditionModel"
        );
        Ok(Self {
            config: config.clone(),
            layout,
            time_proj,
            time_embedding,
            conv_in,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            context_dim,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Spatial sizes of the input must be at least this divisor's worth of pixels; any size
    /// works, but sizes that are multiples of it avoid uneven up-sampling.
    pub fn downsampling_factor(&self) -> usize {
        self.layout.downsampling_factor()
    }

    /// Predicts the model output (noise, or v for v-prediction models) for latents `x`
    /// `[B, in_channels, H, W]` at `timestep` (`[B]`, `[1]` or a scalar; fractional values
    /// allowed) with text `context` `[B, tokens, cross_attention_dim]`.
    pub fn forward(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        context: &Tensor,
    ) -> Result<Tensor, UNetError> {
        Ok(self.run(x, timestep, context, None)?.0)
    }

    /// The channels of each skip connection the down path keeps, in order: `conv_in`'s
    /// output, then every layer of every down block, each block's down-sampler after its
    /// layers (all but the last block have one). Index `i` is what
    /// [`Self::forward_with_skip`] returns for `i`.
    pub fn skip_channels(&self) -> Result<Vec<usize>, UNetError> {
        let c = &self.config;
        let blocks = c.block_out_channels.len();
        let layers = c.layers_per_block.per_block(blocks, "layers_per_block")?;
        let mut out = vec![c.block_out_channels[0]];
        for (i, (&channels, &n)) in c.block_out_channels.iter().zip(&layers).enumerate() {
            out.extend(std::iter::repeat_n(channels, n));
            if i + 1 < blocks {
                out.push(channels);
            }
        }
        Ok(out)
    }

    /// [`Self::forward`], also returning the down path's skip connection `skip` (see
    /// [`Self::skip_channels`]): an inner representation for training objectives that
    /// shape it (feature alignment).
    pub fn forward_with_skip(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        context: &Tensor,
        skip: usize,
    ) -> Result<(Tensor, Tensor), UNetError> {
        let (out, tapped) = self.run(x, timestep, context, Some(skip))?;
        let tapped = tapped.ok_or_else(|| {
            UNetError::InvalidConfig(format!("the UNet has no skip connection {skip}"))
        })?;
        Ok((out, tapped))
    }

    fn run(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        context: &Tensor,
        tap: Option<usize>,
    ) -> Result<(Tensor, Option<Tensor>), UNetError> {
        let batch = self.check_inputs(x, context)?;
        let timesteps = self.batch_timesteps(timestep, batch)?;

        let sample = if self.layout.center_input_sample {
            x.affine(2.0, -1.0).running("center_input_sample")?
        } else {
            x.clone()
        };

        let t_features = self.time_proj.forward(&timesteps).running("time_proj")?;
        let temb = t_features
            .to_dtype(x.dtype())
            .and_then(|t| self.time_embedding.forward(&t))
            .running("time_embedding")?;

        let mut h = self.conv_in.forward(&sample).running("conv_in")?;
        let mut skips = vec![h.clone()];
        for (place, block) in &self.down_blocks {
            let (out, block_skips) = match block {
                DownBlock::Plain(b) => b.forward(&h, &temb),
                DownBlock::CrossAttn(b) => b.forward(&h, &temb, context),
            }
            .running(place)?;
            h = out;
            skips.extend(block_skips);
        }

        if let Some(mid) = &self.mid_block {
            h = mid.forward(&h, &temb, context).running("mid_block")?;
        }
        let tapped = tap.and_then(|i| skips.get(i).cloned());

        for (place, block) in &self.up_blocks {
            let needed = block.skips_needed();
            if skips.len() < needed {
                return Err(UNetError::InvalidConfig(format!(
                    "{place} needs {needed} skip connections but only {} are left",
                    skips.len()
                )));
            }
            let block_skips = skips.split_off(skips.len() - needed);
            // Up-sample to the size of the next skip connection. diffusers passes this size
            // only when H or W is not a multiple of the total down-sampling; otherwise the
            // skip is exactly twice as large and both give the same nearest-neighbour x2.
            let upsample_size = match skips.last() {
                Some(next) => {
                    let (_, _, sh, sw) = next.dims4().running(place)?;
                    Some((sh, sw))
                }
                None => None,
            };
            h = match block {
                UpBlock::Plain(b) => b.forward(&h, &block_skips, &temb, upsample_size),
                UpBlock::CrossAttn(b) => b.forward(&h, &block_skips, &temb, context, upsample_size),
            }
            .running(place)?;
        }

        if let Some(norm) = &self.conv_norm_out {
            h = self
                .layout
                .act
                .after_group_norm(norm, &h)
                .running("conv_norm_out")?;
        }
        let out = self.conv_out.forward(&h).running("conv_out")?;
        Ok((out, tapped))
    }

    /// Checks `x` and `context`; returns the batch size.
    fn check_inputs(&self, x: &Tensor, context: &Tensor) -> Result<usize, UNetError> {
        let c = self.layout.in_channels;
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != c || dims[2] == 0 || dims[3] == 0 {
            return Err(UNetError::Input {
                name: "x",
                expected: format!("[batch, {c}, height, width]"),
                got: dims.to_vec(),
            });
        }
        let batch = dims[0];
        let cdims = context.dims();
        let width_ok = match self.context_dim {
            Some(d) => cdims.last() == Some(&d),
            None => true,
        };
        if cdims.len() != 3 || cdims[0] != batch || !width_ok {
            let width = self
                .context_dim
                .map_or("width".to_string(), |d| d.to_string());
            return Err(UNetError::Input {
                name: "context",
                expected: format!("[{batch}, tokens, {width}]"),
                got: cdims.to_vec(),
            });
        }
        Ok(batch)
    }

    /// Brings `timestep` to a `[batch]` f32 tensor.
    fn batch_timesteps(&self, timestep: &Tensor, batch: usize) -> Result<Tensor, UNetError> {
        let n = timestep.elem_count();
        let ok_shape = timestep.rank() == 0 || (timestep.rank() == 1 && (n == 1 || n == batch));
        if !ok_shape {
            return Err(UNetError::Input {
                name: "timestep",
                expected: format!("a scalar, [1] or [{batch}]"),
                got: timestep.dims().to_vec(),
            });
        }
        timestep
            .to_dtype(DType::F32)
            .and_then(|t| t.reshape(n))
            .and_then(|t| {
                if n == batch {
                    Ok(t)
                } else {
                    t.broadcast_as(batch)
                }
            })
            .running("timestep")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::PerBlock;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny_config() -> UNetConfig {
        UNetConfig {
            block_out_channels: vec![16, 32],
            down_block_types: vec!["CrossAttnDownBlock2D".into(), "DownBlock2D".into()],
            up_block_types: vec!["UpBlock2D".into(), "CrossAttnUpBlock2D".into()],
            layers_per_block: PerBlock::Same(1),
            attention_head_dim: Some(PerBlock::Same(2)),
            cross_attention_dim: PerBlock::Same(12),
            norm_num_groups: Some(8),
            ..Default::default()
        }
    }

    /// Every skip connection can be tapped, has the channels `skip_channels` says and the
    /// side of its level; tapping changes nothing in the output; a missing one is an error.
    #[test]
    fn skip_connections_can_be_tapped() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let config = UNetConfig {
            layers_per_block: PerBlock::Same(2),
            ..tiny_config()
        };
        let unet = UNet2DConditionModel::new(vb, &config).unwrap();
        let channels = unet.skip_channels().unwrap();
        // conv_in, 2 layers + down-sampler of block 0, 2 layers of block 1.
        assert_eq!(channels, vec![16, 16, 16, 16, 32, 32]);
        let sides = [8, 8, 8, 4, 4, 4];
        let ctx = Tensor::randn(0f32, 1.0, (2, 5, 12), &dev).unwrap();
        let t = Tensor::new(&[10.5f32, 999.0], &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &dev).unwrap();
        let plain = unet.forward(&x, &t, &ctx).unwrap();
        for (i, (&c, &side)) in channels.iter().zip(&sides).enumerate() {
            let (out, tapped) = unet.forward_with_skip(&x, &t, &ctx, i).unwrap();
            assert_eq!(tapped.dims(), &[2, c, side, side], "skip {i}");
            let diff = (out - &plain)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0);
        }
        let err = unet.forward_with_skip(&x, &t, &ctx, 6).unwrap_err();
        assert!(err.to_string().contains("skip connection 6"), "{err}");
    }

    #[test]
    fn random_tiny_unet_runs_on_odd_sizes_and_checks_inputs() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let unet = UNet2DConditionModel::new(vb, &tiny_config()).unwrap();
        let ctx = Tensor::randn(0f32, 1.0, (2, 5, 12), &dev).unwrap();
        let t = Tensor::new(&[10.5f32, 999.0], &dev).unwrap();
        for (h, w) in [(4, 4), (5, 7), (1, 3)] {
            let x = Tensor::randn(0f32, 1.0, (2, 4, h, w), &dev).unwrap();
            let y = unet.forward(&x, &t, &ctx).unwrap();
            assert_eq!(y.dims(), &[2, 4, h, w]);
        }
        let x = Tensor::zeros((2, 4, 4, 4), DType::F32, &dev).unwrap();
        // One timestep for the whole batch is broadcast.
        assert!(unet
            .forward(&x, &Tensor::new(&[3.0f32], &dev).unwrap(), &ctx)
            .is_ok());
        let err = unet
            .forward(&x, &t, &Tensor::zeros((2, 5, 8), DType::F32, &dev).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("`context`"), "{err}");
        let err = unet
            .forward(
                &Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap(),
                &t,
                &ctx,
            )
            .unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        let err = unet
            .forward(&x, &Tensor::zeros(3, DType::F32, &dev).unwrap(), &ctx)
            .unwrap_err();
        assert!(err.to_string().contains("`timestep`"), "{err}");
    }

    #[test]
    fn missing_weights_name_the_tensor() {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_tensors(std::collections::HashMap::new(), DType::F32, &dev);
        let err = UNet2DConditionModel::new(vb, &tiny_config())
            .unwrap_err()
            .to_string();
        assert!(err.contains("time_embedding.linear_1.weight"), "{err}");
    }
}
