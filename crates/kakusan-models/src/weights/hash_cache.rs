//! A cache of checkpoint SHA-256s, so a multi-gigabyte file is hashed once and not on every
//! load (A1111 keeps the same kind of cache in its `cache.json`).
//!
//! Entries are keyed by the file's canonical path and are valid while its size and
//! modification time are unchanged. The cache lives in `$KAKUSAN_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/kakusan`, else `~/.cache/kakusan` (`hashes.json`). It is an optimisation
//! only: if it cannot be read or written, the hash is computed as if it were absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::error::Result;
use super::hash::sha256_file;

const FILE_NAME: &str = "hashes.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

/// The cache file in one folder.
pub struct HashCache {
    dir: PathBuf,
}

impl HashCache {
    /// The cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The user's cache (see the module docs), if a location can be named.
    pub fn default_location() -> Option<Self> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("KAKUSAN_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("kakusan")))
            .or_else(|| env("HOME").map(|h| h.join(".cache").join("kakusan")))
            .map(Self::at)
    }

    fn load(&self) -> BTreeMap<String, Entry> {
        std::fs::read(self.dir.join(FILE_NAME))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The SHA-256 of `path`, from the cache when the file is unchanged, else computed and
    /// remembered.
    pub fn sha256(&self, path: &Path) -> Result<String> {
        let Some((key, size, modified_ns)) = identity(path) else {
            return sha256_file(path);
        };
        let mut entries = self.load();
        if let Some(e) = entries.get(&key) {
            if e.size == size && e.modified_ns == modified_ns {
                return Ok(e.sha256.clone());
            }
        }
        let sha = sha256_file(path)?;
        entries.insert(
            key,
            Entry {
                size,
                modified_ns,
                sha256: sha.clone(),
            },
        );
        let saved = std::fs::create_dir_all(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::to_vec_pretty(&entries).map_err(|e| e.to_string()))
            .and_then(|bytes| {
                kakusan_core::output::write_atomically(&self.dir.join(FILE_NAME), &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            tracing::debug!("not caching the hash of {}: {e}", path.display());
        }
        Ok(sha)
    }
}

/// Canonical path, size and modification time (ns since the epoch) of a file.
fn identity(path: &Path) -> Option<(String, u64, u128)> {
    let canonical = path.canonicalize().ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((
        canonical.to_string_lossy().into_owned(),
        meta.len(),
        modified.as_nanos(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_while_unchanged_and_recomputed_after_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("model.safetensors");
        std::fs::write(&file, b"abc").unwrap();
        let cache = HashCache::at(tmp.path().join("cache"));
        let sha = cache.sha256(&file).unwrap();
        assert_eq!(sha, sha256_file(&file).unwrap());

        // Prove the second answer comes from the cache: plant another value for the entry.
        let path = tmp.path().join("cache").join(FILE_NAME);
        let mut entries: BTreeMap<String, Entry> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(entries.len(), 1);
        entries
            .values_mut()
            .for_each(|e| e.sha256 = "planted".into());
        std::fs::write(&path, serde_json::to_vec(&entries).unwrap()).unwrap();
        assert_eq!(cache.sha256(&file).unwrap(), "planted");

        // A changed file (other size) is hashed again.
        std::fs::write(&file, b"abcd").unwrap();
        assert_eq!(cache.sha256(&file).unwrap(), sha256_file(&file).unwrap());
    }

    #[test]
    fn an_unusable_cache_falls_back_to_hashing() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("m.safetensors");
        std::fs::write(&file, b"xyz").unwrap();
        // The cache folder is a file: nothing can be written there.
        let blocker = tmp.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let cache = HashCache::at(&blocker);
        assert_eq!(cache.sha256(&file).unwrap(), sha256_file(&file).unwrap());
    }
}
