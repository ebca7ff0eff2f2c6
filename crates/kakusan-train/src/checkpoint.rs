//! Resumable checkpoints: the weights, their moving average, the optimiser moments and the
//! step, in one folder per saved step under `OUT/checkpoints/`, plus `latest.json` naming
//! the newest complete one.
//!
//! A checkpoint is written into a temporary folder and renamed into place, and
//! `latest.json` is replaced atomically afterwards, so a run killed at any moment leaves
//! the previous checkpoint intact and resumable.
//!
//! A *compact* checkpoint ([`write_compact`]) is small enough to commit when a run must
//! survive the loss of its folder: the weights in f16, the optimiser's second moments in
//! bf16, no first moments (they forget in ~10 steps with beta1 = 0.9 and restart at zero)
//! and no EMA (it restarts at the weights). Loading converts every tensor to the model's
//! dtype and fills what is missing that way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{io_at, Result, TrainError};

const LATEST: &str = "latest.json";

/// What a checkpoint holds besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Number of completed training steps.
    pub step: u64,
    /// Number of EMA updates made.
    pub ema_updates: u64,
    /// Free-form information from the task (configs, data seed, ...).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub weights: HashMap<String, Tensor>,
    pub ema: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
}

/// The `checkpoints/` folder of a training run.
pub struct CheckpointDir {
    dir: PathBuf,
    keep: usize,
}

#[derive(Serialize, Deserialize)]
struct Latest {
    step: u64,
    folder: String,
}

impl CheckpointDir {
    /// `OUT/checkpoints`, keeping the newest `keep` checkpoints (at least 1).
    pub fn new(out_dir: &Path, keep: usize) -> Self {
        Self {
            dir: out_dir.join("checkpoints"),
            keep: keep.max(1),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn folder_name(step: u64) -> String {
        format!("step-{step:08}")
    }

    /// Saves a checkpoint and prunes old ones. Returns its folder.
    pub fn save(
        &self,
        meta: &CheckpointMeta,
        weights: &HashMap<String, Tensor>,
        ema: &HashMap<String, Tensor>,
        optimizer: &HashMap<String, Tensor>,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let name = Self::folder_name(meta.step);
        let final_dir = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let written = (|| -> Result<()> {
            candle_core::safetensors::save(weights, tmp.join("weights.safetensors"))?;
            candle_core::safetensors::save(ema, tmp.join("ema.safetensors"))?;
            candle_core::safetensors::save(optimizer, tmp.join("optimizer.safetensors"))?;
            let json =
                serde_json::to_vec_pretty(meta).map_err(|e| TrainError::Config(e.to_string()))?;
            std::fs::write(tmp.join("meta.json"), json).map_err(io_at(tmp.join("meta.json")))?;
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir).map_err(io_at(&final_dir))?;
            }
            std::fs::rename(&tmp, &final_dir).map_err(io_at(&final_dir))?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let latest = serde_json::to_vec_pretty(&Latest {
            step: meta.step,
            folder: name,
        })
        .map_err(|e| TrainError::Config(e.to_string()))?;
        kakusan_core::output::write_atomically(&self.dir.join(LATEST), &latest)?;
        self.prune(meta.step)?;
        Ok(final_dir)
    }

    /// Removes all but the newest `keep` checkpoint folders (never the one just written).
    fn prune(&self, newest: u64) -> Result<()> {
        let mut steps: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(io_at(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("step-")?
                    .parse::<u64>()
                    .ok()
            })
            .filter(|&s| s <= newest)
            .collect();
        steps.sort_unstable();
        let excess = steps.len().saturating_sub(self.keep);
        for step in &steps[..excess] {
            let dir = self.dir.join(Self::folder_name(*step));
            std::fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        }
        Ok(())
    }

    /// The newest complete checkpoint, if any.
    pub fn load_latest(&self, device: &Device) -> Result<Option<Checkpoint>> {
        let latest_path = self.dir.join(LATEST);
        if !latest_path.is_file() {
            return Ok(None);
        }
        let bad = |reason: String| TrainError::Checkpoint {
            path: latest_path.clone(),
            reason,
        };
        let text = std::fs::read(&latest_path).map_err(io_at(&latest_path))?;
        let latest: Latest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let dir = self.dir.join(&latest.folder);
        let load = |file: &str| -> Result<HashMap<String, Tensor>> {
            let path = dir.join(file);
            candle_core::safetensors::load(&path, device).map_err(|e| TrainError::Checkpoint {
                path: path.clone(),
                reason: e.to_string(),
            })
        };
        let meta_path = dir.join("meta.json");
        let meta_text = std::fs::read(&meta_path).map_err(io_at(&meta_path))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(&meta_text).map_err(|e| TrainError::Checkpoint {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        if meta.step != latest.step {
            return Err(bad(format!(
                "latest.json says step {} but {} holds step {}",
                latest.step, latest.folder, meta.step
            )));
        }
        let weights = load("weights.safetensors")?;
        // A compact checkpoint has no EMA: the average restarts at the weights.
        let ema = if dir.join("ema.safetensors").exists() {
            load("ema.safetensors")?
        } else {
            weights.clone()
        };
        Ok(Some(Checkpoint {
            weights,
            ema,
            optimizer: load("optimizer.safetensors")?,
            meta,
        }))
    }
}

/// Writes the newest checkpoint of `from` as a compact checkpoint under `to/checkpoints/`
/// (see the module documentation), with `latest.json`, so that copying `to` to a run folder
/// and passing `--resume` continues the run. Returns the step.
pub fn write_compact(from: &CheckpointDir, to: &Path) -> Result<u64> {
    let ck = from.load_latest(&Device::Cpu)?.ok_or_else(|| {
        TrainError::Config(format!("{} holds no checkpoint", from.path().display()))
    })?;
    let convert = |t: &HashMap<String, Tensor>, dtype: DType| -> Result<HashMap<String, Tensor>> {
        t.iter()
            .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?)))
            .collect()
    };
    let weights = convert(&ck.weights, DType::F16)?;
    let second: HashMap<String, Tensor> = ck
        .optimizer
        .into_iter()
        .filter(|(k, _)| k.starts_with("v."))
        .collect();
    let second = convert(&second, DType::BF16)?;
    let dir = CheckpointDir::new(to, 1);
    std::fs::create_dir_all(dir.path()).map_err(io_at(dir.path()))?;
    let name = CheckpointDir::folder_name(ck.meta.step);
    let folder = dir.path().join(&name);
    std::fs::create_dir_all(&folder).map_err(io_at(&folder))?;
    candle_core::safetensors::save(&weights, folder.join("weights.safetensors"))?;
    candle_core::safetensors::save(&second, folder.join("optimizer.safetensors"))?;
    let json =
        serde_json::to_vec_pretty(&ck.meta).map_err(|e| TrainError::Config(e.to_string()))?;
    kakusan_core::output::write_atomically(&folder.join("meta.json"), &json)?;
    let latest = serde_json::to_vec_pretty(&Latest {
        step: ck.meta.step,
        folder: name,
    })
    .map_err(|e| TrainError::Config(e.to_string()))?;
    kakusan_core::output::write_atomically(&dir.path().join(LATEST), &latest)?;
    Ok(ck.meta.step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(v: f32) -> HashMap<String, Tensor> {
        HashMap::from([(
            "a.weight".to_string(),
            Tensor::new(&[v, v + 1.0], &Device::Cpu).unwrap(),
        )])
    }

    #[test]
    fn saves_loads_and_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path(), 2);
        assert!(dir.load_latest(&Device::Cpu).unwrap().is_none());
        for step in [10u64, 20, 30] {
            let meta = CheckpointMeta {
                step,
                ema_updates: step,
                extra: serde_json::json!({"note": "x"}),
            };
            dir.save(&meta, &tensors(step as f32), &tensors(0.5), &tensors(-1.0))
                .unwrap();
        }
        let ck = dir.load_latest(&Device::Cpu).unwrap().unwrap();
        assert_eq!(ck.meta.step, 30);
        let w: Vec<f32> = ck.weights["a.weight"].to_vec1().unwrap();
        assert_eq!(w, vec![30.0, 31.0]);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(!left.contains(&"step-00000010".to_string()));
    }

    #[test]
    fn a_compact_checkpoint_loads_with_weights_for_the_ema() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path(), 2);
        let meta = CheckpointMeta {
            step: 7,
            ema_updates: 7,
            extra: serde_json::json!({"k": 1}),
        };
        let optimizer = HashMap::from([
            (
                "m.a.weight".to_string(),
                Tensor::new(&[0.25f32, 0.5], &Device::Cpu).unwrap(),
            ),
            (
                "v.a.weight".to_string(),
                Tensor::new(&[1e-9f32, 3.0], &Device::Cpu).unwrap(),
            ),
        ]);
        dir.save(&meta, &tensors(1.5), &tensors(9.0), &optimizer)
            .unwrap();
        let to = tmp.path().join("compact");
        assert_eq!(write_compact(&dir, &to).unwrap(), 7);
        let ck = CheckpointDir::new(&to, 1)
            .load_latest(&Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(ck.meta, meta);
        assert_eq!(ck.weights["a.weight"].dtype(), DType::F16);
        // 1.5 and 2.5 are exact in f16; the EMA is the weights.
        let w: Vec<f32> = ck.weights["a.weight"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(w, vec![1.5, 2.5]);
        let e: Vec<f32> = ck.ema["a.weight"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(e, w);
        // Only the second moments, in bf16 (which keeps 1e-9, where f16 would flush it).
        assert!(!ck.optimizer.contains_key("m.a.weight"));
        let v: Vec<f32> = ck.optimizer["v.a.weight"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((v[0] / 1e-9 - 1.0).abs() < 1e-2 && v[1] == 3.0, "{v:?}");
    }

    #[test]
    fn a_corrupt_checkpoint_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path(), 2);
        let meta = CheckpointMeta {
            step: 5,
            ema_updates: 5,
            extra: serde_json::Value::Null,
        };
        let folder = dir
            .save(&meta, &tensors(1.0), &tensors(1.0), &tensors(1.0))
            .unwrap();
        std::fs::write(folder.join("ema.safetensors"), b"garbage").unwrap();
        let err = dir.load_latest(&Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("ema.safetensors"), "{err}");
        assert!(err.contains("--resume"), "{err}");
    }
}
