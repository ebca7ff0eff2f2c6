//! A Stable Diffusion model loaded for generation: tokenizer, text encoder, UNet, VAE and
//! the noise schedule, built from a `ModelSource` (diffusers folder or single file).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use kakusan_core::device::{DTypeChoice, DeviceChoice};
use kakusan_models::clip::{ClipTextConfig, ClipTextModel, Tokenizer};
use kakusan_models::unet::{SampleSize, UNet2DConditionModel, UNetConfig};
use kakusan_models::vae::{AutoencoderKL, VaeConfig};
use kakusan_models::weights::{
    Component, EmbeddingLibrary, ModelSource, OpenOptions, Prediction as WeightsPrediction,
};
use kakusan_sampling::{Prediction, SchedulerConfig};

use crate::error::{PipelineError, Result};
use crate::memory_estimate::ModelFootprint;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    pub dtype: DTypeChoice,
    /// Overrides the prediction type read from the config or detected from the weights.
    pub prediction: Option<Prediction>,
    /// For a single file whose sizes cannot all be read from the weights (head counts,
    /// norm groups of a non-standard model): a diffusers folder whose configs to use.
    pub config_from: Option<PathBuf>,
    /// The textual-inversion embeddings folder; `None`: `embeddings/` next to the model
    /// (a missing folder means no embeddings).
    pub embeddings_dir: Option<PathBuf>,
    /// The LoRA folder (`<lora:name:w>` reads `name.safetensors` there); `None`: `loras/`
    /// next to the model.
    pub lora_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Cpu,
            dtype: DTypeChoice::F32,
            prediction: None,
            config_from: None,
            embeddings_dir: None,
            lora_dir: None,
        }
    }
}

/// The CLIP vocabulary every single-file checkpoint needs (single files carry no tokenizer).
pub fn bundled_tokenizer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer")
}

/// Where embeddings are looked for when no folder is given: `embeddings/` beside the model
/// (the model file's or folder's parent).
pub fn default_embeddings_dir(model: &Path) -> PathBuf {
    model
        .parent()
        .map_or_else(|| PathBuf::from("embeddings"), |p| p.join("embeddings"))
}

/// Where LoRA files are looked for when no folder is given: `loras/` beside the model.
pub fn default_lora_dir(model: &Path) -> PathBuf {
    model
        .parent()
        .map_or_else(|| PathBuf::from("loras"), |p| p.join("loras"))
}

/// The model used when none is given: the built-in model when it exists.
pub fn default_model_path() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = root.join("models/kakusan-mini");
    candidate
        .join("model_index.json")
        .is_file()
        .then_some(candidate)
}

pub struct StableDiffusion {
    pub(crate) tokenizer: Tokenizer,
    pub(crate) text_model: ClipTextModel,
    pub(crate) unet: UNet2DConditionModel,
    pub(crate) unet_config: UNetConfig,
    pub(crate) vae: AutoencoderKL,
    pub(crate) vae_config: VaeConfig,
    pub(crate) scheduler: SchedulerConfig,
    pub(crate) prediction: Prediction,
    /// Clip skip that the checkpoint itself implies (2 for SD2 single files, whose text
    /// encoder holds all 24 layers); added to the user's clip skip minus one.
    pub(crate) base_clip_skip: usize,
    pub(crate) device: Device,
    /// The dtype of the activations and of the text encoder's weights.
    pub(crate) dtype: DType,
    /// The dtype of the UNet's and the VAE's weights: `dtype`, except bf16 on the CPU.
    pub(crate) weights_dtype: DType,
    pub(crate) name: String,
    pub(crate) hash: String,
    pub(crate) footprint: ModelFootprint,
    /// When the VAE works in tiles.
    pub(crate) vae_tiling: crate::vae_tiling::VaeTiling,
    /// Textual-inversion embeddings usable in prompts, with their names' token ids.
    pub(crate) embeddings: crate::embeddings::PromptEmbeddings,
    /// What LoRAs need: the base weights, the text encoder's config, the folder, the files
    /// read so far and the set merged into `text_model` and `unet` now.
    pub(crate) loras: crate::lora::LoraState,
    /// The model's own recommended settings (`generation_defaults.json`).
    pub(crate) defaults: crate::generation_defaults::GenerationDefaults,
}

impl StableDiffusion {
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let device = opts
            .device
            .to_candle()
            .map_err(|e| PipelineError::Config(e.to_string()))?;
        // bf16 on the CPU stores the UNet's and the VAE's weights in bf16 and keeps the
        // activations and the text encoder in f32 (`kakusan_models::nn`'s `cpu_bf16.rs`).
        let weights_dtype = opts.dtype.to_candle();
        let dtype = if device.is_cpu() && weights_dtype == DType::BF16 {
            DType::F32
        } else {
            weights_dtype
        };
        let open = OpenOptions {
            prediction: opts.prediction.map(|p| match p {
                Prediction::Epsilon => WeightsPrediction::Epsilon,
                Prediction::VPrediction => WeightsPrediction::VPrediction,
            }),
            tokenizer_fallback: Some(bundled_tokenizer_dir()),
            config_from: opts.config_from.clone(),
            ..OpenOptions::default()
        };
        let source = ModelSource::open_with(path, &open)?;
        // Read before the weights: a broken file is reported without the wait.
        let defaults = crate::generation_defaults::GenerationDefaults::read(path)?;
        fn parse<T: serde::de::DeserializeOwned>(what: &str, v: &serde_json::Value) -> Result<T> {
            serde_json::from_value(v.clone())
                .map_err(|e| PipelineError::Config(format!("{what} config: {e}")))
        }
        let unet_config: UNetConfig = parse("unet", source.config(Component::Unet))?;
        let vae_config: VaeConfig = parse("vae", source.config(Component::Vae))?;
        let text_config: ClipTextConfig =
            parse("text encoder", source.config(Component::TextEncoder))?;
        let scheduler: SchedulerConfig = parse("scheduler", source.scheduler_config())?;
        let tokenizer_dir = source
            .tokenizer_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(bundled_tokenizer_dir);
        let tokenizer = Tokenizer::from_folder(&tokenizer_dir)?;
        let cfg_err = |what: &str, e: String| PipelineError::Config(format!("{what}: {e}"));
        let text_model = ClipTextModel::new(
            source.component_vb(Component::TextEncoder, dtype, &device),
            &text_config,
        )
        .map_err(|e| cfg_err("text encoder", e.to_string()))?;
        let unet = UNet2DConditionModel::new(
            source.component_vb(Component::Unet, weights_dtype, &device),
            &unet_config,
        )
        .map_err(|e| cfg_err("unet", e.to_string()))?;
        let vae = AutoencoderKL::new(
            source.component_vb(Component::Vae, weights_dtype, &device),
            &vae_config,
        )
        .map_err(|e| cfg_err("vae", e.to_string()))?;
        let prediction = match source.prediction() {
            WeightsPrediction::Epsilon => Prediction::Epsilon,
            WeightsPrediction::VPrediction => Prediction::VPrediction,
        };
        let weight_bytes: u64 = [Component::Unet, Component::Vae, Component::TextEncoder]
            .iter()
            .flat_map(|&c| {
                source
                    .store(c)
                    .paths()
                    .into_iter()
                    .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .sum();
        let footprint = ModelFootprint {
            weight_bytes,
            unet_top_channels: unet_config
                .block_out_channels
                .first()
                .copied()
                .unwrap_or(320) as u64,
            unet_top_heads: 8,
            vae_top_channels: vae_config
                .block_out_channels
                .first()
                .copied()
                .unwrap_or(128) as u64,
            vae_max_channels: vae_config
                .block_out_channels
                .iter()
                .copied()
                .max()
                .unwrap_or(512) as u64,
            activation_bytes: dtype.size_in_bytes() as u64,
            vae_scale: vae_scale(&vae_config) as u64,
        };
        let hash = source.model_hash()?;
        let name = source.name().to_string();
        let embeddings_dir = opts
            .embeddings_dir
            .clone()
            .unwrap_or_else(|| default_embeddings_dir(path));
        let library = EmbeddingLibrary::load_dir(&embeddings_dir, text_config.hidden_size)?;
        let embeddings = crate::embeddings::PromptEmbeddings::new(library, &tokenizer);
        let loras = crate::lora::LoraState::new(
            std::sync::Arc::new(source),
            text_config,
            opts.lora_dir
                .clone()
                .unwrap_or_else(|| default_lora_dir(path)),
        );
        Ok(Self {
            tokenizer,
            text_model,
            unet,
            unet_config,
            vae,
            vae_config,
            scheduler,
            prediction,
            base_clip_skip: 1,
            device,
            dtype,
            weights_dtype,
            name,
            hash,
            footprint,
            vae_tiling: Default::default(),
            embeddings,
            loras,
            defaults,
        })
    }

    /// Sets when the VAE works in tiles (default: automatically, when a whole picture
    /// would not fit in memory).
    pub fn set_vae_tiling(&mut self, tiling: crate::vae_tiling::VaeTiling) {
        self.vae_tiling = tiling;
    }

    /// Replaces the textual-inversion embeddings prompts can use.
    pub fn set_embeddings(&mut self, library: EmbeddingLibrary) {
        self.embeddings = crate::embeddings::PromptEmbeddings::new(library, &self.tokenizer);
    }

    /// The textual-inversion embeddings prompts can use.
    pub fn embeddings(&self) -> &EmbeddingLibrary {
        self.embeddings.library()
    }

    /// The model's own recommended settings (`generation_defaults.json` in its folder;
    /// none: the usual defaults).
    pub fn defaults(&self) -> &crate::generation_defaults::GenerationDefaults {
        &self.defaults
    }

    /// The model's native picture size (its UNet sample size times the VAE's scale).
    pub fn default_size(&self) -> (usize, usize) {
        let scale = vae_scale(&self.vae_config);
        match &self.unet_config.sample_size {
            Some(SampleSize::Square(s)) => (s * scale, s * scale),
            Some(SampleSize::HeightWidth(hw)) if hw.len() == 2 => (hw[1] * scale, hw[0] * scale),
            _ => (512, 512),
        }
    }

    /// The diffusers scheduler config the `model` schedule follows (and whose betas the
    /// k-diffusion schedules use).
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// Replaces the scheduler config (e.g. another `timestep_spacing`, as a diffusers user
    /// would do with `Scheduler.from_config(..., timestep_spacing=...)`).
    pub fn set_scheduler_config(&mut self, config: SchedulerConfig) {
        self.scheduler = config;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes one prompt as diffusers does, to `[1, 77, D]` text embeddings (f32 on the
    /// model's device): the text is tokenized as it is, truncated to 77 tokens, with no prompt
    /// language (weights, schedules, `AND`, `BREAK`) and no textual-inversion embeddings.
    /// Generation uses [`Self::encode_conditioning`]; this plain path is for diffusers parity
    /// and the text-encoder benchmark.
    pub fn encode_prompt(&self, text: &str, clip_skip: usize) -> Result<Tensor> {
        let ids = self.tokenizer.encode_padded(text, 77);
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let skip = clip_skip + self.base_clip_skip - 1;
        let emb = self
            .text_model
            .forward(&ids, skip)
            .map_err(|e| PipelineError::Config(format!("text encoder: {e}")))?;
        Ok(emb.to_dtype(DType::F32)?)
    }
}

/// 2^(number of VAE levels - 1): 8 for Stable Diffusion.
pub(crate) fn vae_scale(cfg: &VaeConfig) -> usize {
    1 << cfg.block_out_channels.len().saturating_sub(1)
}
