//! The errors of the CLIP module: reading tokenizer files and running the text encoder.

use std::path::PathBuf;

/// Why a CLIP tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The folder has neither layout a CLIP tokenizer is saved in.
    #[error(
        "no CLIP tokenizer in {dir}: expected either vocab.json + merges.txt \
         (hub layout) or tokenizer.json (transformers 5 layout)"
    )]
    MissingFiles { dir: PathBuf },

    /// A file exists (or was expected) but could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file does not parse.
    #[error("tokenizer file {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A file parses but does not hold what a CLIP tokenizer needs.
    #[error("tokenizer file {path}: {message}")]
    Format { path: PathBuf, message: String },

    /// A special token named by the configuration has no id.
    #[error(
        "the {role} token {content:?} named by the tokenizer configuration in {dir} \
         is not in its vocabulary"
    )]
    MissingSpecialToken {
        role: &'static str,
        content: String,
        dir: PathBuf,
    },
}

/// Why the CLIP text encoder could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum TextModelError {
    /// The text encoder's config.json could not be read or parsed.
    #[error("cannot read text encoder config {path}: {message}")]
    Config { path: PathBuf, message: String },

    /// The configuration describes no valid CLIP text transformer.
    #[error("invalid text encoder configuration: {0}")]
    InvalidConfig(String),

    /// The requested CLIP skip does not name one of the encoder's layers.
    #[error(
        "CLIP skip {clip_skip} is out of range: this text encoder has {num_layers} layers, \
         so CLIP skip must be between 1 (last layer) and {num_layers}"
    )]
    ClipSkipOutOfRange { clip_skip: usize, num_layers: usize },

    /// The token ids do not have the expected shape.
    #[error("token ids must be a [batch, sequence] tensor of integers, got shape {0:?}")]
    BadInputShape(Vec<usize>),

    /// More tokens than the encoder has position embeddings.
    #[error(
        "a sequence of {len} tokens is longer than the {max} positions this text encoder \
         supports"
    )]
    SequenceTooLong { len: usize, max: usize },

    /// A tensor operation failed (missing or misshaped weight, dtype or device problem).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
