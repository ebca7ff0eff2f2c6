//! The pipeline's error type: every way a generation can fail, each with a message that
//! says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error(
        "{width}x{height} (batch {batch}) needs about {estimate_gib:.1} GiB of memory, but only \
         {available_gib:.1} GiB is available; choose a smaller size or batch"
    )]
    TooLarge {
        width: usize,
        height: usize,
        batch: usize,
        estimate_gib: f64,
        available_gib: f64,
    },
    #[error("init image {path}: {source}")]
    InitImage {
        path: PathBuf,
        #[source]
        source: Box<kakusan_core::image_io::LoadImageError>,
    },
    #[error(transparent)]
    ImageTensor(#[from] kakusan_core::image_io::ImageTensorError),
    #[error(transparent)]
    Weights(#[from] kakusan_models::weights::WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] kakusan_models::clip::TokenizerError),
    #[error(transparent)]
    Sampling(#[from] kakusan_sampling::Error),
    #[error("model configuration: {0}")]
    Config(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("writing {path}: {reason}")]
    Output { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, PipelineError>;
