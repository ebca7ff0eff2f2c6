//! Checking an output folder before any work is spent: created if missing, then proven
//! writable by creating and removing a probe file (permission bits alone do not tell, e.g. for
//! root, read-only mounts or full disks).

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::OutputError;

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates `dir` (and its parents) if missing and checks that files can be created in it.
///
/// Errors name the folder, give the OS reason and say what to do: [`OutputError::CreateDir`]
/// when it cannot be created (e.g. a parent is a regular file, or permission is denied),
/// [`OutputError::NotADirectory`] when it is a file, [`OutputError::NotWritable`] when a file
/// cannot be created in it.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), OutputError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(OutputError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
            tracing::debug!("created output folder {}", dir.display());
        }
        Err(source) => {
            return Err(OutputError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let probe = dir.join(format!(
        ".kakusan-write-probe-{}-{}",
        std::process::id(),
        PROBE_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(file) => {
            drop(file);
            if let Err(e) = fs::remove_file(&probe) {
                tracing::warn!("could not remove probe file {}: {e}", probe.display());
            }
            Ok(())
        }
        Err(source) => Err(OutputError::NotWritable {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
