//! `kakusan generate --preview`: the sandstorm strip and animation from the binary.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn generate(out: &std::path::Path, preview: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args([
            "generate",
            "a red circle",
            "--steps",
            "6",
            "--width",
            "64",
            "--height",
            "64",
        ])
        .args(["--seed", "5", "--preview-frames", "4"])
        .arg("--model")
        .arg(fixtures().join("sd1-tiny"))
        .arg("--output-dir")
        .arg(out)
        .arg("--preview")
        .arg(preview)
        .output()
        .unwrap()
}

#[test]
fn png_strip_has_a_noisy_and_a_guess_row_per_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let strip = tmp.path().join("steps.png");
    let out = generate(tmp.path(), &strip);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&strip).unwrap().to_rgb8();
    // 4 frames of 64 px with 2 px gaps; two rows.
    assert_eq!(img.dimensions(), (4 * 64 + 3 * 2, 2 * 64 + 2));
    // The first frame's noisy picture is not the last frame's guess.
    let first = img.get_pixel(10, 10);
    let last_guess = img.get_pixel(3 * 66 + 10, 66 + 10);
    assert_ne!(first, last_guess);
}

#[test]
fn gif_animation_and_bad_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let anim = tmp.path().join("steps.gif");
    let out = generate(tmp.path(), &anim);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&anim).unwrap();
    assert_eq!(&bytes[..6], b"GIF89a");

    let bad = tmp.path().join("steps.jpg");
    let out = generate(tmp.path(), &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".png") && err.contains(".gif"), "{err}");
    assert!(!bad.exists());
}
