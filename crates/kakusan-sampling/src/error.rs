//! Errors of sampling.

#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("unknown sampler {name:?}; valid names: {valid}")]
    UnknownSampler { name: String, valid: String },
    #[error("unknown schedule {name:?}; valid names: {valid}")]
    UnknownSchedule { name: String, valid: String },
    #[error("scheduler config: {0}")]
    Config(String),
    #[error("the model call failed: {0}")]
    Model(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, SamplingError>;
