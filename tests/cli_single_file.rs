//! Single-file checkpoints of non-standard models: `--config-from` supplies the configs the
//! weights cannot tell (head counts, norm groups), and without it the error says so.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn generate(extra: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args([
            "generate",
            "a red circle",
            "--steps",
            "2",
            "--width",
            "64",
            "--height",
            "64",
        ])
        .arg("--model")
        .arg(fixtures().join("sd2-tiny.safetensors"))
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn config_from_makes_a_tiny_single_file_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = fixtures().join("sd2-tiny");
    let out = generate(&["--config-from", folder.to_str().unwrap()], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = generate(&[], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config-from"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
