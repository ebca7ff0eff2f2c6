//! `kakusan eval --check-targets`: the shipped kakusan-mini meets its adherence targets on
//! the 200 held-out prompts at its defaults (issue 4 items 5 and 9: glyph 85.1 %, colour
//! 98.0 %, background and position 100 %), and a model that draws nothing recognisable fails
//! the check with a clear message.

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

/// The built-in model (the default `--model`) passes the check on the whole held-out set of
/// 200 prompts, the set its targets are defined on: of the 148 one-object pictures, colour at
/// least 90 %, glyph 85 %, position 85 % and background 90 %. Measured (release and debug
/// builds draw the same pictures): colour 98.0 %, glyph 85.1 % (126 of 148; 125 would miss),
/// background and position 100 %. The whole set, not a subset of about 16 prompts (the issue's
/// suggestion): the model that trains inside the 3-hour budget reads glyphs at 85-89 % on
/// held-out prompt sets, so 14 one-object pictures pass or miss 12 of 14 by chance (the first
/// 20 prompts read 11 of 14; the staged stage-8 model it replaced read 14 of 14). Float order
/// differs between CPUs (GEMM blocking, vector widths), but the sampler does not amplify
/// such noise: guidance scales one f32 ulp either side of 2.5 changed at most 1/255 in ~300 of
/// the grid's 14.4 M pixel values and not one reading. About 6 minutes in a debug build on 2
/// cores.
#[test]
fn the_built_in_model_meets_the_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eval(None, 200, &tmp.path().join("grid.png"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every adherence target met"), "{stdout}");
    assert!(tmp.path().join("grid.png").exists());
}
