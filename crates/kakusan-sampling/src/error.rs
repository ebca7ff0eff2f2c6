//! The error type of kakusan-sampling.

/// Everything that can go wrong while building a schedule or sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device, dtype).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    /// The network call behind a denoiser failed; the source says why.
    #[error("the model call failed: {0}")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A sampler name that is not known; `valid` lists the accepted names.
    #[error("unknown sampler {name:?}; valid names: {valid}")]
    UnknownSampler { name: String, valid: String },

    /// A schedule name that is not known; `valid` lists the accepted names.
    #[error("unknown schedule {name:?}; valid names: {valid}")]
    UnknownSchedule { name: String, valid: String },

    /// A schedule request that cannot be honoured (zero steps, too many steps, ...).
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),

    /// A scheduler configuration value we cannot reproduce.
    #[error("unsupported scheduler configuration: {0}")]
    UnsupportedConfig(String),

    /// The noise source and the latents disagree (e.g. batch size vs number of seeds).
    #[error("noise source mismatch: {0}")]
    Noise(String),

    /// Reading or parsing a scheduler_config.json failed.
    #[error("cannot read scheduler config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
