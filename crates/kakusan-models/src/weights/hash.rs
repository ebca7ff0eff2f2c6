//! File hashes as AUTOMATIC1111 shows them:
//! - "AutoV2" is the first 10 hex digits of the SHA-256 of the whole checkpoint file (the
//!   `Model hash` of its PNG infotext, and Civitai's AutoV2 hash);
//! - a textual-inversion embedding's hash is the SHA-256 of its whole file, shown by its first
//!   12 hex digits (`TI hashes`);
//! - a LoRA `.safetensors` file's hash is kohya's "addnet" hash: the SHA-256 of the file after
//!   its header (so editing the metadata does not change it), also shown by 12 hex digits
//!   (`Lora hashes`); A1111 prefers the `sshs_model_hash` the trainer wrote into the header.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{Result, WeightsError};

/// Hex digits of the short (AutoV2) hash.
pub const SHORT_HASH_LEN: usize = 10;

/// Hex digits of the hashes in `TI hashes` and `Lora hashes`.
pub const NETWORK_HASH_LEN: usize = 12;

/// The lowercase hex SHA-256 of the file at `path`, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_from(path, false)
}

/// kohya's "addnet" hash of a `.safetensors` file: the lowercase hex SHA-256 of everything
/// after the 8-byte header length and the header it announces.
pub fn addnet_hash_safetensors(path: &Path) -> Result<String> {
    hash_from(path, true)
}

/// The SHA-256 of the file, skipping the safetensors header when `skip_header`.
fn hash_from(path: &Path, skip_header: bool) -> Result<String> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            WeightsError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            WeightsError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    if skip_header {
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io)?;
        let skip = u64::from_le_bytes(len);
        // Python's seek past the end reads nothing: hash the empty rest.
        std::io::copy(&mut (&mut file).take(skip), &mut std::io::sink()).map_err(io)?;
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The AutoV2 short hash of a full hex SHA-256.
pub fn short_hash(sha256_hex: &str) -> String {
    sha256_hex.chars().take(SHORT_HASH_LEN).collect()
}

/// The short form of a full hex hash in A1111's `TI hashes` and `Lora hashes`.
pub fn network_short_hash(sha256_hex: &str) -> String {
    sha256_hex.chars().take(NETWORK_HASH_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc.bin");
        std::fs::write(&path, b"abc").unwrap();
        let sha = sha256_file(&path).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(short_hash(&sha), "ba7816bf8f");
        assert!(matches!(
            sha256_file(&dir.path().join("none")),
            Err(WeightsError::MissingFile { .. })
        ));
    }

    #[test]
    fn addnet_hash_skips_the_safetensors_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lora.safetensors");
        let header = br#"{"__metadata__":{"a":"b"}}  "#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(b"abc");
        std::fs::write(&path, &bytes).unwrap();
        // The SHA-256 of "abc": only the bytes after the header count.
        let addnet = addnet_hash_safetensors(&path).unwrap();
        assert_eq!(
            addnet,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(sha256_file(&path).unwrap(), addnet);
        assert_eq!(network_short_hash(&addnet), "ba7816bf8f01");
        // A header length past the end leaves nothing to hash (Python's seek does the same).
        let mut short = 1000u64.to_le_bytes().to_vec();
        short.extend_from_slice(b"abc");
        std::fs::write(&path, &short).unwrap();
        assert_eq!(
            addnet_hash_safetensors(&path).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Fewer than 8 bytes: an I/O error, not a panic.
        std::fs::write(&path, b"abc").unwrap();
        assert!(addnet_hash_safetensors(&path).is_err());
    }
}
