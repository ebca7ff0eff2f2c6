//! Output files that never overwrite: A1111-style numbered names (`00012-1234.png`), the
//! name reserved with create-new, the bytes written to a temporary file and renamed into
//! place, so a failure never leaves a half-written file under a final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write to output folder {dir}: {reason}; choose another --output-dir")]
    Unwritable { dir: PathBuf, reason: String },
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(transparent)]
    Png(#[from] crate::png_meta::PngMetaError),
}

/// Creates `dir` if needed and proves it can be written.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), OutputError> {
    let fail = |e: std::io::Error| OutputError::Unwritable {
        dir: dir.into(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".kakusan-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let fail = |e: std::io::Error| OutputError::Write {
        path: path.into(),
        reason: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// 1 + the largest 5-digit number that starts a file name in `dir`.
fn next_number(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u64>().ok()
        })
        .max()
        .map_or(0, |n| n + 1)
}

/// Saves `img` as `dir/NNNNN-SEED.png` with `parameters` text; never overwrites.
pub fn save_png_numbered(
    dir: &Path,
    seed: u64,
    img: &RgbImage,
    parameters: &str,
) -> Result<PathBuf, OutputError> {
    let bytes = crate::png_meta::encode_png_with_parameters(img, parameters)?;
    let mut n = next_number(dir);
    loop {
        let path = dir.join(format!("{n:05}-{seed}.png"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {
                return match write_atomically(&path, &bytes) {
                    Ok(()) => Ok(path),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        Err(e)
                    }
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => {
                return Err(OutputError::Write {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_continues_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::new(2, 2);
        let a = save_png_numbered(dir.path(), 5, &img, "x").unwrap();
        assert!(a.ends_with("00000-5.png"));
        std::fs::write(dir.path().join("00007-1.png"), "keep").unwrap();
        let b = save_png_numbered(dir.path(), 5, &img, "x").unwrap();
        assert!(b.ends_with("00008-5.png"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("00007-1.png")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn unwritable_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "x").unwrap();
        let err = ensure_writable_dir(&file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot write to output folder") && err.contains("--output-dir"),
            "{err}"
        );
    }

    #[test]
    fn failed_atomic_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing/sub/x.bin");
        assert!(write_atomically(&target, b"abc").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
