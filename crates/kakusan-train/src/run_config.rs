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

/// Model files of a text encoder + UNet run. Fine-tuning a model folder (`--from`) may
/// leave any of them out: the folder's own file is then used (see [`Self::paths`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionModelFiles {
    /// diffusers `config.json` of the CLIP text encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder_config: Option<PathBuf>,
    /// diffusers `config.json` of the UNet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet_config: Option<PathBuf>,
    /// The noise schedule and prediction type; the `--from` model's own when left out, so a
    /// v-prediction model is not fine-tuned on the noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_config: Option<PathBuf>,
    /// The trained VAE: a folder with `config.json` and `diffusion_pytorch_model.safetensors`
    /// (what `kakusan train vae` exports to `OUT/vae`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<PathBuf>,
    /// The tokenizer folder (the real CLIP vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Growing a trained model (`--init`) into a larger architecture: name prefixes of the
    /// variables that the initial weights may lack or have in another shape (new layers,
    /// e.g. `"unet.down_blocks.0.attentions."`; `"unet."` for a new, wider UNet under a
    /// trained text encoder). They keep their fresh initialisation, and the output
    /// projections of new residual branches (`proj_out`) start at zero, so a model grown by
    /// layers first computes what the initial one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_layers: Vec<String>,
    /// The frozen teacher of the feature alignment objective (`[task]
    /// feature_alignment_weight`): an exported classifier folder (`kakusan train
    /// classifier`'s `OUT/model`, or `models/kakusan-eval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_teacher: Option<PathBuf>,
}

/// The files a text encoder + UNet run reads, every one settled.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionModelPaths {
    pub text_encoder_config: PathBuf,
    pub unet_config: PathBuf,
    pub scheduler_config: PathBuf,
    pub vae: PathBuf,
    pub tokenizer: PathBuf,
}

impl DiffusionModelFiles {
    /// Settles each file given the model folder a run starts from (`--from`, if any). The
    /// architecture and the schedule are the config's when it names them (growing a model
    /// into a larger one needs the new architecture), else the folder's
    /// (`text_encoder/config.json`, `unet/config.json`, `scheduler/scheduler_config.json`):
    /// a fine-tune keeps the model it was given. The VAE and tokenizer are the folder's when
    /// it has them (the latents and token ids the model was trained on), else the config's.
    pub fn paths(&self, from: Option<&Path>) -> Result<DiffusionModelPaths> {
        let mut missing = Vec::new();
        let mut pick = |field: &str, configured: &Option<PathBuf>, own: &str, own_first: bool| {
            let own = from.map(|m| m.join(own)).filter(|p| p.exists());
            let chosen = if own_first {
                own.or_else(|| configured.clone())
            } else {
                configured.clone().or(own)
            };
            chosen.unwrap_or_else(|| {
                missing.push(field.to_string());
                PathBuf::new()
            })
        };
        let paths = DiffusionModelPaths {
            text_encoder_config: pick(
                "text_encoder_config",
                &self.text_encoder_config,
                "text_encoder/config.json",
                false,
            ),
            unet_config: pick("unet_config", &self.unet_config, "unet/config.json", false),
            scheduler_config: pick(
                "scheduler_config",
                &self.scheduler_config,
                "scheduler/scheduler_config.json",
                false,
            ),
            vae: pick("vae", &self.vae, "vae", true),
            tokenizer: pick("tokenizer", &self.tokenizer, "tokenizer", true),
        };
        if missing.is_empty() {
            Ok(paths)
        } else {
            Err(TrainError::Config(format!(
                "[model] {} {} needed unless --from gives a model folder that has {}",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                if missing.len() == 1 { "it" } else { "them" },
            )))
        }
    }
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
        let m = &mut c.model;
        for p in [
            &mut m.text_encoder_config,
            &mut m.unet_config,
            &mut m.scheduler_config,
            &mut m.vae,
            &mut m.tokenizer,
            &mut m.feature_teacher,
        ]
        .into_iter()
        .flatten()
        {
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
        // Every UNet stage's TOML (unet*.toml).
        let files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("unet") && f.ends_with(".toml"))
            .collect();
        assert!(files.len() >= 6, "{files:?}");
        for file in &files {
            let unet = DiffusionRunConfig::load(&dir.join(file)).unwrap();
            let paths = unet.model.paths(None).unwrap();
            assert!(paths.unet_config.is_file(), "{file}");
            assert!(paths.text_encoder_config.is_file(), "{file}");
            assert!(paths.scheduler_config.is_file(), "{file}");
            assert!(paths.tokenizer.join("vocab.json").is_file(), "{file}");
            // The frozen VAE the UNet stage learns on is committed.
            assert!(paths.vae.join("config.json").is_file(), "{file}");
        }
        // The fine-tune names no model file: everything comes from the --from model, so
        // the shipped model is fine-tuned as the architecture it is.
        let finetune = DiffusionRunConfig::load(&dir.join("finetune.toml")).unwrap();
        let shipped = dir.join("../../models/kakusan-mini");
        let paths = finetune.model.paths(Some(&shipped)).unwrap();
        assert_eq!(paths.unet_config, shipped.join("unet/config.json"));
        assert_eq!(paths.vae, shipped.join("vae"));
        assert!(finetune.model.paths(None).is_err());
    }

    /// The config's architecture and schedule win over the --from folder's (growing a model);
    /// the folder's VAE and tokenizer win over the config's; what neither has is an error
    /// naming every missing field.
    #[test]
    fn model_paths_come_from_the_config_or_the_from_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        for part in ["text_encoder", "unet", "scheduler", "vae", "tokenizer"] {
            std::fs::create_dir_all(model.join(part)).unwrap();
        }
        for file in [
            "text_encoder/config.json",
            "unet/config.json",
            "scheduler/scheduler_config.json",
        ] {
            std::fs::write(model.join(file), "{}").unwrap();
        }
        let own = DiffusionModelFiles {
            text_encoder_config: None,
            unet_config: Some("grown.json".into()),
            scheduler_config: None,
            vae: Some("my-vae".into()),
            tokenizer: None,
            new_layers: vec![],
            feature_teacher: None,
        };
        let p = own.paths(Some(&model)).unwrap();
        assert_eq!(p.unet_config, PathBuf::from("grown.json"));
        assert_eq!(
            p.text_encoder_config,
            model.join("text_encoder/config.json")
        );
        assert_eq!(
            p.scheduler_config,
            model.join("scheduler/scheduler_config.json")
        );
        assert_eq!(p.vae, model.join("vae"));
        assert_eq!(p.tokenizer, model.join("tokenizer"));
        // A folder without a VAE: the config's.
        std::fs::remove_dir_all(model.join("vae")).unwrap();
        assert_eq!(
            own.paths(Some(&model)).unwrap().vae,
            PathBuf::from("my-vae")
        );
        let err = own.paths(None).unwrap_err().to_string();
        assert!(
            err.contains("text_encoder_config, scheduler_config, tokenizer are needed"),
            "{err}"
        );
    }

    /// `[trainer] lr_scales` reads as a table of name prefix -> factor (the prefix quoted:
    /// it ends with a dot), and is empty when absent.
    #[test]
    fn lr_scales_read_from_the_trainer_table() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("run.toml");
        let body = "[model]\nvae_config = \"v.json\"\n[trainer]\ntotal_steps = 5\n";
        std::fs::write(&p, body).unwrap();
        assert!(VaeRunConfig::load(&p).unwrap().trainer.lr_scales.is_empty());
        std::fs::write(&p, format!("{body}lr_scales = {{ \"encoder.\" = 0.5 }}\n")).unwrap();
        let scales = VaeRunConfig::load(&p).unwrap().trainer.lr_scales;
        assert_eq!(
            scales.into_iter().collect::<Vec<_>>(),
            [("encoder.".to_string(), 0.5)]
        );
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
