//! kakusan-train owns training on candle: the optimiser ([`AdamW`]), an exponential moving
//! average of the weights ([`Ema`]), the learning-rate schedule ([`LrSchedule`]), gradient
//! clipping, resumable checkpoints, and the loss log with its plot. What is trained (the
//! VAE, the text encoder + UNet, the evaluator) is a [`TrainTask`] run by [`Trainer`].

pub mod adamw;
pub mod checkpoint;
pub mod ema;
pub mod error;
pub mod export;
mod fused_update;
pub mod grad_clip;
pub mod init;
pub mod loss_log;
pub mod loss_plot;
pub mod lr_schedule;
pub mod named_vars;
pub mod run_config;
pub mod seeded_init;
pub mod tasks;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use checkpoint::{Checkpoint, CheckpointDir};
pub use ema::Ema;
pub use error::{Result, TrainError};
pub use grad_clip::clip_grad_norm;
pub use loss_log::LossLog;
pub use lr_schedule::LrSchedule;
pub use named_vars::NamedVars;
pub use trainer::{StepReport, TrainTask, Trainer, TrainerConfig};
