//! Textual-inversion embeddings: `.safetensors` files whose vectors replace a name's tokens at
//! the text encoder's input (A1111's `embeddings/` folder).
//!
//! Layouts read: A1111 / kohya (`emb_params`), A1111's `string_to_param.*` saved as
//! safetensors, diffusers (`learned_embeds`, or one tensor named after its token such as
//! `<cat-toy>`). Vectors are `[n, width]` (or `[width]` for one vector); the width must be the
//! text encoder's hidden size (768 for SD1, 1024 for SD2, anything for other models). An
//! embedding is used by its file name without the extension. Pickle embeddings (`.pt`, `.bin`,
//! ...) are refused with the usual pickle message; a file that cannot be used is reported and
//! skipped, never fatal to the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::error::{Result, WeightsError};
use super::hash::sha256_file;
use super::store::{has_pickle_extension, SafetensorsStore};

/// One embedding: its name and its vectors `[n, width]` (f32, on the CPU).
#[derive(Debug, Clone)]
pub struct TextualInversion {
    pub name: String,
    pub vectors: Tensor,
    pub path: PathBuf,
    /// The SHA-256 of the whole file (hex), which A1111 lists under `TI hashes` by its first
    /// 12 digits; empty for an embedding not read from a file.
    pub hash: String,
}

impl TextualInversion {
    /// Number of vectors (prompt slots it takes).
    pub fn len(&self) -> usize {
        self.vectors.dims().first().copied().unwrap_or(0)
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a file of the folder was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("embedding {path}: no vectors found (expected a tensor named emb_params, learned_embeds, string_to_param.*, or a single tensor); keys: {keys}")]
    NoVectors { path: PathBuf, keys: String },
    #[error("embedding {path}: tensor {key} has shape {shape:?}; expected [vectors, {width}] (the text encoder's width)")]
    BadShape {
        path: PathBuf,
        key: String,
        shape: Vec<usize>,
        width: String,
    },
    #[error("embedding {path}: {source}")]
    Candle {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

/// Picks the tensor holding the vectors, by layout.
fn vectors_key(store: &SafetensorsStore) -> Option<String> {
    for k in ["emb_params", "learned_embeds", "string_to_param.*"] {
        if store.contains(k) {
            return Some(k.to_string());
        }
    }
    let mut keys: Vec<&str> = store.keys().collect();
    keys.sort_unstable();
    if let Some(k) = keys.iter().find(|k| k.starts_with("string_to_param.")) {
        return Some(k.to_string());
    }
    (keys.len() == 1).then(|| keys[0].to_string())
}

/// Loads one embedding file, checking its width against `width`.
pub fn load_embedding(
    path: &Path,
    width: usize,
) -> std::result::Result<TextualInversion, EmbeddingError> {
    load_embedding_with(path, Some(width))
}

/// Loads one embedding file; `width` `None` accepts any `[n, w]` tensor.
fn load_embedding_with(
    path: &Path,
    width: Option<usize>,
) -> std::result::Result<TextualInversion, EmbeddingError> {
    if has_pickle_extension(path) {
        return Err(WeightsError::pickle(path, " (a pickled textual-inversion embedding)").into());
    }
    let store = SafetensorsStore::open(path)?;
    let key = vectors_key(&store).ok_or_else(|| {
        let mut keys: Vec<&str> = store.keys().collect();
        keys.sort_unstable();
        EmbeddingError::NoVectors {
            path: path.to_path_buf(),
            keys: keys.join(", "),
        }
    })?;
    let shape = store.shape(&key).map(<[usize]>::to_vec).unwrap_or_default();
    let bad = || EmbeddingError::BadShape {
        path: path.to_path_buf(),
        key: key.clone(),
        shape: shape.clone(),
        width: width.map_or_else(|| "width".to_string(), |w| w.to_string()),
    };
    let (n, width) = match (shape.as_slice(), width) {
        ([w], Some(want)) if *w == want => (1, *w),
        ([n, w], Some(want)) if *w == want && *n > 0 => (*n, *w),
        ([w], None) if *w > 0 => (1, *w),
        ([n, w], None) if *w > 0 && *n > 0 => (*n, *w),
        _ => return Err(bad()),
    };
    let vectors = store
        .load(&key, DType::F32, &Device::Cpu)?
        .reshape((n, width))
        .map_err(|source| EmbeddingError::Candle {
            path: path.to_path_buf(),
            source,
        })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(TextualInversion {
        name,
        vectors,
        path: path.to_path_buf(),
        hash: sha256_file(path)?,
    })
}

/// The embeddings of a folder, by name.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingLibrary {
    pub embeddings: BTreeMap<String, TextualInversion>,
    /// Names of files that were refused or could not be used, with the reason: a prompt using
    /// one of these names gets the reason as a warning.
    pub refused: BTreeMap<String, String>,
}

impl EmbeddingLibrary {
    /// Loads every `.safetensors` file of `dir` (not recursive) as an embedding of `width`;
    /// pickle files and unusable files are recorded in `refused`. A missing folder is an empty
    /// library.
    pub fn load_dir(dir: &Path, width: usize) -> Result<Self> {
        Self::load_dir_with(dir, Some(width))
    }

    /// [`Self::load_dir`] without a width check (to list names and vector counts, e.g. for
    /// `prompt explain` with only a tokenizer at hand).
    pub fn load_dir_any_width(dir: &Path) -> Result<Self> {
        Self::load_dir_with(dir, None)
    }

    fn load_dir_with(dir: &Path, width: Option<usize>) -> Result<Self> {
        let mut lib = EmbeddingLibrary::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lib),
            Err(source) => {
                return Err(WeightsError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let is_st = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
            if !is_st && !has_pickle_extension(&path) {
                continue;
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            match load_embedding_with(&path, width) {
                Ok(emb) => {
                    lib.refused.remove(&name);
                    lib.embeddings.insert(name, emb);
                }
                Err(e) => {
                    tracing::warn!("embedding not loaded: {e}");
                    if !lib.embeddings.contains_key(&name) {
                        lib.refused.insert(name, e.to_string());
                    }
                }
            }
        }
        Ok(lib)
    }

    /// Adds (or replaces) an embedding.
    pub fn insert(&mut self, emb: TextualInversion) {
        self.refused.remove(&emb.name);
        self.embeddings.insert(emb.name.clone(), emb);
    }

    pub fn get(&self, name: &str) -> Option<&TextualInversion> {
        self.embeddings.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.embeddings.is_empty() && self.refused.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn save(path: &Path, key: &str, shape: &[usize]) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
        let map: HashMap<String, Tensor> = [(key.to_string(), t)].into_iter().collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }

    #[test]
    fn reads_every_layout_and_checks_width() {
        let dir = tempfile::tempdir().unwrap();
        save(&dir.path().join("a1111.safetensors"), "emb_params", &[3, 8]);
        save(&dir.path().join("diff.safetensors"), "learned_embeds", &[8]);
        save(&dir.path().join("tok.safetensors"), "<cat-toy>", &[2, 8]);
        save(
            &dir.path().join("sd2.safetensors"),
            "emb_params",
            &[2, 1024],
        );
        std::fs::write(dir.path().join("old.pt"), b"PK\x03\x04pickle").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        let lib = EmbeddingLibrary::load_dir(dir.path(), 8).unwrap();
        let names: Vec<&str> = lib.embeddings.keys().map(String::as_str).collect();
        assert_eq!(names, vec!["a1111", "diff", "tok"]);
        assert_eq!(lib.get("a1111").unwrap().len(), 3);
        assert_eq!(lib.get("diff").unwrap().vectors.dims(), &[1, 8]);
        let v: Vec<f32> = lib
            .get("tok")
            .unwrap()
            .vectors
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(v[3], 1.5);
        assert!(
            lib.refused["old"].contains("pickle"),
            "{}",
            lib.refused["old"]
        );
        assert!(
            lib.refused["sd2"].contains("1024"),
            "{}",
            lib.refused["sd2"]
        );
        assert!(!lib.refused.contains_key("notes"));
        // The same folder for an SD2-wide encoder: only the 1024-wide one loads.
        let lib = EmbeddingLibrary::load_dir(dir.path(), 1024).unwrap();
        assert_eq!(lib.embeddings.keys().collect::<Vec<_>>(), vec!["sd2"]);
        // Any width: all four load.
        let lib = EmbeddingLibrary::load_dir_any_width(dir.path()).unwrap();
        assert_eq!(lib.embeddings.len(), 4);
        // A missing folder is empty, not an error.
        let lib = EmbeddingLibrary::load_dir(&dir.path().join("nope"), 8).unwrap();
        assert!(lib.is_empty());
    }

    #[test]
    fn pickle_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"junk").unwrap();
        let e = load_embedding(&p, 8).unwrap_err();
        assert!(e.to_string().contains("pickle"), "{e}");
    }
}
