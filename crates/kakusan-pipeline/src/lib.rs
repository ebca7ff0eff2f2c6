//! kakusan-pipeline owns generation: the `Job` type, loading a model for generation, text
//! conditioning, classifier-free guidance, txt2img and img2img, the memory estimate made
//! before allocating, and writing outputs.

pub mod bench;
pub mod conditioning;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod generation_defaults;
pub mod guidance;
pub mod job;
pub mod lora;
pub mod memory_estimate;
pub mod sandstorm;
pub mod save;
pub mod stable_diffusion;
pub mod vae_tiling;

pub use error::{PipelineError, Result};
pub use generation::{check_sampler, Generation, Progress};
pub use generation_defaults::GenerationDefaults;
pub use job::Job;
pub use kakusan_sampling::{SamplerOptions, ScheduleKind, ScheduleOptions};
pub use save::{save_image_to, save_images, save_latents};
pub use stable_diffusion::{default_model_path, LoadOptions, StableDiffusion};
pub use vae_tiling::{VaeMode, VaeTiling};
