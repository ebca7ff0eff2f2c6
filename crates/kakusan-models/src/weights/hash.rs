//! Model hashes as AUTOMATIC1111 shows them: "AutoV2" is the first 10 hex digits of the
//! SHA-256 of the whole checkpoint file (the `Model hash` of its PNG infotext, and Civitai's
//! AutoV2 hash).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{Result, WeightsError};

/// Hex digits of the short (AutoV2) hash.
pub const SHORT_HASH_LEN: usize = 10;

/// The lowercase hex SHA-256 of the file at `path`, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
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
}
