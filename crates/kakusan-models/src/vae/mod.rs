//! The Stable Diffusion autoencoder (diffusers' `AutoencoderKL`): its config, the encoder
//! and decoder with their blocks (one module per block type), and the diagonal Gaussian
//! latent distribution. Weights come through a `VarBuilder` with diffusers names relative
//! to the VAE.

mod attention_block;
mod autoencoder_kl;
mod config;
mod decoder;
mod diagonal_gaussian;
mod down_encoder_block;
mod encoder;
mod error;
mod mid_block;
mod tiled;
mod up_decoder_block;

pub use attention_block::VaeAttentionBlock;
pub use autoencoder_kl::AutoencoderKL;
pub use config::VaeConfig;
pub use decoder::Decoder;
pub use diagonal_gaussian::DiagonalGaussian;
pub use down_encoder_block::DownEncoderBlock2D;
pub use encoder::Encoder;
pub use error::VaeError;
pub use mid_block::VaeMidBlock;
pub use tiled::{tile_starts, DEFAULT_OVERLAP, DEFAULT_TILE};
pub use up_decoder_block::UpDecoderBlock2D;
