//! The error type of kakusan-eval.

use std::path::PathBuf;

/// Everything that can go wrong while building, training, loading or running the evaluator.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] kakusan_train::TrainError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file or value that cannot be used.
    #[error("invalid classifier configuration: {0}")]
    Config(String),
    /// The classifier folder is not usable.
    #[error("classifier at {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// A picture could not be turned into a tensor.
    #[error("picture: {0}")]
    Image(#[from] kakusan_core::image_io::ImageTensorError),
    /// The procedural data set refused a setting.
    #[error("data: {0}")]
    Data(#[from] kakusan_data::DataError),
    /// Two lists that must have the same length do not.
    #[error("{what}: {left} pictures but {right} relations")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
}

/// Result with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

/// Attaches a path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
    let path = path.into();
    move |source| EvalError::Io { path, source }
}
