//! `AutoencoderKL`: the Stable Diffusion VAE. `encode` maps images in [-1, 1] to the latent
//! distribution (encoder, then `quant_conv`); `decode` maps unscaled latents back to images
//! (`post_quant_conv`, then decoder). Multiplying by `scaling_factor` (and any
//! `shift_factor`) is the caller's job, as in diffusers.

use super::decoder::Decoder;
use super::diagonal_gaussian::DiagonalGaussian;
use super::encoder::Encoder;
use super::error::At;
use super::{VaeConfig, VaeError};
use crate::nn::conv2d;
use crate::nn::Conv2d;
use candle_core::Tensor;
use candle_nn::{Module, VarBuilder};

/// diffusers' `AutoencoderKL`.
#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKL {
    /// Builds the autoencoder described by `config` from weights with diffusers names
    /// (`encoder.conv_in.weight`, `quant_conv.weight`, `decoder.up_blocks.0...`).
    pub fn new(vb: VarBuilder, config: &VaeConfig) -> Result<Self, VaeError> {
        let act = config.validate()?;
        let latent = config.latent_channels;
        let quant_conv = if config.use_quant_conv {
            Some(
                conv2d(2 * latent, 2 * latent, 1, 1, 0, vb.pp("quant_conv"))
                    .loading("quant_conv")?,
            )
        } else {
            None
        };
        let post_quant_conv = if config.use_post_quant_conv {
            Some(
                conv2d(latent, latent, 1, 1, 0, vb.pp("post_quant_conv"))
                    .loading("post_quant_conv")?,
            )
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            encoder: Encoder::new(config, act, vb.pp("encoder"))?,
            decoder: Decoder::new(config, act, vb.pp("decoder"))?,
            quant_conv,
            post_quant_conv,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Spatial factor between images and latents.
    pub fn downsampling_factor(&self) -> usize {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// Encodes images `[B, in_channels, H, W]` in [-1, 1] into the latent distribution.
    pub fn encode(&self, x: &Tensor) -> Result<DiagonalGaussian, VaeError> {
        self.encode_latent_stage(&self.encode_downsampling_stage(x)?)
    }

    /// The encoder's convolutions down to the latent's resolution (tiled encodes run it
    /// tile by tile).
    pub(super) fn encode_downsampling_stage(&self, x: &Tensor) -> Result<Tensor, VaeError> {
        check_image("x", x, self.config.in_channels)?;
        self.encoder.downsampling_stage(x)
    }

    /// The rest of the encoder, at the latent's resolution, and `quant_conv`.
    pub(super) fn encode_latent_stage(&self, h: &Tensor) -> Result<DiagonalGaussian, VaeError> {
        let h = self.encoder.latent_stage(h)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&h).running("quant_conv")?,
            None => h,
        };
        DiagonalGaussian::from_moments(&moments)
    }

    /// Decodes latents `[B, latent_channels, h, w]` (already divided by `scaling_factor`)
    /// into images, roughly in [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor, VaeError> {
        self.decode_upsampling_stage(&self.decode_latent_stage(z)?)
    }

    /// `post_quant_conv` and the decoder's part at the latent's resolution.
    pub(super) fn decode_latent_stage(&self, z: &Tensor) -> Result<Tensor, VaeError> {
        check_image("z", z, self.config.latent_channels)?;
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z).running("post_quant_conv")?,
            None => z.clone(),
        };
        self.decoder.latent_stage(&z)
    }

    /// The decoder's up-sampling part (tiled decodes run it tile by tile).
    pub(super) fn decode_upsampling_stage(&self, h: &Tensor) -> Result<Tensor, VaeError> {
        self.decoder.upsampling_stage(h)
    }
}

/// Checks a `[B, channels, H, W]` input with non-empty sides.
fn check_image(name: &'static str, t: &Tensor, channels: usize) -> Result<(), VaeError> {
    let d = t.dims();
    if d.len() != 4 || d[1] != channels || d[2] == 0 || d[3] == 0 {
        return Err(VaeError::Input {
            name,
            expected: format!("[batch, {channels}, height, width]"),
            got: d.to_vec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny() -> VaeConfig {
        VaeConfig {
            block_out_channels: vec![8, 16],
            down_block_types: vec!["DownEncoderBlock2D".into(); 2],
            up_block_types: vec!["UpDecoderBlock2D".into(); 2],
            norm_num_groups: 4,
            ..Default::default()
        }
    }

    #[test]
    fn random_tiny_vae_round_trips_shapes() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vae =
            AutoencoderKL::new(VarBuilder::from_varmap(&map, DType::F32, &dev), &tiny()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 10, 14), &dev).unwrap();
        let post = vae.encode(&x).unwrap();
        assert_eq!(post.mean.dims(), &[2, 4, 5, 7]);
        let img = vae.decode(post.mode()).unwrap();
        assert_eq!(img.dims(), &[2, 3, 10, 14]);
        let err = vae.decode(&x).unwrap_err().to_string();
        assert!(err.contains("`z`"), "{err}");
    }

    #[test]
    fn legacy_attention_names_load() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        AutoencoderKL::new(vb, &tiny()).unwrap();
        // Rename the mid-block attention projections to the pre-0.14 names.
        let mut tensors = std::collections::HashMap::new();
        for (name, var) in map.data().lock().unwrap().iter() {
            let renamed = name
                .replace(".to_q.", ".query.")
                .replace(".to_k.", ".key.")
                .replace(".to_v.", ".value.")
                .replace(".to_out.0.", ".proj_attn.");
            tensors.insert(renamed, var.as_tensor().clone());
        }
        assert!(tensors.contains_key("decoder.mid_block.attentions.0.query.weight"));
        let vae = AutoencoderKL::new(VarBuilder::from_tensors(tensors, DType::F32, &dev), &tiny())
            .unwrap();
        let z = Tensor::zeros((1, 4, 3, 3), DType::F32, &dev).unwrap();
        assert_eq!(vae.decode(&z).unwrap().dims(), &[1, 3, 6, 6]);
    }
}
