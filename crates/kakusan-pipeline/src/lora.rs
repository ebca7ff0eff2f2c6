//! LoRA for generation: `<lora:name:te_weight:unet_weight>` calls read `name.safetensors` from
//! the model's LoRA folder, and the text encoder and UNet are rebuilt from the base weights
//! with the updates merged in ([`kakusan_models::weights::LoraBackend`]). The merged networks
//! are kept while the next job asks for the same set (names and weights); any other set,
//! the empty one included, rebuilds them from the base, so a LoRA never leaks into a job that
//! does not call it and the base is recovered exactly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kakusan_models::clip::{ClipTextConfig, ClipTextModel};
use kakusan_models::unet::UNet2DConditionModel;
use kakusan_models::weights::store::has_pickle_extension;
use kakusan_models::weights::{Component, LoraBackend, LoraFile, LoraTarget, ModelSource};
use kakusan_prompt::LoraCall;

use crate::error::{PipelineError, Result};
use crate::stable_diffusion::StableDiffusion;

/// One applied LoRA: name, text-encoder weight, UNet weight.
pub type AppliedLora = (String, f64, f64);

/// The LoRA side of a loaded model.
pub struct LoraState {
    source: Arc<ModelSource>,
    text_config: ClipTextConfig,
    dir: PathBuf,
    files: HashMap<String, Arc<LoraFile>>,
    applied: Vec<AppliedLora>,
    /// The calls the applied set was made for (missing files included).
    requested: Vec<AppliedLora>,
}

fn call_key(calls: &[LoraCall]) -> Vec<AppliedLora> {
    calls
        .iter()
        .map(|c| (c.name.clone(), c.te_weight, c.unet_weight))
        .collect()
}

impl LoraState {
    pub(crate) fn new(source: Arc<ModelSource>, text_config: ClipTextConfig, dir: PathBuf) -> Self {
        LoraState {
            source,
            text_config,
            dir,
            files: HashMap::new(),
            applied: Vec::new(),
            requested: Vec::new(),
        }
    }

    /// Reads `name` from the folder (once); `Err` is the warning to give.
    fn file(&mut self, name: &str) -> std::result::Result<Arc<LoraFile>, String> {
        if let Some(f) = self.files.get(name) {
            return Ok(f.clone());
        }
        let path = self.dir.join(format!("{name}.safetensors"));
        if !path.is_file() {
            let pickled = std::fs::read_dir(&self.dir).ok().and_then(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.file_stem().is_some_and(|s| s == name) && has_pickle_extension(p))
            });
            return Err(match pickled {
                Some(p) => format!(
                    "LoRA {name}: {} is a pickle file, which kakusan does not load; convert it to .safetensors",
                    p.display()
                ),
                None => format!(
                    "LoRA {name} not found ({} does not exist); ignored",
                    path.display()
                ),
            });
        }
        let file = Arc::new(LoraFile::load(&path).map_err(|e| format!("LoRA {name}: {e}"))?);
        if !file.unknown_keys.is_empty() {
            tracing::warn!(
                "LoRA {name}: {} keys not understood (first: {})",
                file.unknown_keys.len(),
                file.unknown_keys[0]
            );
        }
        self.files.insert(name.to_string(), file.clone());
        Ok(file)
    }
}

impl StableDiffusion {
    /// Makes `lora` usable as `<lora:name:...>` without a file (tests, embedding callers).
    pub fn add_lora(&mut self, lora: LoraFile) {
        self.loras.files.insert(lora.name.clone(), Arc::new(lora));
    }

    /// Fails unless `calls` are the calls the networks were last prepared for.
    pub(crate) fn check_loras_prepared(&self, calls: &[LoraCall]) -> Result<()> {
        if call_key(calls) == self.loras.requested {
            return Ok(());
        }
        Err(PipelineError::Config(format!(
            "the prompt calls LoRAs {:?} but the model was prepared for {:?}: call \
             prepare_job (or apply_loras) before generate",
            call_key(calls),
            self.loras.requested
        )))
    }

    /// The LoRAs merged into the networks now.
    pub fn applied_loras(&self) -> &[AppliedLora] {
        &self.loras.applied
    }

    /// The full hash (see [`LoraFile::hash`]) of each applied LoRA that has one, by name, in
    /// the order they were applied.
    pub fn applied_lora_hashes(&self) -> Vec<(String, String)> {
        self.loras
            .applied
            .iter()
            .filter_map(|(name, _, _)| {
                let hash = self.loras.files.get(name)?.hash.clone()?;
                Some((name.clone(), hash))
            })
            .collect()
    }

    /// Merges exactly the LoRAs of `calls` into the text encoder and UNet (rebuilding both
    /// from the base weights when the set differs from the one applied; nothing to do when it
    /// is the same). Returns warnings: LoRAs not found or refused (they are skipped).
    pub fn apply_loras(&mut self, calls: &[LoraCall]) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let mut wanted: Vec<(Arc<LoraFile>, f64, f64)> = Vec::new();
        for call in calls {
            match self.loras.file(&call.name) {
                Ok(f) => wanted.push((f, call.te_weight, call.unet_weight)),
                Err(w) => warnings.push(w),
            }
        }
        let key: Vec<AppliedLora> = wanted
            .iter()
            .map(|(f, te, unet)| (f.name.clone(), *te, *unet))
            .collect();
        if key == self.loras.applied {
            self.loras.requested = call_key(calls);
            return Ok(warnings);
        }
        let source = self.loras.source.clone();
        let backend = |target: LoraTarget, component: Component| LoraBackend {
            base: source.component_backend(component),
            target,
            loras: wanted
                .iter()
                .map(|(f, te, unet)| {
                    let w = match target {
                        LoraTarget::TextEncoder => *te,
                        LoraTarget::Unet => *unet,
                    };
                    (f.clone(), w)
                })
                .collect(),
        };
        let te_vb = backend(LoraTarget::TextEncoder, Component::TextEncoder)
            .into_var_builder(self.dtype, &self.device);
        let unet_vb = backend(LoraTarget::Unet, Component::Unet)
            .into_var_builder(self.weights_dtype, &self.device);
        // Forget the applied set first: if a rebuild fails, the next call rebuilds again.
        self.loras.applied = vec![("<unknown>".to_string(), f64::NAN, f64::NAN)];
        self.text_model = ClipTextModel::new(te_vb, &self.loras.text_config)
            .map_err(|e| PipelineError::Config(format!("text encoder with LoRA: {e}")))?;
        self.unet = UNet2DConditionModel::new(unet_vb, &self.unet_config)
            .map_err(|e| PipelineError::Config(format!("unet with LoRA: {e}")))?;
        self.loras.applied = key;
        self.loras.requested = call_key(calls);
        for (f, _, _) in &wanted {
            tracing::info!("LoRA {} applied ({} modules)", f.name, f.modules.len());
        }
        Ok(warnings)
    }
}
