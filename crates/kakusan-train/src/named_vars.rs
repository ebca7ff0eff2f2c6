//! The trainable variables of a model, by their (diffusers) names, in a fixed order.
//!
//! Built from a `candle_nn::VarMap` after the model was constructed through a
//! `VarBuilder::from_varmap`, so the names are exactly the keys a diffusers
//! `diffusion_pytorch_model.safetensors` uses.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

/// Variables sorted by name.
#[derive(Clone)]
pub struct NamedVars {
    entries: Vec<(String, Var)>,
}

impl NamedVars {
    /// Every variable of `map`, sorted by name.
    pub fn from_varmap(map: &VarMap) -> Self {
        let data = map.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Self { entries }
    }

    /// Several maps under prefixes (e.g. `text_encoder.` and `unet.`).
    pub fn prefixed(parts: &[(&str, &VarMap)]) -> Self {
        let mut entries = Vec::new();
        for (prefix, map) in parts {
            for (name, var) in Self::from_varmap(map).entries {
                entries.push((format!("{prefix}{name}"), var));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Self { entries }
    }

    /// The variables whose names satisfy `keep` (the same `Var`s, shared, not copies).
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Self {
        let entries = self
            .entries
            .iter()
            .filter(|(n, _)| keep(n))
            .cloned()
            .collect();
        Self { entries }
    }

    /// These variables and `other`'s, sorted by name (the same `Var`s, shared).
    pub fn joined(&self, other: &NamedVars) -> Self {
        let mut entries: Vec<(String, Var)> =
            self.entries.iter().chain(&other.entries).cloned().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Self { entries }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.entries.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The current values, by name.
    pub fn snapshot(&self) -> HashMap<String, Tensor> {
        self.entries
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }
}
