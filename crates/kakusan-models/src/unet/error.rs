//! Errors of the UNet: unsupported or inconsistent configs, weights that do not fit the
//! config, inputs of the wrong shape, and failures inside a named block.

use candle_core::Error as CandleError;

/// What can go wrong building or running the UNet.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// The config file could not be read.
    #[error("reading UNet config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config is not valid JSON or a field has the wrong type.
    #[error("parsing UNet config: {0}")]
    Json(#[from] serde_json::Error),
    /// The config asks for an option this implementation does not have.
    #[error("UNet config option {option} = {value} is not supported{note}")]
    Unsupported {
        /// The config field.
        option: &'static str,
        /// Its value, as written in the config.
        value: String,
        /// Extra explanation, starting with "; " or empty.
        note: &'static str,
    },
    /// The config's fields contradict each other.
    #[error("invalid UNet config: {0}")]
    InvalidConfig(String),
    /// A weight is missing or has the wrong shape for the config.
    #[error("loading UNet weights ({place}): {source}")]
    Weights {
        /// The block being loaded, e.g. `down_blocks.1`.
        place: String,
        /// Candle's error, which names the tensor.
        source: CandleError,
    },
    /// An input tensor has the wrong shape.
    #[error("UNet input `{name}` must be {expected}, got shape {got:?}")]
    Input {
        /// Which argument.
        name: &'static str,
        /// What was expected.
        expected: String,
        /// What was given.
        got: Vec<usize>,
    },
    /// A computation failed inside a block.
    #[error("UNet forward failed in {place}: {source}")]
    Forward {
        /// The block, e.g. `up_blocks.2`.
        place: String,
        /// Candle's error.
        source: CandleError,
    },
}

/// Adds the place in the network to candle errors.
pub(crate) trait At<T> {
    /// Wraps a loading error.
    fn loading(self, place: &str) -> Result<T, UNetError>;
    /// Wraps a forward error.
    fn running(self, place: &str) -> Result<T, UNetError>;
}

impl<T> At<T> for candle_core::Result<T> {
    fn loading(self, place: &str) -> Result<T, UNetError> {
        self.map_err(|source| UNetError::Weights {
            place: place.to_string(),
            source,
        })
    }
    fn running(self, place: &str) -> Result<T, UNetError> {
        self.map_err(|source| UNetError::Forward {
            place: place.to_string(),
            source,
        })
    }
}
