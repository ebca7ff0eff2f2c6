//! `kakusan eval --check-targets`: a model that draws nothing recognisable fails the check
//! with a clear message. (The shipped kakusan-mini still misses the glyph target, so the
//! end-to-end adherence test, `cli_builtin_model.rs`, checks the attributes it does meet; once
//! glyphs pass too, `--check-targets` on its first 20 held-out prompts belongs here.)

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn eval(model: Option<PathBuf>, count: usize, grid: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kakusan"));
    cmd.args(["eval", "--check-targets", "--count"])
        .arg(count.to_string())
        .arg("--grid")
        .arg(grid);
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    cmd.output().unwrap()
}

/// The random-weight SD1-shaped fixture draws noise: the check fails with a clear message
/// and a non-zero exit.
#[test]
fn a_model_that_draws_noise_misses_the_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eval(
        Some(repo().join("tests/fixtures/sd1-tiny")),
        2,
        &tmp.path().join("grid.png"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adherence below target"), "{stderr}");
}
