//! The `candle_nn` backend that gives models their weights by canonical (diffusers, relative
//! to the component) names, whatever the file's naming: a store plus a key naming. Shapes are
//! checked before any data is read; a mismatch is an error naming the tensor, the file key,
//! the expected and the found shape.

use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::error::{Result, ShapeMismatch, WeightsError};
use super::names::{KeyNaming, Source, Transform};
use super::store::SafetensorsStore;

/// Weights of one model component: canonical names resolved through a naming into a store.
#[derive(Debug, Clone)]
pub struct MappedBackend {
    store: Arc<SafetensorsStore>,
    naming: Arc<dyn KeyNaming>,
    component: String,
}

/// Whether two shapes are equal once trailing unit dimensions are dropped (`[C, C, 1, 1]` and
/// `[C, C]`): the same weights seen as a 1x1 convolution or as a linear layer.
pub fn same_but_unit_dims(a: &[usize], b: &[usize]) -> bool {
    fn trimmed(s: &[usize]) -> &[usize] {
        let end = s.iter().rposition(|&d| d != 1).map_or(0, |p| p + 1);
        &s[..end]
    }
    trimmed(a) == trimmed(b)
}

impl MappedBackend {
    /// A backend reading `store` through `naming`; `component` names it in messages ("unet").
    pub fn new(
        store: Arc<SafetensorsStore>,
        naming: Arc<dyn KeyNaming>,
        component: impl Into<String>,
    ) -> Self {
        MappedBackend {
            store,
            naming,
            component: component.into(),
        }
    }

    /// The store read.
    pub fn store(&self) -> &Arc<SafetensorsStore> {
        &self.store
    }

    /// The source of canonical tensor `name`: the first candidate the store holds.
    pub fn resolve(&self, name: &str) -> Option<Source> {
        self.naming
            .candidates(name)
            .into_iter()
            .find(|s| self.store.contains(&s.key))
    }

    /// The shape canonical tensor `name` has as stored (after the naming's transform, before
    /// any unit-dimension reshape).
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        let source = self.resolve_or_err(name)?;
        self.source_shape(name, &source)
    }

    /// Loads canonical tensor `name` as `dtype` on `device`; when `expected` is given, checks
    /// its shape (reshaping across trailing unit dimensions if that is the only difference).
    pub fn load(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let source = self.resolve_or_err(name)?;
        let shape = self.source_shape(name, &source)?;
        let reshape_to = match expected {
            Some(want) if want != shape.as_slice() => {
                if !same_but_unit_dims(want, &shape) {
                    return Err(self.shape_error(name, &source, want.to_vec(), shape));
                }
                Some(want)
            }
            _ => None,
        };
        let tensor = match source.transform {
            Transform::Identity => self.store.load(&source.key, dtype, device)?,
            Transform::Chunk { index, .. } => {
                let rows = shape.first().copied().unwrap_or(0);
                self.store.load_rows(
                    &source.key,
                    index * rows..(index + 1) * rows,
                    dtype,
                    device,
                )?
            }
            Transform::Transpose => self
                .store
                .load(&source.key, dtype, device)?
                .t()
                .and_then(|t| t.contiguous())
                .map_err(|e| self.read_error(&source, e))?,
        };
        match reshape_to {
            Some(want) => tensor
                .reshape(want)
                .map_err(|e| self.read_error(&source, e)),
            None => Ok(tensor),
        }
    }

    /// This backend as a `VarBuilder` of `dtype` on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn resolve_or_err(&self, name: &str) -> Result<Source> {
        self.resolve(name).ok_or_else(|| {
            let candidates = self.naming.candidates(name);
            let expected = if candidates.is_empty() || candidates.iter().all(|c| c.key == name) {
                String::new()
            } else {
                format!(
                    " (looked for {})",
                    candidates
                        .iter()
                        .map(|c| format!("`{}`", c.key))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            WeightsError::TensorNotFound {
                component: self.component.clone(),
                name: name.to_string(),
                expected,
                files: self.store.describe_files(),
            }
        })
    }

    fn source_shape(&self, name: &str, source: &Source) -> Result<Vec<usize>> {
        let stored = self.store.shape(&source.key).unwrap_or_default();
        source
            .canonical_shape(stored)
            .ok_or_else(|| self.shape_error(name, source, Vec::new(), stored.to_vec()))
    }

    fn shape_error(
        &self,
        name: &str,
        source: &Source,
        expected: Vec<usize>,
        found: Vec<usize>,
    ) -> WeightsError {
        WeightsError::ShapeMismatch(Box::new(ShapeMismatch {
            component: self.component.clone(),
            name: name.to_string(),
            key: source.key.clone(),
            path: self.path_of(source),
            expected,
            found,
        }))
    }

    fn read_error(&self, source: &Source, e: candle_core::Error) -> WeightsError {
        WeightsError::TensorRead {
            path: self.path_of(source),
            tensor: source.key.clone(),
            detail: e.to_string(),
        }
    }

    fn path_of(&self, source: &Source) -> std::path::PathBuf {
        self.store
            .info(&source.key)
            .map(|i| i.path.to_path_buf())
            .unwrap_or_default()
    }
}

impl SimpleBackend for MappedBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(s.dims()), dtype, dev)
            .map_err(WeightsError::into_candle)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev)
            .map_err(WeightsError::into_candle)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_dimension_equivalence() {
        assert!(same_but_unit_dims(&[8, 8, 1, 1], &[8, 8]));
        assert!(same_but_unit_dims(&[8, 8], &[8, 8, 1]));
        assert!(same_but_unit_dims(&[1], &[]));
        assert!(!same_but_unit_dims(&[8, 8, 3, 3], &[8, 8]));
        assert!(!same_but_unit_dims(&[1, 8], &[8]));
        assert!(!same_but_unit_dims(&[8, 4], &[4, 8]));
    }
}
