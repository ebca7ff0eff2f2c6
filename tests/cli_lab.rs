//! `kakusan lab run|confirm` end to end on the SD1-shaped fixture model (its pictures are
//! noise, which is all the machinery needs): every picture drawn and measured once, the
//! analysis and report written, a killed run resumed without drawing anything again, the
//! confirmation run, a run folder that refuses another experiment, and a T-method unit space
//! built from the pictures and scored against.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXPERIMENT: &str = r#"
name = "test: three two-level factors on L4"
template = "a {colour} {glyph} on a blue background"

[settings]
steps = 3
width = 64
height = 64

[[factor]]
name = "colour wording"
slot = "colour"
levels = ["red", "(red:1.3)"]

[[factor]]
name = "digit wording"
slot = "glyph"
levels = ["5", "five"]

[[factor]]
name = "CFG scale"
setting = "cfg"
levels = [4.0, 7.0]

[noise]
seeds = [1, 2]

[response]
measure = "probability"
target = { glyph = "5", colour = "red", background = "blue" }
sn = "larger-the-better"
"#;

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd1-tiny")
}

fn lab(command: &str, experiment: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(["lab", command])
        .arg(experiment)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(model())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn runs_resumes_without_redrawing_and_confirms() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let out = tmp.path().join("run");

    let first = ok(&lab("run", &exp, &out));
    assert!(first.contains("4 rows x 2 noise conditions"), "{first}");
    assert!(first.contains("ANOVA of the SN ratio"), "{first}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    let images: Vec<PathBuf> = (1..=4)
        .flat_map(|r| (1..=2).map(move |n| format!("images/r{r:02}-n{n:02}.png")))
        .map(|f| out.join(f))
        .collect();
    assert!(images.iter().all(|p| p.is_file()));
    // Every picture carries its generation parameters.
    let info = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .arg("info")
        .arg(&images[0])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("Seed: 1"));
    for f in ["report.html", "effects-sn.png", "effects-mean.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for part in [
        "ANOVA",
        "SN ratio response table",
        "images/r04-n02.png",
        "Not confirmed yet",
    ] {
        assert!(html.contains(part), "report.html lacks {part}");
    }

    // A run killed after drawing but before measuring: its last records are gone, the
    // pictures are still there. The rerun measures them from the files and draws nothing.
    let times: Vec<_> = images.iter().map(|p| modified(p)).collect();
    let kept: Vec<&str> = csv.lines().take(1 + 5).collect();
    std::fs::write(out.join("results.csv"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    let again = lab("run", &exp, &out);
    let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
    ok(&again);
    assert!(stderr.contains("5 already measured"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv")).unwrap(),
        csv,
        "the same responses again"
    );
    let after: Vec<_> = images.iter().map(|p| modified(p)).collect();
    assert_eq!(times, after, "no picture was drawn again");
    assert!(out.join("report.html").is_file());

    // The confirmation run draws the optimum over both seeds and reports it.
    let confirm = ok(&lab("confirm", &exp, &out));
    assert!(confirm.contains("confirmation: observed SN"), "{confirm}");
    assert!(out.join("images/c01-n01.png").is_file());
    assert!(out.join("images/c01-n02.png").is_file());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Confirmation run at the optimum"));

    // A T-method unit space from the run's pictures, and the scores of two of them.
    let space = tmp.path().join("space.json");
    let built = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(["lab", "unitspace", "build"])
        .arg(out.join("images"))
        .arg("--out")
        .arg(&space)
        .output()
        .unwrap();
    let built = ok(&built);
    // One feature per class of every head (the evaluator's probabilities).
    let features: usize = kakusan_eval::Attribute::ALL
        .iter()
        .map(|a| a.classes())
        .sum();
    assert!(
        built.contains(&format!("unit space of 10 pictures, {features} features")),
        "{built}"
    );
    let scored = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(["lab", "unitspace", "score"])
        .arg(&space)
        .arg(&images[0])
        .arg(&images[1])
        .output()
        .unwrap();
    let scored = ok(&scored);
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(lines.len(), 3, "{scored}");
    for line in &lines[1..] {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "{line}");
        let d: f64 = cols[4].parse().unwrap();
        assert!(d.is_finite() && d >= 0.0, "{line}");
    }
    let few = tmp.path().join("few");
    std::fs::create_dir(&few).unwrap();
    for (i, image) in images.iter().take(2).enumerate() {
        std::fs::copy(image, few.join(format!("{i}.png"))).unwrap();
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(["lab", "unitspace", "build"])
        .arg(&few)
        .arg("--out")
        .arg(tmp.path().join("few.json"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("at least 3 reference pictures"), "{stderr}");

    // The folder belongs to this experiment.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, EXPERIMENT.replace("[1, 2]", "[3, 4]")).unwrap();
    let refused = lab("run", &other, &out);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("different experiment"), "{stderr}");
}

#[test]
fn a_target_class_the_evaluator_does_not_know_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    std::fs::write(
        &exp,
        EXPERIMENT.replace("colour = \"red\"", "colour = \"mauve\""),
    )
    .unwrap();
    let out = lab("run", &exp, &tmp.path().join("run"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"mauve\" is not a class"), "{stderr}");
    assert!(stderr.contains("red"), "lists the classes: {stderr}");
}

/// `lab optimize`: every strategy valued at its checkpoints, the plot written, and a second
/// run answered from `draws.csv` without drawing a single picture (the same numbers again).
#[test]
fn optimize_compares_strategies_and_never_draws_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let out = tmp.path().join("run");
    let optimize = || {
        Command::new(env!("CARGO_BIN_EXE_kakusan"))
            .args(["lab", "optimize"])
            .arg(&exp)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(model())
            .args(["--budget", "4", "--repeats", "2"])
            .output()
            .unwrap()
    };
    let first = ok(&optimize());
    for strategy in ["orthogonal array", "random search", "thompson sampling"] {
        assert!(first.contains(strategy), "{first}");
    }
    assert!(first.contains("best combination found"), "{first}");
    let csv = std::fs::read_to_string(out.join("optimize.csv")).unwrap();
    // Checkpoints at 1, 2, 3 and 4 pictures; the array once, the others twice.
    assert_eq!(csv.lines().count(), 1 + 4 * (1 + 2 + 2), "{csv}");
    assert!(out.join("optimize.png").is_file());
    let draws = std::fs::read_to_string(out.join("draws.csv")).unwrap();
    let pictures = std::fs::read_dir(out.join("images")).unwrap().count();
    assert_eq!(draws.lines().count() - 1, pictures);

    let again = optimize();
    let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
    let second = ok(&again);
    assert!(
        stderr.contains(&format!("{pictures} pictures already drawn")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(out.join("images")).unwrap().count(),
        pictures
    );
    assert_eq!(
        std::fs::read_to_string(out.join("draws.csv")).unwrap(),
        draws
    );
    assert_eq!(
        std::fs::read_to_string(out.join("optimize.csv")).unwrap(),
        csv
    );
    assert_eq!(first, second);
}
