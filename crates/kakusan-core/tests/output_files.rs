//! Output folder behaviour seen from outside: numbering like A1111, no overwrites, no
//! temporary files left behind, and clear errors for folders that cannot be written.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use kakusan_core::output::{
    ensure_writable_dir, next_output_path, sequence_number, write_atomically_with,
    write_new_output, OutputError,
};

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn empty_folder_starts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = next_output_path(dir.path(), 1234, "png").unwrap();
    assert_eq!(path, dir.path().join("00000-1234.png"));
    assert!(path.exists(), "the name is reserved by creating the file");
}

#[test]
fn next_number_is_one_more_than_the_highest_and_skips_gaps() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "00003-1.png",
        "00011-99.png",
        "00007-5.jpg",
        "notes.txt",
        "grid-0040.png",
    ] {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    fs::create_dir(dir.path().join("00002-folder")).unwrap();
    let path = next_output_path(dir.path(), 1234, ".png").unwrap();
    assert_eq!(path.file_name().unwrap(), "00012-1234.png");
    // The reservation counts too: the next one is 13 even before anything is written.
    let path = next_output_path(dir.path(), 1234, "png").unwrap();
    assert_eq!(path.file_name().unwrap(), "00013-1234.png");
    // Existing files were not touched.
    assert_eq!(fs::read(dir.path().join("00011-99.png")).unwrap(), b"x");
}

#[test]
fn numbers_wider_than_five_digits_keep_counting() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("99999-1.png"), b"x").unwrap();
    let path = next_output_path(dir.path(), 2, "png").unwrap();
    assert_eq!(path.file_name().unwrap(), "100000-2.png");
    assert_eq!(sequence_number("100000-2.png"), Some(100_000));
}

#[test]
fn bad_extension_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = next_output_path(dir.path(), 1, "png/../x").unwrap_err();
    assert!(matches!(err, OutputError::BadExtension(_)), "{err}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn write_new_output_writes_bytes_under_the_numbered_name() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("00004-1.png"), b"old").unwrap();
    let path = write_new_output(dir.path(), 42, "png", b"PNGDATA").unwrap();
    assert_eq!(path.file_name().unwrap(), "00005-42.png");
    assert_eq!(fs::read(&path).unwrap(), b"PNGDATA");
    assert_eq!(names_in(dir.path()), vec!["00004-1.png", "00005-42.png"]);
}

#[test]
fn concurrent_reservations_never_share_a_number() {
    // Threads of one process race exactly like processes do: same folder, different seeds.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let dir = Arc::clone(&dir);
            std::thread::spawn(move || {
                (0..10u64)
                    .map(|i| next_output_path(dir.path(), t * 100 + i, "png").unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let paths: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(paths.len(), 80);
    let numbers: HashSet<u64> = paths
        .iter()
        .map(|p| sequence_number(p.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();
    assert_eq!(numbers.len(), 80, "two reservations got the same number");
    assert_eq!(
        names_in(dir.path()).len(),
        80,
        "a backed-off reservation was left behind"
    );
}

#[test]
fn ensure_writable_dir_creates_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a").join("b");
    ensure_writable_dir(&target).unwrap();
    assert!(target.is_dir());
    assert!(
        names_in(&target).is_empty(),
        "the probe file must be removed"
    );
    ensure_writable_dir(&target).unwrap(); // existing folder: fine
}

#[test]
fn folder_under_a_regular_file_is_a_clear_error() {
    // Tests may run as root, where permission bits do not stop writes; a path below a regular
    // file fails for every user.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    fs::write(&file, b"x").unwrap();
    let target = file.join("sub");
    let err = ensure_writable_dir(&target).unwrap_err();
    assert!(matches!(err, OutputError::CreateDir { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(
        message.contains("os error"),
        "the OS reason is given: {message}"
    );
    assert!(
        message.contains("choose a folder"),
        "says what to do: {message}"
    );
}

#[test]
fn output_path_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    fs::write(&file, b"x").unwrap();
    let err = ensure_writable_dir(&file).unwrap_err();
    assert!(matches!(err, OutputError::NotADirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("not a folder"), "{err}");
}

#[cfg(unix)]
#[test]
fn read_only_folder_is_reported_when_permissions_apply() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ro");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o500)).unwrap();
    let result = ensure_writable_dir(&target);
    // Whether the write is refused depends on who runs the test (root ignores the bits); the
    // probe must agree with what actually happens when a file is created there.
    let can_write = fs::File::create(target.join("try")).is_ok();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
    match result {
        Ok(()) => assert!(can_write, "probe said writable but creating a file failed"),
        Err(e) => {
            assert!(
                !can_write,
                "probe said not writable but creating a file worked"
            );
            assert!(matches!(e, OutputError::NotWritable { .. }), "{e:?}");
            assert!(e.to_string().contains("permissions"), "{e}");
        }
    }
}

#[test]
fn atomic_write_error_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let reserved = next_output_path(dir.path(), 7, "png").unwrap();
    let err = write_atomically_with(&reserved, |w| {
        w.write_all(&[0u8; 100_000])?;
        Err(io::Error::other("disk full (simulated)"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("disk full (simulated)"), "{err}");
    // Only the (empty) reservation remains: no temporary file, no partial data.
    assert_eq!(names_in(dir.path()), vec!["00000-7.png"]);
    assert_eq!(fs::metadata(&reserved).unwrap().len(), 0);
}
