//! Key namings: how a tensor the models ask for by its canonical name (diffusers' name,
//! relative to the component: `down_blocks.0.resnets.0.norm1.weight`) is found in a file that
//! uses another naming (LDM/A1111 single files, OpenCLIP, transformers with or without
//! `text_model.`, old diffusers VAE attention names).
//!
//! A naming answers "which file key, read how?" with a list of candidate [`Source`]s, most
//! likely first; the backend takes the first candidate the file holds. Besides the transforms
//! listed in [`Transform`], the backend also reshapes between shapes that differ only by
//! trailing unit dimensions (a 1x1 convolution `[C, C, 1, 1]` and a linear `[C, C]`), in both
//! directions, when the model asks for the other one.

mod diffusers;
mod ldm_clip;
mod ldm_unet;
mod ldm_vae;
mod open_clip;

pub use diffusers::{DiffusersNaming, DiffusersPart};
pub use ldm_clip::LdmClipNaming;
pub use ldm_unet::{LdmUnetNaming, UNetLayout};
pub use ldm_vae::LdmVaeNaming;
pub use open_clip::OpenClipNaming;

/// How the stored tensor becomes the canonical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Used as stored.
    Identity,
    /// Chunk `index` of `of` equal chunks along dimension 0 (q/k/v of a fused
    /// `in_proj_weight` `[3D, D]` or `in_proj_bias` `[3D]`).
    Chunk { index: usize, of: usize },
    /// A 2-D tensor transposed (OpenCLIP's `text_projection` `[D, P]`, used as `x @ W`, is
    /// transformers' linear weight `[P, D]`).
    Transpose,
}

/// One place a canonical tensor may be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The key in the file(s).
    pub key: String,
    pub transform: Transform,
}

impl Source {
    /// A key used as stored.
    pub fn key(key: impl Into<String>) -> Self {
        Source {
            key: key.into(),
            transform: Transform::Identity,
        }
    }

    /// A key read through `transform`.
    pub fn with(key: impl Into<String>, transform: Transform) -> Self {
        Source {
            key: key.into(),
            transform,
        }
    }

    /// The shape of the canonical tensor given the stored `shape`, or `None` when the transform
    /// cannot apply to it.
    pub fn canonical_shape(&self, shape: &[usize]) -> Option<Vec<usize>> {
        match self.transform {
            Transform::Identity => Some(shape.to_vec()),
            Transform::Chunk { index, of } => {
                let (&first, rest) = shape.split_first()?;
                if of == 0 || index >= of || first % of != 0 {
                    return None;
                }
                let mut out = vec![first / of];
                out.extend_from_slice(rest);
                Some(out)
            }
            Transform::Transpose => match shape {
                [a, b] => Some(vec![*b, *a]),
                _ => None,
            },
        }
    }
}

/// A key naming: where the tensors of one component are found in a file.
pub trait KeyNaming: Send + Sync + std::fmt::Debug {
    /// The candidate sources of canonical tensor `name`, most likely first; empty when this
    /// naming has no place for it.
    fn candidates(&self, name: &str) -> Vec<Source>;
}

/// The text-encoder name relative to the transformer (`text_model.` removed if present):
/// transformers 4 names tensors `text_model.encoder...`, transformers 5 `encoder...`.
pub(crate) fn text_relative(name: &str) -> &str {
    name.strip_prefix("text_model.").unwrap_or(name)
}

/// Whether a text-encoder name (relative, see [`text_relative`]) belongs inside
/// `text_model` (rather than next to it, like `text_projection`).
pub(crate) fn is_inside_text_model(relative: &str) -> bool {
    relative.starts_with("embeddings.")
        || relative.starts_with("encoder.")
        || relative.starts_with("final_layer_norm.")
}

/// `head` + "." + the `rest` segments joined with dots.
pub(crate) fn join(head: &str, rest: &[&str]) -> String {
    if rest.is_empty() {
        head.to_string()
    } else {
        format!("{head}.{}", rest.join("."))
    }
}

/// A non-negative index segment.
pub(crate) fn index(segment: &str) -> Option<usize> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_shapes() {
        let s = Source::with("a", Transform::Chunk { index: 1, of: 3 });
        assert_eq!(s.canonical_shape(&[96, 32]), Some(vec![32, 32]));
        assert_eq!(s.canonical_shape(&[96]), Some(vec![32]));
        assert_eq!(s.canonical_shape(&[95, 32]), None);
        assert_eq!(s.canonical_shape(&[]), None);
    }

    #[test]
    fn transpose_shapes() {
        let s = Source::with("a", Transform::Transpose);
        assert_eq!(s.canonical_shape(&[1024, 512]), Some(vec![512, 1024]));
        assert_eq!(s.canonical_shape(&[3, 2, 1]), None);
    }

    #[test]
    fn index_segments() {
        assert_eq!(index("12"), Some(12));
        assert_eq!(index("-1"), None);
        assert_eq!(index(""), None);
        assert_eq!(index("1a"), None);
    }
}
