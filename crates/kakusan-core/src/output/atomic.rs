//! Whole-file writes: the bytes go to a temporary file in the target's folder, are flushed to
//! disk, and the temporary file is then renamed onto the target. Readers see either the old
//! file or the complete new one; a failure (or a panic in the writer) removes the temporary
//! file and leaves the target as it was.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::OutputError;

/// How many temporary names are tried before giving up (they only collide with leftovers).
const TEMP_NAME_TRIES: u64 = 100;

/// Distinguishes temporary files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically, replacing `path` if it exists (see the module doc).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// Writes what `write` produces to `path` atomically, replacing `path` if it exists.
///
/// `write` gets a buffered writer onto a temporary file beside `path` (named
/// `.<file name>.<pid>-<n>.tmp`); if it fails, or the data cannot be flushed and synced, or
/// the rename fails, the temporary file is removed and `path` is untouched.
pub fn write_atomically_with<F>(path: &Path, write: F) -> Result<(), OutputError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let fail = |source: io::Error| OutputError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not end in a file name",
        ))
    })?;
    let (temp, file) = create_temp_beside(parent_dir(path), file_name).map_err(fail)?;
    let mut guard = RemoveOnDrop(Some(temp));
    let result = (|| {
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        match &guard.0 {
            Some(temp) => fs::rename(temp, path),
            None => Ok(()),
        }
    })();
    match result {
        Ok(()) => {
            guard.0 = None; // renamed: nothing left to remove
            Ok(())
        }
        Err(source) => Err(fail(source)), // `guard` removes the temporary file
    }
}

/// The folder a path lives in (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates a fresh temporary file in `dir` whose name starts with a dot and `file_name`.
fn create_temp_beside(dir: &Path, file_name: &OsStr) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..TEMP_NAME_TRIES {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{pid}-{n}.tmp"));
        let temp = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Removes the file it holds when dropped (on error or panic), unless emptied first.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("could not remove temporary file {}: {e}", path.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_new_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomically(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(names_in(dir.path()), vec!["out.bin"]);
    }

    #[test]
    fn replaces_existing_file_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        fs::write(&path, b"old contents").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names_in(dir.path()), vec!["out.bin"]);
    }

    #[test]
    fn failing_writer_leaves_target_and_folder_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        fs::write(&path, b"old contents").unwrap();
        let err = write_atomically_with(&path, |w| {
            w.write_all(b"half of the ")?;
            Err(io::Error::other("encoder exploded"))
        })
        .unwrap_err();
        assert!(matches!(err, OutputError::Write { .. }));
        let message = err.to_string();
        assert!(
            message.contains("out.bin") && message.contains("encoder exploded"),
            "{message}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"old contents");
        assert_eq!(names_in(dir.path()), vec!["out.bin"]);
    }

    #[test]
    fn failing_writer_creates_nothing_when_target_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.bin");
        write_atomically_with(&path, |_| Err(io::Error::other("nope"))).unwrap_err();
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn panicking_writer_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.bin");
        let outcome = std::panic::catch_unwind(|| {
            let _ = write_atomically_with(&path, |_| panic!("writer panicked"));
        });
        assert!(outcome.is_err());
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-folder").join("x.bin");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("x.bin"), "{err}");
    }

    #[test]
    fn path_without_file_name_is_rejected() {
        let err = write_atomically(Path::new("/"), b"x").unwrap_err();
        assert!(err.to_string().contains("file name"), "{err}");
    }
}
