//! The TOML file of a training run (`kakusan train vae|unet --config FILE.toml`).
//!
//! Paths in `[model]` are relative to the TOML file. Example (the shipped model's files
//! are under `training/kakusan-mini/`):
//!
//! ```toml
//! [model]
//! vae_config = "vae_config.json"
//! [data]
//! seed = 1
//! [task]
//! batch_size = 16
//! [trainer]
//! total_steps = 3000
//! peak_lr = 1e-3
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_at, Result, TrainError};
use crate::tasks::{DiffusionTaskConfig, ProceduralDataConfig, VaeTaskConfig};
use crate::trainer::TrainerConfig;

/// Model files of a VAE run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeModelFiles {
    /// diffusers `config.json` of the AutoencoderKL to train.
    pub vae_config: PathBuf,
}

/// Model files of a text encoder + UNet run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionModelFiles {
    pub text_encoder_config: PathBuf,
    pub unet_config: PathBuf,
    /// The noise schedule and prediction type. Optional when fine-tuning a model folder
    /// (`--from`): left out, the model's own `scheduler/scheduler_config.json` is used, so a
    /// v-prediction model is not fine-tuned on the noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_config: Option<PathBuf>,
    /// The trained VAE: a folder with `config.json` and `diffusion_pytorch_model.safetensors`
    /// (what `kakusan train vae` exports to `OUT/vae`).
    pub vae: PathBuf,
    /// The tokenizer folder (the real CLIP vocabulary).
    pub tokenizer: PathBuf,
    /// Growing a trained model (`--init`) into a larger architecture: name prefixes of the
    /// variables that the initial weights may lack or have in another shape (new layers,
    /// e.g. `"unet.down_blocks.0.attentions."`; `"unet."` for a new, wider UNet under a
    /// trained text encoder). They keep their fresh initialisation, and the output
    /// projections of new residual branches (`proj_out`) start at zero, so a model grown by
    /// layers first computes what the initial one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_layers: Vec<String>,
}

/// `kakusan train vae` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeRunConfig {
    pub model: VaeModelFiles,
    #[serde(default)]
    pub data: ProceduralDataConfig,
    #[serde(default)]
    pub task: VaeTaskConfig,
    #[serde(default)]
    pub trainer: TrainerConfig,
}

/// `kakusan train unet` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionRunConfig {
    pub model: DiffusionModelFiles,
    #[serde(default)]
    pub data: ProceduralDataConfig,
    #[serde(default)]
    pub task: DiffusionTaskConfig,
    #[serde(default)]
    pub trainer: TrainerConfig,
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_at(path))?;
    toml::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {}", path.display(), e.message())))
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl VaeRunConfig {
    /// Reads the file and makes its model paths absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let mut c: Self = read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(base, &mut c.model.vae_config);
        c.trainer.validate()?;
        Ok(c)
    }
}

impl DiffusionRunConfig {
    /// Reads the file and makes its model paths absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let mut c: Self = read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.model.text_encoder_config,
            &mut c.model.unet_config,
            &mut c.model.vae,
            &mut c.model.tokenizer,
        ] {
            resolve(base, p);
        }
        if let Some(p) = &mut c.model.scheduler_config {
            resolve(base, p);
        }
        c.trainer.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../training/kakusan-mini");
        let vae = VaeRunConfig::load(&dir.join("vae.toml")).unwrap();
        assert!(vae.model.vae_config.is_file());
        let decoder = VaeRunConfig::load(&dir.join("vae-decoder.toml")).unwrap();
        assert!(decoder.task.decoder_only);
        // Every UNet stage's TOML (unet*.toml) and the fine-tune's.
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("unet") && f.ends_with(".toml"))
            .collect();
        assert!(files.len() >= 6, "{files:?}");
        files.push("finetune.toml".into());
        for file in &files {
            let unet = DiffusionRunConfig::load(&dir.join(file)).unwrap();
            assert!(unet.model.unet_config.is_file(), "{file}");
            assert!(unet.model.tokenizer.join("vocab.json").is_file(), "{file}");
            // The frozen VAE the UNet stage learns on is committed.
            assert!(unet.model.vae.join("config.json").is_file(), "{file}");
        }
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("bad.toml");
        std::fs::write(&p, "[model]\nvae_config = 3\n").unwrap();
        let err = VaeRunConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
    }
}
