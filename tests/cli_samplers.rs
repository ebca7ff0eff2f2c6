//! `kakusan samplers` and the `--sampler` / `--schedule` names from the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn kakusan(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(args)
        .arg("--output-dir")
        .arg(out)
        .output()
        .unwrap()
}

fn generate(sampler: &str, schedule: Option<&str>, out: &Path) -> Output {
    let model = fixtures().join("sd1-tiny");
    let mut args = vec![
        "generate",
        "a red circle",
        "--steps",
        "5",
        "--width",
        "64",
        "--height",
        "64",
        "--seed",
        "9",
        "--model",
        model.to_str().unwrap(),
        "--sampler",
        sampler,
    ];
    if let Some(s) = schedule {
        args.extend(["--schedule", s]);
    }
    kakusan(&args, out)
}

#[test]
fn samplers_lists_one_line_each() {
    let out = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .arg("samplers")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for id in [
        "euler_ancestral",
        "dpmpp_2m",
        "dpmpp_3m_sde",
        "restart",
        "lcm",
        "ddpm",
        "plms",
        "uni_pc",
        "uni_pc_bh2",
    ] {
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(&format!(" {id} ")))
                .count(),
            1,
            "{id}\n{text}"
        );
    }
    for schedule in ["karras", "sgm_uniform", "beta"] {
        assert!(text.contains(schedule), "{schedule}");
    }
}

#[test]
fn unknown_sampler_lists_the_valid_names_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    // No model is read: the name is checked first.
    let out = kakusan(
        &[
            "generate",
            "x",
            "--model",
            "/nonexistent",
            "--sampler",
            "DPM++ 4M",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DPM++ 4M") && err.contains("dpmpp_2m_sde"),
        "{err}"
    );
    let out = kakusan(
        &[
            "generate",
            "x",
            "--model",
            "/nonexistent",
            "--sampler",
            "Euler",
            "--schedule",
            "cosine",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sgm_uniform"));
}

#[test]
fn a1111_and_comfy_names_give_the_same_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let run_a = generate("DPM++ 2M Karras", None, &a);
    assert!(
        run_a.status.success(),
        "{}",
        String::from_utf8_lossy(&run_a.stderr)
    );
    let run_b = generate("dpmpp_2m", Some("karras"), &b);
    assert!(
        run_b.status.success(),
        "{}",
        String::from_utf8_lossy(&run_b.stderr)
    );
    let png_a = std::fs::read(a.join("txt2img/00000-9.png")).unwrap();
    let png_b = std::fs::read(b.join("txt2img/00000-9.png")).unwrap();
    assert_eq!(png_a, png_b);
    // The metadata names the sampler and the schedule separately (A1111 1.9+).
    let info = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .arg("info")
        .arg(a.join("txt2img/00000-9.png"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("Sampler: DPM++ 2M,"), "{text}");
    assert!(text.contains("Schedule type: Karras"), "{text}");
    // A conflicting schedule is refused.
    let run_c = generate(
        "DPM++ 2M Karras",
        Some("exponential"),
        &tmp.path().join("c"),
    );
    assert!(!run_c.status.success());
}

#[test]
fn every_sampler_runs_on_the_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pictures = Vec::new();
    for (i, id) in [
        "euler",
        "heun",
        "dpm_2_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m_sde_heun",
        "dpmpp_3m_sde",
        "lms",
        "dpm_fast",
        "dpm_adaptive",
        "restart",
        "lcm",
        "ddpm",
        "plms",
        "uni_pc",
        "uni_pc_bh2",
    ]
    .iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("{i}"));
        let run = generate(id, None, &dir);
        assert!(
            run.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        pictures.push(std::fs::read(dir.join("txt2img/00000-9.png")).unwrap());
    }
    // Different samplers draw different pictures from the same seed.
    let distinct: std::collections::HashSet<_> = pictures.iter().collect();
    assert!(distinct.len() > pictures.len() / 2);
}

#[test]
fn a_sampler_list_renders_one_labelled_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let run = generate(
        "Euler a,DPM++ 2M,dpmpp_sde",
        Some("normal,karras"),
        tmp.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("txt2img"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one grid, no single pictures: {files:?}");
    let grid = image::open(&files[0]).unwrap().to_rgb8();
    // 3 columns (samplers) x 2 rows (schedules) of 64 px cells, 4 px gaps, a label line each.
    assert_eq!(grid.width(), 3 * 64 + 4 * 4);
    assert!(grid.height() > 2 * 64 + 3 * 4 && grid.height() < 2 * 64 + 3 * 4 + 2 * 40);
    // The DPM++ 2M / Normal cell is the plain DPM++ 2M picture.
    let single = tmp.path().join("single");
    let run = generate("DPM++ 2M", None, &single);
    assert!(run.status.success());
    let picture = image::open(single.join("txt2img/00000-9.png"))
        .unwrap()
        .to_rgb8();
    let label_h = grid.height() - 3 * 4 - 2 * 64;
    let cell_y = 4 + label_h / 2;
    for (x, y) in [(0, 0), (31, 40), (63, 63)] {
        assert_eq!(
            grid.get_pixel(4 + 64 + 4 + x, cell_y + y),
            picture.get_pixel(x, y)
        );
    }
}

#[test]
fn sampler_options_are_recorded_in_the_png() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("sd1-tiny");
    let run = kakusan(
        &[
            "generate",
            "a red circle",
            "--steps",
            "4",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "2",
            "--model",
            model.to_str().unwrap(),
            "--sampler",
            "DPM++ SDE",
            "--schedule",
            "karras",
            "--eta",
            "0.5",
            "--sigma-max",
            "10",
        ],
        tmp.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let info = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .arg("info")
        .arg(tmp.path().join("txt2img/00000-2.png"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("Eta: 0.5"), "{text}");
    assert!(text.contains("Schedule max sigma: 10"), "{text}");
    assert!(!text.contains("Sigma churn"), "{text}");
}
