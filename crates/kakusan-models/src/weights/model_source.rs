//! A model as the user names it: a diffusers folder (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`) or a single-file LDM/A1111 `.safetensors`
//! checkpoint. Either way it offers, per component, a diffusers config JSON (read from the
//! folder, or derived by detection) and a `VarBuilder` with canonical names; plus the
//! scheduler config, the tokenizer folder, a display name and A1111's model hash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;

use super::backend::MappedBackend;
use super::detect::{detect, DetectOptions, Detected, Prediction};
use super::error::{Result, WeightsError};
use super::hash::{sha256_file, short_hash};
use super::names::{
    DiffusersNaming, DiffusersPart, KeyNaming, LdmClipNaming, LdmUnetNaming, LdmVaeNaming,
    OpenClipNaming,
};
use super::store::{has_pickle_extension, SafetensorsStore};
use super::TextEncoderKind;

/// A model component with weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Unet,
    Vae,
    TextEncoder,
}

impl Component {
    /// All components.
    pub const ALL: [Component; 3] = [Component::Unet, Component::Vae, Component::TextEncoder];

    /// The component's sub-folder in a diffusers folder.
    pub fn folder(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
        }
    }

    /// The stem of the weights file in that sub-folder.
    fn weights_stem(self) -> &'static str {
        match self {
            Component::Unet | Component::Vae => "diffusion_pytorch_model",
            Component::TextEncoder => "model",
        }
    }

    /// Pickle files that may stand in that sub-folder instead of safetensors.
    fn pickle_names(self) -> &'static [&'static str] {
        match self {
            Component::Unet | Component::Vae => &[
                "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.bin",
            ],
            Component::TextEncoder => &[
                "model.bin",
                "pytorch_model.bin",
                "pytorch_model.fp16.bin",
                "model.fp16.bin",
            ],
        }
    }

    fn index(self) -> usize {
        match self {
            Component::Unet => 0,
            Component::Vae => 1,
            Component::TextEncoder => 2,
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Component::Unet => "UNet",
            Component::Vae => "VAE",
            Component::TextEncoder => "text encoder",
        })
    }
}

/// How the model is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    DiffusersFolder,
    SingleFile,
}

/// Choices made when opening a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenOptions {
    /// The prediction type, overriding detection (single files) and the folder's scheduler
    /// config.
    pub prediction: Option<Prediction>,
    /// In diffusers folders, use the `*.fp16.safetensors` weights even when full-precision
    /// ones exist (they are used anyway when they are the only ones).
    pub prefer_fp16_variant: bool,
    /// The tokenizer folder to use when the model has none (single files never carry one).
    pub tokenizer_fallback: Option<PathBuf>,
    /// For single files: a diffusers folder whose `*/config.json` and
    /// `scheduler/scheduler_config.json` replace the derived configs (like diffusers'
    /// `from_single_file(path, config=folder)`). Needed when the model departs from its
    /// family's conventions in what the weights cannot show (attention heads, GroupNorm
    /// groups), e.g. tiny test models. Its `tokenizer/`, if any, is used too. The configs
    /// must agree with the weights' layout (checked).
    pub config_from: Option<PathBuf>,
}

/// One component's weights and config.
#[derive(Debug)]
struct Part {
    store: Arc<SafetensorsStore>,
    naming: Arc<dyn KeyNaming>,
    config: Value,
}

/// An opened model.
#[derive(Debug)]
pub struct ModelSource {
    path: PathBuf,
    name: String,
    format: SourceFormat,
    parts: [Part; 3],
    scheduler_config: Value,
    tokenizer_dir: Option<PathBuf>,
    detected: Option<Detected>,
    hashed_file: PathBuf,
    sha256: OnceLock<String>,
}

impl ModelSource {
    /// Opens a diffusers folder or a single-file `.safetensors` checkpoint with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens a diffusers folder or a single-file `.safetensors` checkpoint.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            open_folder(path, options)
        } else if path.exists() {
            open_single_file(path, options)
        } else if has_pickle_extension(path) {
            Err(WeightsError::pickle(path, ""))
        } else {
            Err(WeightsError::MissingFile {
                path: path.to_path_buf(),
            })
        }
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's display name: the file stem or the folder name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Folder or single file.
    pub fn format(&self) -> SourceFormat {
        self.format
    }

    /// The component's diffusers config (read from the folder, or derived by detection).
    pub fn config(&self, component: Component) -> &Value {
        &self.parts[component.index()].config
    }

    /// The scheduler config (`scheduler/scheduler_config.json`, or derived), with the
    /// prediction override applied.
    pub fn scheduler_config(&self) -> &Value {
        &self.scheduler_config
    }

    /// The prediction type the scheduler config states (diffusers' default: epsilon).
    pub fn prediction(&self) -> Prediction {
        self.scheduler_config
            .get("prediction_type")
            .and_then(Value::as_str)
            .and_then(Prediction::parse)
            .unwrap_or(Prediction::Epsilon)
    }

    /// What detection found (single files only).
    pub fn detected(&self) -> Option<&Detected> {
        self.detected.as_ref()
    }

    /// The tokenizer folder: the model's own `tokenizer/`, else the fallback given at open.
    pub fn tokenizer_dir(&self) -> Option<&Path> {
        self.tokenizer_dir.as_deref()
    }

    /// The tensor store a component reads.
    pub fn store(&self, component: Component) -> &Arc<SafetensorsStore> {
        &self.parts[component.index()].store
    }

    /// The weights of a component by canonical (diffusers) names.
    pub fn component_backend(&self, component: Component) -> MappedBackend {
        let part = &self.parts[component.index()];
        MappedBackend::new(part.store.clone(), part.naming.clone(), component.folder())
    }

    /// A `VarBuilder` over a component's weights, by canonical names, of `dtype` on `device`.
    pub fn component_vb(
        &self,
        component: Component,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        self.component_backend(component)
            .into_var_builder(dtype, device)
    }

    /// The file the model hash is computed from: the single file itself, or for a folder the
    /// UNet weights file (its first shard when sharded). A folder's hash therefore differs
    /// from the hash of the same model as one file; A1111 has no folder hash to match.
    pub fn hashed_file(&self) -> &Path {
        &self.hashed_file
    }

    /// The full SHA-256 (hex) of [`Self::hashed_file`], computed once (reads the whole file)
    /// and remembered in the user's hash cache (see `hash_cache`) for later loads.
    pub fn sha256(&self) -> Result<&str> {
        if let Some(sha) = self.sha256.get() {
            return Ok(sha);
        }
        let sha = match super::hash_cache::HashCache::default_location() {
            Some(cache) => cache.sha256(&self.hashed_file)?,
            None => sha256_file(&self.hashed_file)?,
        };
        Ok(self.sha256.get_or_init(|| sha))
    }

    /// A1111's model hash ("AutoV2"): the first 10 hex digits of [`Self::sha256`].
    pub fn model_hash(&self) -> Result<String> {
        Ok(short_hash(self.sha256()?))
    }
}

/// The display name of a path: file stem or folder name.
fn display_name(path: &Path, is_folder: bool) -> String {
    let resolved;
    let path = if path.file_name().is_none() {
        resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        resolved.as_path()
    } else {
        path
    };
    let name = if is_folder {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string())
}

fn apply_prediction_override(config: &mut Value, prediction: Option<Prediction>) {
    if let (Some(p), Some(map)) = (prediction, config.as_object_mut()) {
        map.insert(
            "prediction_type".to_string(),
            Value::from(p.diffusers_name()),
        );
    }
}

fn open_single_file(path: &Path, options: &OpenOptions) -> Result<ModelSource> {
    let store = Arc::new(SafetensorsStore::open(path)?);
    let detected = detect(
        &store,
        path,
        &DetectOptions {
            prediction: options.prediction,
        },
    )?;
    let configs = match &options.config_from {
        Some(folder) => configs_from_folder(folder, &detected, options.prediction)?,
        None => DerivedConfigs {
            unet: detected.unet_config(),
            vae: detected.vae_config(),
            text: detected.text_encoder_config(),
            scheduler: detected.scheduler_config(),
            tokenizer_dir: None,
        },
    };
    let text_naming: Arc<dyn KeyNaming> = match detected.text.kind {
        TextEncoderKind::Clip => Arc::new(LdmClipNaming::new(detected.text.prefix.clone())),
        TextEncoderKind::OpenClip => Arc::new(OpenClipNaming::new(detected.text.prefix.clone())),
    };
    let parts = [
        Part {
            store: store.clone(),
            naming: Arc::new(LdmUnetNaming::new(
                detected.unet.prefix.clone(),
                detected.unet.layout.clone(),
            )),
            config: configs.unet,
        },
        Part {
            store: store.clone(),
            naming: Arc::new(LdmVaeNaming::new(
                detected.vae.prefix.clone(),
                detected.vae.block_out_channels.len(),
            )),
            config: configs.vae,
        },
        Part {
            store,
            naming: text_naming,
            config: configs.text,
        },
    ];
    tracing::info!(
        path = %path.display(),
        family = ?detected.family,
        prediction = detected.prediction.diffusers_name(),
        evidence = ?detected.prediction_evidence,
        "opened single-file checkpoint"
    );
    Ok(ModelSource {
        path: path.to_path_buf(),
        name: display_name(path, false),
        format: SourceFormat::SingleFile,
        parts,
        scheduler_config: configs.scheduler,
        tokenizer_dir: configs
            .tokenizer_dir
            .or_else(|| options.tokenizer_fallback.clone()),
        detected: Some(detected),
        hashed_file: path.to_path_buf(),
        sha256: OnceLock::new(),
    })
}

/// The configs a single file is used with.
struct DerivedConfigs {
    unet: Value,
    vae: Value,
    text: Value,
    scheduler: Value,
    tokenizer_dir: Option<PathBuf>,
}

/// The configs of diffusers folder `folder`, checked against what the weights hold.
fn configs_from_folder(
    folder: &Path,
    detected: &Detected,
    prediction: Option<Prediction>,
) -> Result<DerivedConfigs> {
    let read = |component: &str, file: &str| {
        read_json(&folder.join(component).join(file), component, folder)
    };
    let unet = read("unet", "config.json")?;
    let vae = read("vae", "config.json")?;
    let text = read("text_encoder", "config.json")?;
    let mut scheduler = read("scheduler", "scheduler_config.json")?;
    // A folder config that does not describe these weights would fail later with a shape
    // error on some tensor; say it here, in terms of the configs.
    let check = |component: &str, field: &str, config: &Value, want: Value| -> Result<()> {
        let got = config.get(field).cloned().unwrap_or(Value::Null);
        let same = match (&got, &want) {
            // diffusers allows an int for "the same at every level".
            (Value::Number(n), Value::Array(list)) => {
                list.iter().all(|v| v == &Value::Number(n.clone()))
            }
            _ => got == want,
        };
        if same {
            Ok(())
        } else {
            Err(WeightsError::BadConfig {
                path: folder.join(component).join("config.json"),
                detail: format!("`{field}` is {got} but the checkpoint's weights have {want}"),
            })
        }
    };
    let layout = &detected.unet.layout;
    check(
        "unet",
        "block_out_channels",
        &unet,
        serde_json::json!(layout.block_out_channels),
    )?;
    check(
        "unet",
        "layers_per_block",
        &unet,
        serde_json::json!(layout.layers_per_block),
    )?;
    check(
        "unet",
        "cross_attention_dim",
        &unet,
        serde_json::json!(detected.unet.cross_attention_dim),
    )?;
    check(
        "vae",
        "block_out_channels",
        &vae,
        serde_json::json!(detected.vae.block_out_channels),
    )?;
    check(
        "unet",
        "in_channels",
        &unet,
        serde_json::json!(detected.unet.in_channels),
    )?;
    check(
        "vae",
        "latent_channels",
        &vae,
        serde_json::json!(detected.vae.latent_channels),
    )?;
    check(
        "text_encoder",
        "hidden_size",
        &text,
        serde_json::json!(detected.text.hidden_size),
    )?;
    check(
        "text_encoder",
        "intermediate_size",
        &text,
        serde_json::json!(detected.text.intermediate_size),
    )?;
    let layers = text
        .get("num_hidden_layers")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    if layers == 0 || layers > detected.text.layers_in_file {
        return Err(WeightsError::BadConfig {
            path: folder.join("text_encoder").join("config.json"),
            detail: format!(
                "`num_hidden_layers` is {layers} but the checkpoint's text encoder has {} layers",
                detected.text.layers_in_file
            ),
        });
    }
    apply_prediction_override(&mut scheduler, prediction);
    let tokenizer = folder.join("tokenizer");
    Ok(DerivedConfigs {
        unet,
        vae,
        text,
        scheduler,
        tokenizer_dir: tokenizer.is_dir().then_some(tokenizer),
    })
}

/// The names in `dir`, sorted, for messages ("a, b, c" or "nothing" / "no such folder").
fn listing(dir: &Path) -> String {
    match std::fs::read_dir(dir) {
        Err(_) => format!("no folder {}", dir.display()),
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let mut n = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() {
                        n.push('/');
                    }
                    n
                })
                .collect();
            names.sort();
            if names.is_empty() {
                format!("an empty folder {}", dir.display())
            } else {
                format!("{} in {}", names.join(", "), dir.display())
            }
        }
    }
}

fn read_json(path: &Path, component: &str, folder: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WeightsError::MissingComponent {
                component: component.to_string(),
                folder: folder.to_path_buf(),
                expected: path.display().to_string(),
                found: listing(path.parent().unwrap_or(folder)),
            }
        } else {
            WeightsError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|e| WeightsError::BadConfig {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The weights file(s) of a folder component: the chosen variant, or a clear error.
fn component_weights(root: &Path, component: Component, prefer_fp16: bool) -> Result<PathBuf> {
    let dir = root.join(component.folder());
    let stem = component.weights_stem();
    let full = [
        format!("{stem}.safetensors"),
        format!("{stem}.safetensors.index.json"),
    ];
    let half = [
        format!("{stem}.fp16.safetensors"),
        format!("{stem}.fp16.safetensors.index.json"),
    ];
    let order: Vec<&String> = if prefer_fp16 {
        half.iter().chain(full.iter()).collect()
    } else {
        full.iter().chain(half.iter()).collect()
    };
    if let Some(found) = order.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    if let Some(pickle) = component
        .pickle_names()
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    {
        return Err(WeightsError::pickle(&pickle, ""));
    }
    Err(WeightsError::MissingComponent {
        component: component.to_string(),
        folder: root.to_path_buf(),
        expected: format!("{} (or {})", dir.join(&full[0]).display(), half[0]),
        found: listing(&dir),
    })
}

fn open_folder(root: &Path, options: &OpenOptions) -> Result<ModelSource> {
    if !root.join("model_index.json").is_file() && !root.join("unet").is_dir() {
        return Err(WeightsError::NotAModelFolder {
            path: root.to_path_buf(),
            found: listing(root),
        });
    }
    let (unet, unet_weights) = open_folder_part(root, Component::Unet, options)?;
    let (vae, _) = open_folder_part(root, Component::Vae, options)?;
    let (text, _) = open_folder_part(root, Component::TextEncoder, options)?;
    let hashed_file = unet_weights;
    let mut scheduler_config = read_json(
        &root.join("scheduler").join("scheduler_config.json"),
        "scheduler",
        root,
    )?;
    apply_prediction_override(&mut scheduler_config, options.prediction);
    let own_tokenizer = root.join("tokenizer");
    let tokenizer_dir = if own_tokenizer.is_dir() {
        Some(own_tokenizer)
    } else {
        options.tokenizer_fallback.clone()
    };
    Ok(ModelSource {
        path: root.to_path_buf(),
        name: display_name(root, true),
        format: SourceFormat::DiffusersFolder,
        parts: [unet, vae, text],
        scheduler_config,
        tokenizer_dir,
        detected: None,
        hashed_file,
        sha256: OnceLock::new(),
    })
}

/// Opens one component of a diffusers folder; also returns its first weights file.
fn open_folder_part(
    root: &Path,
    component: Component,
    options: &OpenOptions,
) -> Result<(Part, PathBuf)> {
    let weights = component_weights(root, component, options.prefer_fp16_variant)?;
    let store = Arc::new(SafetensorsStore::open(&weights)?);
    let first_file = store
        .paths()
        .first()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| weights.clone());
    let config_path = root.join(component.folder()).join("config.json");
    let config = read_json(&config_path, &component.to_string(), root)?;
    let part = match component {
        Component::Unet => DiffusersPart::Unet,
        Component::Vae => DiffusersPart::Vae,
        Component::TextEncoder => DiffusersPart::TextEncoder,
    };
    tracing::debug!(%component, file = %weights.display(), tensors = store.len(), "opened component");
    Ok((
        Part {
            store,
            naming: Arc::new(DiffusersNaming::new(part)),
            config,
        },
        first_file,
    ))
}
