//! The things kakusan trains, each a [`TrainTask`](crate::TrainTask) whose batch depends
//! only on the step number.

pub mod caption_probe;
pub mod captioned_images;
pub mod diffusion_task;
pub mod feature_alignment;
pub mod folder_images;
pub mod prior_mixed_images;
pub mod procedural_images;
pub mod timestep_sampling;
pub mod vae_task;

pub use caption_probe::{CaptionLabels, CaptionProbe};
pub use captioned_images::CaptionedImages;
pub use diffusion_task::{DiffusionTask, DiffusionTaskConfig};
pub use feature_alignment::{FeatureAlignment, FeatureTeacher};
pub use folder_images::FolderImages;
pub use prior_mixed_images::PriorMixedImages;
pub use procedural_images::{ProceduralDataConfig, ProceduralImages};
pub use timestep_sampling::TimestepSampling;
pub use vae_task::{VaeTask, VaeTaskConfig};
