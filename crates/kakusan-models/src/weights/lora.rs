//! LoRA files and their merge into a component's weights at load time.
//!
//! Layouts read (all `.safetensors`; pickles refused):
//! - kohya / A1111: `lora_unet_{module}.lora_down.weight`, `.lora_up.weight`, `.alpha`, and
//!   `lora_te_` (`lora_te1_` for SDXL's first encoder) for the text encoder, where `{module}` is
//!   the diffusers module path with `.` written `_`;
//! - diffusers / PEFT: `unet.{module}.lora_A.weight` / `.lora_B.weight` (and
//!   `text_encoder.…`), the older `….lora.down.weight` / `….lora.up.weight`, and attention
//!   processors' `….processor.to_q_lora.down.weight`; optional `{module}.alpha` keys, or
//!   diffusers' `lora_adapter_metadata` (`unet.r`, `unet.lora_alpha`, …) in the file header.
//!
//! A module's update is `ΔW = scale · up · down` with `scale = alpha / rank` (rank = rows of
//! `down`; no alpha: scale 1, PEFT's `lora_alpha == r`), reshaped to the weight's shape (1x1
//! and kxk convolutions included: `down` is `[r, in, kh, kw]`, `up` `[out, r, 1, 1]`). Several
//! LoRAs add their updates, each times its user weight. The merge happens in f32 on a copy as
//! each weight is loaded ([`LoraBackend`]), so the base file is never changed and loading the
//! component again without LoRAs gives the base weights exactly.
//!
//! Modules are matched by their flattened name (`.` → `_`) against the names the model asks
//! for, which removes kohya's underscore ambiguity without a table of the model's modules.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::backend::MappedBackend;
use super::error::WeightsError;
use super::hash::addnet_hash_safetensors;
use super::store::{has_pickle_extension, SafetensorsStore};

/// Which network a LoRA module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraTarget {
    Unet,
    TextEncoder,
}

/// One module's low-rank update (f32, CPU).
#[derive(Debug, Clone)]
pub struct LoraModule {
    pub down: Tensor,
    pub up: Tensor,
    pub alpha: Option<f64>,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.down.dims().first().copied().unwrap_or(0)
    }

    /// `alpha / rank`, or 1 without alpha.
    pub fn scale(&self) -> f64 {
        match (self.alpha, self.rank()) {
            (Some(a), r) if r > 0 => a / r as f64,
            _ => 1.0,
        }
    }

    /// `scale · up · down` in `shape` (the base weight's shape).
    pub fn delta(&self, shape: &[usize]) -> candle_core::Result<Tensor> {
        let r = self.rank();
        let up = self.up.reshape((self.up.dim(0)?, r))?;
        let down = self.down.reshape((r, self.down.elem_count() / r.max(1)))?;
        let d = up.matmul(&down)?.affine(self.scale(), 0.0)?;
        d.reshape(shape)
    }
}

/// A LoRA file read: modules by target and flattened module name.
#[derive(Debug, Clone, Default)]
pub struct LoraFile {
    pub name: String,
    pub modules: HashMap<(LoraTarget, String), LoraModule>,
    /// Keys that belong to no module this reader understands (reported, not fatal).
    pub unknown_keys: Vec<String>,
    /// The hash A1111 lists under `Lora hashes` (full hex; shown by its first 12 digits):
    /// the `sshs_model_hash` of the file's metadata when the trainer wrote one, else kohya's
    /// addnet hash of the file. `None` for a LoRA not read from a file.
    pub hash: Option<String>,
}

/// Why a LoRA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("LoRA {path}: {detail}")]
    Bad { path: String, detail: String },
}

/// A module's down, up and alpha as they are found.
type Pieces = (Option<Tensor>, Option<Tensor>, Option<f64>);

/// The key a module is matched by: `.` written `_`, and for the text encoder without the
/// `text_model` level (kohya and transformers 4 have it, transformers 5 does not).
fn flat_name(target: LoraTarget, module: &str) -> String {
    let flat = module.replace('.', "_");
    match target {
        LoraTarget::TextEncoder => flat
            .strip_prefix("text_model_")
            .map(str::to_string)
            .unwrap_or(flat),
        LoraTarget::Unet => flat,
    }
}

/// What a key says: target, module path (with `.`), and which part.
enum Part {
    Down,
    Up,
    Alpha,
}

fn classify(key: &str) -> Option<(LoraTarget, String, Part)> {
    // kohya / A1111.
    for (prefix, target) in [
        ("lora_unet_", LoraTarget::Unet),
        ("lora_te1_", LoraTarget::TextEncoder),
        ("lora_te_", LoraTarget::TextEncoder),
    ] {
        if let Some(rest) = key.strip_prefix(prefix) {
            let (module, part) = split_part(rest)?;
            return Some((target, module.to_string(), part));
        }
    }
    // diffusers / PEFT.
    let (target, rest) = if let Some(r) = key.strip_prefix("unet.") {
        (LoraTarget::Unet, r)
    } else if let Some(r) = key.strip_prefix("text_encoder.") {
        (LoraTarget::TextEncoder, r)
    } else {
        let r = key.strip_prefix("base_model.model.").unwrap_or(key);
        let t = if r.starts_with("text_model.") {
            LoraTarget::TextEncoder
        } else {
            LoraTarget::Unet
        };
        (t, r)
    };
    let (module, part) = split_part(rest)?;
    // Attention processors: `attn1.processor.to_q_lora` is `attn1.to_q`; `to_out_lora` is
    // `to_out.0`.
    let module = if let Some((head, proc_)) = module.split_once(".processor.") {
        let proj = proc_.strip_suffix("_lora")?;
        let proj = if proj == "to_out" { "to_out.0" } else { proj };
        format!("{head}.{proj}")
    } else {
        module.to_string()
    };
    Some((target, module, part))
}

/// Splits `module.<part suffix>`.
fn split_part(rest: &str) -> Option<(&str, Part)> {
    for (suffix, part) in [
        (".lora_down.weight", Part::Down),
        (".lora_up.weight", Part::Up),
        (".lora_A.weight", Part::Down),
        (".lora_B.weight", Part::Up),
        (".lora_A.default.weight", Part::Down),
        (".lora_B.default.weight", Part::Up),
        (".lora.down.weight", Part::Down),
        (".lora.up.weight", Part::Up),
        (".down.weight", Part::Down),
        (".up.weight", Part::Up),
        (".alpha", Part::Alpha),
    ] {
        if let Some(m) = rest.strip_suffix(suffix) {
            return Some((m, part));
        }
    }
    None
}

/// diffusers' `lora_adapter_metadata` (`{"unet.r": 4, "unet.lora_alpha": 8, ...}`): the alpha
/// of a target when its modules carry none.
fn metadata_alpha(store: &SafetensorsStore, target: LoraTarget) -> Option<f64> {
    let text = store.metadata("lora_adapter_metadata")?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let prefix = match target {
        LoraTarget::Unet => "unet",
        LoraTarget::TextEncoder => "text_encoder",
    };
    v.get(format!("{prefix}.lora_alpha"))?.as_f64()
}

impl LoraFile {
    /// Reads a LoRA `.safetensors` file; named by its file stem.
    pub fn load(path: &Path) -> Result<Self, LoraError> {
        let bad = |detail: String| LoraError::Bad {
            path: path.display().to_string(),
            detail,
        };
        if has_pickle_extension(path) {
            return Err(WeightsError::pickle(path, " (a pickled LoRA)").into());
        }
        let store = SafetensorsStore::open(path)?;
        let mut parts: HashMap<(LoraTarget, String), Pieces> = HashMap::new();
        let mut unknown = Vec::new();
        let mut keys: Vec<&str> = store.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let Some((target, module, part)) = classify(key) else {
                unknown.push(key.to_string());
                continue;
            };
            let t = store.load(key, DType::F32, &Device::Cpu)?;
            let flat = flat_name(target, &module);
            let e = parts.entry((target, flat)).or_default();
            match part {
                Part::Down => e.0 = Some(t),
                Part::Up => e.1 = Some(t),
                Part::Alpha => {
                    let a = t
                        .flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(|e| bad(format!("{key}: {e}")))?;
                    e.2 = a.first().map(|&a| f64::from(a));
                }
            }
        }
        let mut modules = HashMap::new();
        for ((target, flat), (down, up, alpha)) in parts {
            let (Some(down), Some(up)) = (down, up) else {
                unknown.push(format!("{flat} (down or up weight missing)"));
                continue;
            };
            let r = down.dim(0).map_err(|e| bad(e.to_string()))?;
            if up.dims().get(1) != Some(&r) {
                return Err(bad(format!(
                    "{flat}: up {:?} and down {:?} do not share a rank",
                    up.dims(),
                    down.dims()
                )));
            }
            let alpha = alpha.or_else(|| metadata_alpha(&store, target));
            modules.insert((target, flat), LoraModule { down, up, alpha });
        }
        if modules.is_empty() {
            return Err(bad(
                "no LoRA modules found (expected lora_unet_*/lora_te_* or unet.*/text_encoder.* lora_A/lora_B keys)"
                    .to_string(),
            ));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = match store.metadata("sshs_model_hash").filter(|h| !h.is_empty()) {
            Some(h) => h.to_string(),
            None => addnet_hash_safetensors(path)?,
        };
        Ok(LoraFile {
            name,
            modules,
            unknown_keys: unknown,
            hash: Some(hash),
        })
    }

    /// The module updating canonical weight `name` (`….weight`) of `target`.
    pub fn module_for(&self, target: LoraTarget, name: &str) -> Option<&LoraModule> {
        let module = name.strip_suffix(".weight")?;
        self.modules.get(&(target, flat_name(target, module)))
    }
}

/// A component's weights with LoRAs merged in: the base backend plus `(file, weight)` pairs.
#[derive(Debug, Clone)]
pub struct LoraBackend {
    pub base: MappedBackend,
    pub target: LoraTarget,
    pub loras: Vec<(Arc<LoraFile>, f64)>,
}

impl LoraBackend {
    /// Loads canonical weight `name` with every LoRA update of it added (f32 merge on the CPU,
    /// then `dtype` on `device`); untouched weights load straight from the base.
    pub fn load_merged(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let updates: Vec<(&LoraModule, f64)> = self
            .loras
            .iter()
            .filter(|(_, w)| *w != 0.0)
            .filter_map(|(f, w)| f.module_for(self.target, name).map(|m| (m, *w)))
            .collect();
        if updates.is_empty() {
            return self
                .base
                .load(name, expected, dtype, device)
                .map_err(WeightsError::into_candle);
        }
        let mut w = self
            .base
            .load(name, expected, DType::F32, &Device::Cpu)
            .map_err(WeightsError::into_candle)?;
        let shape = w.dims().to_vec();
        for (m, weight) in updates {
            let d = m.delta(&shape).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "LoRA update of {name} (weight shape {shape:?}, down {:?}, up {:?}): {e}",
                    m.down.dims(),
                    m.up.dims()
                ))
            })?;
            w = (w + d.affine(weight, 0.0)?)?;
        }
        w.to_dtype(dtype)?.to_device(device)
    }

    /// This backend as a `VarBuilder`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for LoraBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load_merged(name, Some(s.dims()), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load_merged(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_layout() {
        let c = |k: &str| classify(k).map(|(t, m, _)| (t, m));
        assert_eq!(
            c("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"),
            Some((
                LoraTarget::Unet,
                "down_blocks_0_attentions_0_proj_in".into()
            ))
        );
        assert_eq!(
            c("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"),
            Some((
                LoraTarget::TextEncoder,
                "text_model_encoder_layers_0_mlp_fc1".into()
            ))
        );
        assert_eq!(
            c("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"),
            Some((
                LoraTarget::Unet,
                "mid_block.attentions.0.transformer_blocks.0.attn1.to_q".into()
            ))
        );
        assert_eq!(
            c("text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_B.weight"),
            Some((
                LoraTarget::TextEncoder,
                "text_model.encoder.layers.1.self_attn.k_proj".into()
            ))
        );
        assert_eq!(
            c("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight"),
            Some((
                LoraTarget::Unet,
                "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0".into()
            ))
        );
        assert!(classify("something_else").is_none());
    }

    #[test]
    fn delta_is_scaled_product_in_the_weight_shape() {
        let dev = Device::Cpu;
        let down = Tensor::new(&[[1f32, 2.0, 3.0]], &dev).unwrap(); // [1, 3]
        let up = Tensor::new(&[[1f32], [-1.0]], &dev).unwrap(); // [2, 1]
        let m = LoraModule {
            down,
            up,
            alpha: Some(0.5),
        };
        assert_eq!(m.scale(), 0.5);
        let d = m.delta(&[2, 3, 1, 1]).unwrap();
        assert_eq!(d.dims(), &[2, 3, 1, 1]);
        let v: Vec<f32> = d.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![0.5, 1.0, 1.5, -0.5, -1.0, -1.5]);
        // A 3x3 conv LoRA: down [r, in, 3, 3], up [out, r, 1, 1].
        let down = Tensor::ones((2, 1, 3, 3), DType::F32, &dev).unwrap();
        let up = Tensor::ones((4, 2, 1, 1), DType::F32, &dev).unwrap();
        let m = LoraModule {
            down,
            up,
            alpha: None,
        };
        let d = m.delta(&[4, 1, 3, 3]).unwrap();
        let v: Vec<f32> = d.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&x| x == 2.0));
    }
}
