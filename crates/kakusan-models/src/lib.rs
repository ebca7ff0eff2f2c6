//! kakusan-models owns the Stable Diffusion networks and how their weights are found:
//! the CLIP tokenizer and text encoders (`clip`), the UNet (`unet`), the autoencoder (`vae`),
//! shared layers (`nn`), and weight loading from diffusers folders and single-file
//! checkpoints (`weights`). Models see only `candle_nn::VarBuilder`s with diffusers names;
//! file formats and key namings stay inside `weights`.

pub mod clip;
pub mod nn;
pub mod unet;
pub mod vae;
pub mod weights;
