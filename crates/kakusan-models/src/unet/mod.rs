//! The Stable Diffusion UNet (diffusers' `UNet2DConditionModel`, SD 1.x / 2.x layouts):
//! its config (`config.json` with diffusers' defaults), the per-block layout derived from
//! it, one module per block type, and the model that chains them. Weights come through a
//! `VarBuilder` with diffusers names relative to the UNet.

mod config;
mod cross_attn_down_block;
mod cross_attn_up_block;
mod down_block;
mod error;
mod layout;
mod mid_block;
mod model;
mod up_block;

pub use config::{PerBlock, SampleSize, TransformerLayers, UNetConfig};
pub use cross_attn_down_block::CrossAttnDownBlock2D;
pub use cross_attn_up_block::CrossAttnUpBlock2D;
pub use down_block::DownBlock2D;
pub use error::UNetError;
pub use layout::{
    CrossAttentionSettings, DownBlockLayout, MidBlockLayout, ResnetSettings, UNetLayout,
    UpBlockLayout,
};
pub use mid_block::UNetMidBlock2DCrossAttn;
pub use model::UNet2DConditionModel;
pub use up_block::UpBlock2D;
