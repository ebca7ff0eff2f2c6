//! The tensor store: one or more `.safetensors` files, memory-mapped, with their headers parsed
//! and validated up front, so a damaged file fails at open with a message naming it. Tensors
//! are read straight from the mapping into a candle tensor of the requested dtype (one copy).
//! PyTorch pickle files are refused, never opened.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;

use super::decode::{decode, is_weight_dtype, StoredDtype};
use super::error::{Result, WeightsError};

/// File extensions of PyTorch pickle checkpoints, which are refused.
const PICKLE_EXTENSIONS: [&str; 5] = ["ckpt", "pt", "pth", "bin", "pkl"];

/// The largest header we accept (the safetensors format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One mapped file.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    metadata: HashMap<String, String>,
}

impl MappedFile {
    /// Drops the pages of `bytes` from this process's resident memory once a tensor is
    /// copied out of them: without it, loading a 4 GiB checkpoint held the 4 GiB of touched
    /// mapped pages and the 4 GiB of copies at once (peak RSS 8.2 GiB for SD 1.5 in f32).
    /// The file's pages stay in the page cache; a later read faults them back in.
    fn release(&self, bytes: Range<usize>) {
        #[cfg(unix)]
        // SAFETY: the mapping is private and read-only, never written through: MADV_DONTNEED
        // on it only unmaps pages from this process, and any later read (through any
        // borrow) faults in the file's contents again, the same bytes as before (the
        // assumption every mmap loader makes: the file does not change under us).
        unsafe {
            // Advice is only a hint: a failure leaves the pages resident, nothing more.
            let _ = self.mmap.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                bytes.start,
                bytes.len(),
            );
        }
        #[cfg(not(unix))]
        let _ = bytes;
    }
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file's mapping.
    bytes: Range<usize>,
}

/// What the header says about one tensor.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    pub shape: &'a [usize],
    pub dtype: safetensors::Dtype,
    pub path: &'a Path,
}

/// Memory-mapped safetensors file(s) seen as one set of named tensors.
pub struct SafetensorsStore {
    files: Vec<MappedFile>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for SafetensorsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsStore")
            .field("files", &self.describe_files())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

/// Whether `path` names a pickle checkpoint by its extension.
pub fn has_pickle_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether `path` is a shard index (`*.safetensors.index.json`).
pub fn is_shard_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".safetensors.index.json"))
}

impl SafetensorsStore {
    /// Opens a `.safetensors` file, or a sharded set through its `*.safetensors.index.json`.
    /// Refuses pickle files (`.ckpt`, `.pt`, `.pth`, `.bin`, `.pkl`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if is_shard_index(path) {
            return Self::open_index(path);
        }
        Self::open_files(&[path.to_path_buf()])
    }

    /// Opens several `.safetensors` files as one store (a sharded set). A key present in two
    /// files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut store = SafetensorsStore {
            files: Vec::with_capacity(paths.len()),
            entries: HashMap::new(),
        };
        for path in paths {
            let (file, entries) = map_file(path)?;
            let index = store.files.len();
            store.files.push(file);
            for (key, mut entry) in entries {
                entry.file = index;
                if let Some(previous) = store.entries.get(&key) {
                    return Err(WeightsError::DuplicateKey {
                        key,
                        first: store.files[previous.file].path.clone(),
                        second: path.clone(),
                    });
                }
                store.entries.insert(key, entry);
            }
        }
        tracing::debug!(files = ?store.describe_files(), tensors = store.entries.len(), "opened safetensors store");
        Ok(store)
    }

    /// Opens the shards a `*.safetensors.index.json` (transformers/diffusers layout) names.
    pub fn open_index(index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(|e| io_error(index_path, e))?;
        let bad = |detail: String| WeightsError::BadShardIndex {
            path: index_path.to_path_buf(),
            detail,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no \"weight_map\" object".to_string()))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<&str> = Vec::new();
        for value in map.values() {
            let name = value
                .as_str()
                .ok_or_else(|| bad("a weight_map value is not a file name".to_string()))?;
            if !shard_names.contains(&name) {
                shard_names.push(name);
            }
        }
        shard_names.sort_unstable();
        let paths: Vec<PathBuf> = shard_names.iter().map(|n| dir.join(n)).collect();
        let store = Self::open_files(&paths)?;
        for (key, file) in map {
            match store.entries.get(key) {
                None => {
                    return Err(bad(format!(
                        "it lists tensor `{key}` in {} but that file does not hold it",
                        file.as_str().unwrap_or("?")
                    )))
                }
                Some(entry) => {
                    let expected = dir.join(file.as_str().unwrap_or_default());
                    if store.files[entry.file].path != expected {
                        tracing::warn!(key, index = %index_path.display(), "shard index names another file for this tensor");
                    }
                }
            }
        }
        Ok(store)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All tensor keys (unordered).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether the store holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The header's description of `key`.
    pub fn info(&self, key: &str) -> Option<TensorInfo<'_>> {
        self.entries.get(key).map(|e| TensorInfo {
            shape: &e.shape,
            dtype: e.dtype,
            path: &self.files[e.file].path,
        })
    }

    /// The shape of `key` as stored.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    /// The files of the store, in opening order.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// The files as one string for messages ("a.safetensors" or "a, b (2 shards)").
    pub fn describe_files(&self) -> String {
        match self.files.as_slice() {
            [one] => one.path.display().to_string(),
            many => format!(
                "{} ({} shards)",
                many.iter()
                    .map(|f| f.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                many.len()
            ),
        }
    }

    /// A value of the files' `__metadata__` header section (first file that has it).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.files
            .iter()
            .find_map(|f| f.metadata.get(key).map(String::as_str))
    }

    /// Loads `key` whole as a tensor of `dtype` on `device`.
    pub fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let entry = self.entry(key)?;
        self.load_range(key, entry, entry.bytes.clone(), &entry.shape, dtype, device)
    }

    /// Loads rows `rows` (along dimension 0) of `key`: a slice of a fused tensor, read without
    /// touching the other rows.
    pub fn load_rows(
        &self,
        key: &str,
        rows: Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let entry = self.entry(key)?;
        let Some((&first, rest)) = entry.shape.split_first() else {
            return Err(self.read_error(key, entry, "a scalar has no rows to slice".to_string()));
        };
        if rows.start > rows.end || rows.end > first {
            return Err(self.read_error(
                key,
                entry,
                format!(
                    "rows {rows:?} are outside its {first} rows (shape {:?})",
                    entry.shape
                ),
            ));
        }
        let stored = self.stored_dtype(key, entry)?;
        let row_bytes = rest.iter().product::<usize>() * stored.size_in_bytes();
        let start = entry.bytes.start + rows.start * row_bytes;
        let end = entry.bytes.start + rows.end * row_bytes;
        let mut shape = entry.shape.clone();
        shape[0] = rows.end - rows.start;
        self.load_range(key, entry, start..end, &shape, dtype, device)
    }

    fn load_range(
        &self,
        key: &str,
        entry: &Entry,
        bytes: Range<usize>,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        if !is_weight_dtype(dtype) {
            return Err(WeightsError::UnsupportedTargetDtype { dtype });
        }
        let stored = self.stored_dtype(key, entry)?;
        let file = &self.files[entry.file];
        let data = file.mmap.get(bytes.clone()).ok_or_else(|| {
            self.read_error(
                key,
                entry,
                format!("byte range {bytes:?} is outside the file"),
            )
        })?;
        let tensor = decode(data, stored, shape, dtype, device)
            .map_err(|e| self.read_error(key, entry, e.to_string()))?;
        file.release(bytes);
        Ok(tensor)
    }

    fn entry(&self, key: &str) -> Result<&Entry> {
        self.entries
            .get(key)
            .ok_or_else(|| WeightsError::TensorNotFound {
                component: "model".to_string(),
                name: key.to_string(),
                expected: String::new(),
                files: self.describe_files(),
            })
    }

    fn stored_dtype(&self, key: &str, entry: &Entry) -> Result<StoredDtype> {
        StoredDtype::from_safetensors(entry.dtype).ok_or_else(|| WeightsError::UnsupportedDtype {
            path: self.files[entry.file].path.clone(),
            tensor: key.to_string(),
            dtype: entry.dtype.to_string(),
        })
    }

    fn read_error(&self, key: &str, entry: &Entry, detail: String) -> WeightsError {
        WeightsError::TensorRead {
            path: self.files[entry.file].path.clone(),
            tensor: key.to_string(),
            detail,
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> WeightsError {
    if e.kind() == std::io::ErrorKind::NotFound {
        WeightsError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        WeightsError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Whether the first bytes are those of a zip archive (torch.save's format) or a raw pickle.
fn looks_like_pickle(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
        || (head.len() >= 2 && head[0] == 0x80 && (1..=5).contains(&head[1]))
}

/// Maps one file and validates its header; entry `file` indices are left 0.
fn map_file(path: &Path) -> Result<(MappedFile, Vec<(String, Entry)>)> {
    if has_pickle_extension(path) {
        return Err(WeightsError::pickle(path, ""));
    }
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let file_meta = file.metadata().map_err(|e| io_error(path, e))?;
    if file_meta.is_dir() {
        return Err(WeightsError::NotACheckpoint {
            path: path.to_path_buf(),
            detail: "it is a folder, not a .safetensors file".to_string(),
        });
    }
    let len = file_meta.len();
    if len < 8 {
        return Err(WeightsError::Truncated {
            path: path.to_path_buf(),
            what: "the 8-byte header length".to_string(),
            needed: 8,
            actual: len,
        });
    }
    // SAFETY: the mapping is read-only; like every mmap-based loader (safetensors, candle) we
    // rely on the file not being truncated or rewritten by another process while it is open.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| io_error(path, e))?;
    let header_len = u64::from_le_bytes([
        mmap[0], mmap[1], mmap[2], mmap[3], mmap[4], mmap[5], mmap[6], mmap[7],
    ]);
    if header_len > MAX_HEADER_BYTES {
        if looks_like_pickle(&mmap) {
            return Err(WeightsError::pickle(
                path,
                " (its content is a PyTorch zip/pickle archive despite its name)",
            ));
        }
        return Err(WeightsError::CorruptHeader {
            path: path.to_path_buf(),
            detail: format!(
                "the header length field says {header_len} bytes, more than any safetensors header"
            ),
        });
    }
    let header_end = 8 + header_len;
    if header_end > len {
        if looks_like_pickle(&mmap) {
            return Err(WeightsError::pickle(
                path,
                " (its content is a PyTorch zip/pickle archive despite its name)",
            ));
        }
        return Err(WeightsError::Truncated {
            path: path.to_path_buf(),
            what: format!("the {header_len}-byte header"),
            needed: header_end,
            actual: len,
        });
    }
    // header_end <= len, which is a mapped length, so it fits in usize.
    let header_end = header_end as usize;
    let metadata: safetensors::tensor::Metadata = serde_json::from_slice(&mmap[8..header_end])
        .map_err(|e| {
            if looks_like_pickle(&mmap) {
                WeightsError::pickle(
                    path,
                    " (its content is a PyTorch zip/pickle archive despite its name)",
                )
            } else {
                WeightsError::CorruptHeader {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            }
        })?;
    let data_len = metadata.data_len();
    let needed = header_end as u64 + data_len as u64;
    if needed > len {
        return Err(WeightsError::Truncated {
            path: path.to_path_buf(),
            what: format!("the header plus {data_len} bytes of tensor data"),
            needed,
            actual: len,
        });
    }
    if needed < len {
        tracing::warn!(path = %path.display(), extra = len - needed, "safetensors file has bytes after its tensor data; ignoring them");
    }
    let entries = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (s, e) = info.data_offsets;
            let entry = Entry {
                file: 0,
                dtype: info.dtype,
                shape: info.shape.clone(),
                bytes: header_end + s..header_end + e,
            };
            (name, entry)
        })
        .collect();
    let file_metadata = metadata.metadata().clone().unwrap_or_default();
    Ok((
        MappedFile {
            path: path.to_path_buf(),
            mmap,
            metadata: file_metadata,
        },
        entries,
    ))
}
