//! The error type of kakusan-train.

use std::path::PathBuf;

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing a piece or does not fit the model being trained.
    #[error("checkpoint {path}: {reason}; delete the folder or train without --resume")]
    Checkpoint { path: PathBuf, reason: String },
    /// The loss became NaN or infinite.
    #[error("the loss is {loss} at step {step}; lower the learning rate or check the data")]
    Diverged { step: u64, loss: f32 },
    /// A configuration value that cannot be used.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// Writing an output file failed.
    #[error(transparent)]
    Output(#[from] kakusan_core::output::OutputError),
}

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

/// Attaches a path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
