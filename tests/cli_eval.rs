//! `kakusan eval --check-targets`: the shipped kakusan-mini meets its adherence targets on the
//! first 20 held-out prompts (issue 4 item 5's end-to-end test; on all 200 the stage-8 model
//! reads glyph 86.5 %, colour 98.6 %, background and position 100 %), and a model that draws
//! nothing recognisable fails the check with a clear message.

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

/// The built-in model (the default `--model`) passes the check on the first 20 held-out
/// prompts: colour >= 90 %, glyph >= 85 %, position >= 85 %, background >= 90 % of the 14
/// one-object pictures (measured: 92.9 / 100 / 100 / 100 %; colour has one picture of margin).
#[test]
fn the_built_in_model_meets_the_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eval(None, 20, &tmp.path().join("grid.png"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every adherence target met"), "{stdout}");
    assert!(tmp.path().join("grid.png").exists());
}
