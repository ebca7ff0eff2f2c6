//! AUTOMATIC1111's numbered output names: `<number:05>-<seed>.<ext>`, where the number is one
//! more than the highest number any entry of the folder starts with (A1111's
//! `get_next_sequence_number`: the part of the name before the extension and before the first
//! `-`, read as an integer; `00000` in an empty folder).
//!
//! A name is reserved by creating the file with `create_new`, so an existing file is never
//! overwritten, even by another process racing for the same name. Two processes that pick the
//! same number under different seeds (`00012-1.png`, `00012-2.png`) would both succeed at
//! that, so after creating its file a reservation looks again and backs off (removes its file
//! and retries with a later number) if another entry holds the same number. At least one of
//! two racing processes always sees the other, so two reservations never keep one number.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::atomic::write_atomically;
use super::OutputError;

/// How many numbers a reservation tries before giving up (A1111 tries 500 names too).
const MAX_TRIES: usize = 500;

/// Reserves the next numbered name `dir/NNNNN-<seed>.<ext>` and returns its path.
///
/// The file is created empty (with `create_new`, never replacing anything); fill it with
/// [`write_atomically`](super::write_atomically), which renames the finished data over it,
/// or remove it if the write is abandoned. [`write_new_output`] does all of this.
/// `ext` may be given with or without its dot (`"png"` or `".png"`); an empty `ext` gives a
/// name without extension.
pub fn next_output_path(dir: &Path, seed: u64, ext: &str) -> Result<PathBuf, OutputError> {
    let ext = ext.strip_prefix('.').unwrap_or(ext);
    if ext.contains(['/', '\\', '\0']) || ext.starts_with('.') {
        return Err(OutputError::BadExtension(ext.to_string()));
    }
    for attempt in 0..MAX_TRIES {
        let number = match highest_number(dir)? {
            Some(highest) => highest.saturating_add(1),
            None => 0,
        };
        let name = numbered_name(number, seed, ext);
        let path = dir.join(&name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => {}
            // Taken meanwhile: the next scan sees it and moves past it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(OutputError::Reserve { path, source }),
        }
        if !number_held_by_another(dir, number, &name)? {
            return Ok(path);
        }
        tracing::debug!(
            "number {number} in {} also taken by another writer; retrying",
            dir.display()
        );
        fs::remove_file(&path).map_err(|source| OutputError::Reserve {
            path: path.clone(),
            source,
        })?;
        std::thread::sleep(back_off(attempt));
    }
    Err(OutputError::NoFreeNumber {
        dir: dir.to_path_buf(),
        tries: MAX_TRIES,
    })
}

/// Writes `bytes` under the next numbered name in `dir` (see [`next_output_path`]) and returns
/// the path. If the write fails, the reserved name is removed again.
pub fn write_new_output(
    dir: &Path,
    seed: u64,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, OutputError> {
    let path = next_output_path(dir, seed, ext)?;
    if let Err(e) = write_atomically(&path, bytes) {
        if let Err(remove) = fs::remove_file(&path) {
            tracing::warn!(
                "could not remove the empty reservation {}: {remove}",
                path.display()
            );
        }
        return Err(e);
    }
    Ok(path)
}

/// The number an entry name starts with, as A1111 reads it: the name without its extension,
/// up to the first `-`, parsed as a decimal integer (ASCII digits only here; A1111's `int()`
/// would also take signs, spaces and `_`, which no output name of either program has).
pub fn sequence_number(file_name: &str) -> Option<u64> {
    let stem = stem_like_python(file_name);
    let first = stem.split('-').next().unwrap_or("");
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    first.parse().ok()
}

fn numbered_name(number: u64, seed: u64, ext: &str) -> String {
    if ext.is_empty() {
        format!("{number:05}-{seed}")
    } else {
        format!("{number:05}-{seed}.{ext}")
    }
}

/// `os.path.splitext(name)[0]`: drops the last `.suffix` unless the dot only starts the name
/// (leading dots of hidden files are not extensions).
fn stem_like_python(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if name[..dot].chars().any(|c| c != '.') => &name[..dot],
        _ => name,
    }
}

fn entry_names(dir: &Path) -> Result<Vec<String>, OutputError> {
    let list_error = |source| OutputError::ListDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        // Names that are not UTF-8 cannot start with ASCII digits we would have written.
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn highest_number(dir: &Path) -> Result<Option<u64>, OutputError> {
    Ok(entry_names(dir)?
        .iter()
        .filter_map(|name| sequence_number(name))
        .max())
}

fn number_held_by_another(dir: &Path, number: u64, ours: &str) -> Result<bool, OutputError> {
    Ok(entry_names(dir)?
        .iter()
        .any(|name| name != ours && sequence_number(name) == Some(number)))
}

/// A short pause that differs between processes and grows with the attempt, so two writers
/// that backed off together do not collide again.
fn back_off(attempt: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000;
    let scale = attempt.min(20) as u64 + 1;
    Duration::from_micros(200 + u64::from(spread) * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_as_a1111_reads_them() {
        assert_eq!(sequence_number("00012-1234.png"), Some(12));
        assert_eq!(sequence_number("00012-1234-extra.png"), Some(12));
        assert_eq!(sequence_number("123456-1.png"), Some(123456));
        assert_eq!(sequence_number("00007.png"), Some(7));
        assert_eq!(sequence_number("00007"), Some(7));
        assert_eq!(sequence_number("7-a.b.c"), Some(7));
        assert_eq!(sequence_number("grid-0001.png"), None);
        assert_eq!(sequence_number(".00012-1.png.4-0.tmp"), None);
        assert_eq!(sequence_number("-5.png"), None);
        assert_eq!(sequence_number("notes.txt"), None);
        assert_eq!(sequence_number("１２-1.png"), None); // full-width digits are not ours
    }

    #[test]
    fn python_like_stem() {
        assert_eq!(stem_like_python("a.png"), "a");
        assert_eq!(stem_like_python("a.b.png"), "a.b");
        assert_eq!(stem_like_python(".hidden"), ".hidden");
        assert_eq!(stem_like_python("..x"), "..x");
        assert_eq!(stem_like_python("noext"), "noext");
    }

    #[test]
    fn names_are_zero_padded_to_five() {
        assert_eq!(numbered_name(12, 1234, "png"), "00012-1234.png");
        assert_eq!(numbered_name(123456, 1, "webp"), "123456-1.webp");
        assert_eq!(numbered_name(0, 7, ""), "00000-7");
    }
}
