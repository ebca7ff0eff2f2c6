//! The errors of weight loading: every message names the file (or tensor) concerned and says
//! what the user can do about it.

use std::path::PathBuf;

/// What can go wrong while finding, opening and reading model weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The path given does not exist.
    #[error("model file {path} does not exist; check the path (a diffusers folder or a single-file .safetensors checkpoint)")]
    MissingFile { path: PathBuf },

    /// A PyTorch pickle checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin`): never loaded.
    #[error(
        "{path} is a PyTorch pickle file{why}; kakusan does not load pickles because unpickling can run \
         arbitrary code. Convert it to .safetensors first, in an environment you trust, e.g.\n  \
         python -c \"import torch, safetensors.torch as st; sd = torch.load('{name}', map_location='cpu', weights_only=True); \
         sd = sd.get('state_dict', sd); st.save_file({{k: v.clone().contiguous() for k, v in sd.items() if hasattr(v, 'contiguous')}}, '{stem}.safetensors')\"\n\
         (if weights_only=True refuses an old checkpoint and you trust its source, use weights_only=False), \
         or with diffusers' / AUTOMATIC1111's checkpoint converters, or download the .safetensors version of the model"
    )]
    PickleRefused {
        path: PathBuf,
        /// Extra explanation, e.g. " (its content is a zip/pickle archive despite its name)".
        why: String,
        name: String,
        stem: String,
    },

    /// Reading the file failed at the operating-system level.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is shorter than its header says: an interrupted download or copy.
    #[error(
        "{path} is truncated: {what} needs {needed} bytes but the file holds only {actual}; \
         the download or copy was probably interrupted: download the file again"
    )]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        actual: u64,
    },

    /// The JSON header of a safetensors file cannot be parsed.
    #[error("{path} has a corrupt safetensors header ({detail}); the file is damaged or not a safetensors file: download it again")]
    CorruptHeader { path: PathBuf, detail: String },

    /// A tensor is stored in a dtype we cannot turn into float weights.
    #[error(
        "tensor `{tensor}` in {path} is stored as {dtype}, which kakusan cannot load \
         (supported: F16, BF16, F32, F64); convert the checkpoint to an fp16 or fp32 .safetensors file"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    /// Weights were requested in a dtype that is not a float type.
    #[error("weights can only be loaded as F16, BF16, F32 or F64, not {dtype:?}")]
    UnsupportedTargetDtype { dtype: candle_core::DType },

    /// No key of the file(s) holds the tensor a model asked for.
    #[error(
        "the {component} weights have no tensor `{name}`{expected} in {files}; the checkpoint does not match \
         the model configuration (a different model family or a damaged/partial file?)"
    )]
    TensorNotFound {
        component: String,
        name: String,
        /// " (looked for `key`, `key2`)" or empty.
        expected: String,
        files: String,
    },

    /// A tensor exists but its shape is not the one the model needs.
    #[error(
        "tensor `{}` of the {} (key `{}` in {}) has shape {:?} but the model expects {:?}; \
         the checkpoint does not match the model configuration",
        .0.name, .0.component, .0.key, .0.path.display(), .0.found, .0.expected
    )]
    ShapeMismatch(Box<ShapeMismatch>),

    /// The same key appears in two shards of a sharded set.
    #[error(
        "tensor `{key}` appears in both {first} and {second}; the sharded weights are inconsistent"
    )]
    DuplicateKey {
        key: String,
        first: PathBuf,
        second: PathBuf,
    },

    /// A sharded set's `*.safetensors.index.json` is unreadable.
    #[error("{path} is not a valid safetensors shard index ({detail})")]
    BadShardIndex { path: PathBuf, detail: String },

    /// A diffusers folder lacks a file the component needs.
    #[error(
        "the {component} of diffusers folder {folder} is missing: expected {expected}; found {found}; \
         the folder is incomplete: download the missing files again, or give a complete model"
    )]
    MissingComponent {
        component: String,
        folder: PathBuf,
        expected: String,
        found: String,
    },

    /// A folder that is not a diffusers model folder.
    #[error(
        "{path} is not a diffusers model folder (no model_index.json and no unet/); found {found}. \
         Give a diffusers folder or a single-file .safetensors checkpoint"
    )]
    NotAModelFolder { path: PathBuf, found: String },

    /// A JSON configuration file cannot be read or parsed.
    #[error("cannot use config file {path}: {detail}")]
    BadConfig { path: PathBuf, detail: String },

    /// The checkpoint is of a model family kakusan does not support (yet).
    #[error("{path} is {family}, which kakusan does not support yet (supported: Stable Diffusion 1.x and 2.x)")]
    UnsupportedModel { path: PathBuf, family: String },

    /// The file holds no (or an incomplete) Stable Diffusion checkpoint.
    #[error("{path} is not a Stable Diffusion 1.x/2.x checkpoint: {detail}")]
    NotACheckpoint { path: PathBuf, detail: String },

    /// Reading tensor values for detection failed.
    #[error("cannot read tensor `{tensor}` of {path}: {detail}")]
    TensorRead {
        path: PathBuf,
        tensor: String,
        detail: String,
    },
}

/// The details of a [`WeightsError::ShapeMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The component ("unet").
    pub component: String,
    /// The canonical tensor name.
    pub name: String,
    /// The file key it was read from.
    pub key: String,
    pub path: PathBuf,
    /// The shape the model asked for (empty when the naming's transform could not apply).
    pub expected: Vec<usize>,
    /// The shape in the file.
    pub found: Vec<usize>,
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, WeightsError>;

impl WeightsError {
    /// Turns this error into a candle error (for `SimpleBackend`), keeping the message.
    pub fn into_candle(self) -> candle_core::Error {
        candle_core::Error::wrap(self)
    }

    /// The pickle refusal for `path`, with an optional explanation.
    pub(crate) fn pickle(path: &std::path::Path, why: &str) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        // A pickle named `.safetensors`: the suggested command must not write over it.
        if path.extension().is_some_and(|e| e == "safetensors") {
            stem.push_str("-converted");
        }
        WeightsError::PickleRefused {
            path: path.to_path_buf(),
            why: why.to_string(),
            name,
            stem,
        }
    }
}
