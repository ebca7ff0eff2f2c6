//! Weight loading: everything between a file on disk and a model's `VarBuilder`.
//!
//! - [`store`]: memory-mapped `.safetensors` files (one, or a sharded set) with validated
//!   headers; pickle files are refused. [`decode`] turns stored bytes into tensors of the
//!   requested dtype in one copy.
//! - [`names`]: key namings: where a canonical (diffusers, component-relative) tensor name is
//!   found in LDM/A1111 single files, OpenCLIP, transformers 4/5 and old diffusers files.
//! - [`backend`]: the `candle_nn` backend over a store and a naming, with shape checks.
//! - [`detect`]: the family, layout and prediction type of a single-file checkpoint, and
//!   ([`derived_config`]) the diffusers configs it corresponds to.
//! - [`model_source`]: a model as the user names it (folder or single file): configs,
//!   `VarBuilder`s per component, tokenizer folder, name and A1111 model hash.
//!
//! - [`textual_inversion`]: `.safetensors` textual-inversion embeddings (an `embeddings/`
//!   folder), pickle embeddings refused.
//!
//! - [`lora`]: kohya/A1111 and diffusers/PEFT LoRA files, merged into a copy of a component's
//!   weights as they load.
//!
//! Models never see file formats: they ask a `VarBuilder` for diffusers names.

pub mod backend;
pub mod decode;
pub mod derived_config;
pub mod detect;
pub mod error;
pub mod hash;
pub mod hash_cache;
pub mod lora;
pub mod model_source;
pub mod names;
pub mod store;
pub mod textual_inversion;

pub use backend::MappedBackend;
pub use detect::{
    detect, DetectOptions, Detected, Family, Prediction, PredictionEvidence, TextDetected,
    TextEncoderKind, UNetDetected, VaeDetected,
};
pub use error::{Result, WeightsError};
pub use lora::{LoraBackend, LoraFile, LoraTarget};
pub use model_source::{Component, ModelSource, OpenOptions, SourceFormat};
pub use names::{KeyNaming, Source, Transform, UNetLayout};
pub use store::SafetensorsStore;
pub use textual_inversion::{EmbeddingLibrary, TextualInversion};
