//! Errors of the autoencoder: unsupported or inconsistent configs, weights that do not fit
//! the config, inputs of the wrong shape, and failures inside a named part.

use candle_core::Error as CandleError;

/// What can go wrong building or running the VAE.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// The config file could not be read.
    #[error("reading VAE config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config is not valid JSON or a field has the wrong type.
    #[error("parsing VAE config: {0}")]
    Json(#[from] serde_json::Error),
    /// The config asks for an option this implementation does not have.
    #[error("VAE config option {option} = {value} is not supported{note}")]
    Unsupported {
        /// The config field.
        option: &'static str,
        /// Its value, as written in the config.
        value: String,
        /// Extra explanation, starting with "; " or empty.
        note: &'static str,
    },
    /// The config's fields contradict each other.
    #[error("invalid VAE config: {0}")]
    InvalidConfig(String),
    /// A weight is missing or has the wrong shape for the config.
    #[error("loading VAE weights ({place}): {source}")]
    Weights {
        /// The part being loaded, e.g. `encoder.down_blocks.1`.
        place: String,
        /// Candle's error, which names the tensor.
        source: CandleError,
    },
    /// An input tensor has the wrong shape.
    #[error("VAE input `{name}` must be {expected}, got shape {got:?}")]
    Input {
        /// Which argument.
        name: &'static str,
        /// What was expected.
        expected: String,
        /// What was given.
        got: Vec<usize>,
    },
    /// A computation failed inside a part of the network.
    #[error("VAE forward failed in {place}: {source}")]
    Forward {
        /// The part, e.g. `decoder.up_blocks.2`.
        place: String,
        /// Candle's error.
        source: CandleError,
    },
}

/// Adds the place in the network to candle errors.
pub(crate) trait At<T> {
    /// Wraps a loading error.
    fn loading(self, place: &str) -> Result<T, VaeError>;
    /// Wraps a forward error.
    fn running(self, place: &str) -> Result<T, VaeError>;
}

impl<T> At<T> for candle_core::Result<T> {
    fn loading(self, place: &str) -> Result<T, VaeError> {
        self.map_err(|source| VaeError::Weights {
            place: place.to_string(),
            source,
        })
    }
    fn running(self, place: &str) -> Result<T, VaeError> {
        self.map_err(|source| VaeError::Forward {
            place: place.to_string(),
            source,
        })
    }
}

/// A candle error outside any one part of the network (the tiled passes' bookkeeping).
impl From<candle_core::Error> for VaeError {
    fn from(source: candle_core::Error) -> Self {
        VaeError::Forward {
            place: "tiled pass".to_string(),
            source,
        }
    }
}
