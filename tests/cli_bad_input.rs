//! Bad input at the binary level (issue 3, item 9): the `kakusan` executable is run on damaged
//! copies of the tiny fixture models, on wrong sizes, wrong images and unwritable folders.
//!
//! Every failure must be a clean one: a non-zero exit that is neither a signal nor Rust's
//! panic code 101, no panic text, stderr holding exactly one line `error: ...` that names the
//! problem and says what to do (checked by key words), nothing on stdout, and no file created
//! or changed anywhere in the test's folder (in particular no `*.png` and no half-written
//! temporary file; a PNG already in the output folder keeps its bytes). The success cases
//! check that an empty prompt is a valid prompt and that a model's `generation_defaults.json`
//! gives the CFG a run leaves out (a broken one is bad input like the rest).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A generation of the tiny models takes about a second in a debug build; this only catches
/// a hang.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Refusing an absurd size must not start allocating: the answer comes within seconds.
const ABSURD_LIMIT: Duration = Duration::from_secs(15);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What one run of the binary gave.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `kakusan` with `args` (no log filter from the environment), failing the test if it
/// does not end within `limit`.
fn kakusan(args: &[OsString], limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(args)
        .env_remove("KAKUSAN_LOG")
        // Errors that carry a backtrace in their text must still be one line.
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kakusan");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        out_pipe.read_to_end(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        err_pipe.read_to_end(&mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("kakusan {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Run {
        status,
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        elapsed,
    }
}

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// `generate` with an empty prompt, a fixed seed, 2 steps and 64x64 unless `extra` gives a
/// size itself.
fn generate_args(model: &Path, out: &Path, extra: &[OsString]) -> Vec<OsString> {
    let mut args = vec![
        os("generate"),
        os(""),
        os("--model"),
        os(model),
        os("--output-dir"),
        os(out),
        os("--steps"),
        os("2"),
        os("--seed"),
        os("1"),
    ];
    if !extra.iter().any(|a| a == "--width") {
        args.extend([os("--width"), os("64")]);
    }
    if !extra.iter().any(|a| a == "--height") {
        args.extend([os("--height"), os("64")]);
    }
    args.extend(extra.iter().cloned());
    args
}

fn extra(args: &[&str]) -> Vec<OsString> {
    args.iter().map(os).collect()
}

/// Every file under `dir` (recursively, symlinks not followed) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, into);
            } else {
                let bytes = fs::read(&path).unwrap_or_default();
                into.insert(path, bytes);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, &mut files);
    files
}

/// Copies a folder, following symlinks (the fixture tokenizer links into `../../tokenizer`).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if fs::metadata(entry.path()).unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary folder with an output folder that already holds a PNG under a final name in
/// both mode subfolders.
struct Scene {
    tmp: tempfile::TempDir,
}

const EXISTING_PNG: &[u8] = b"\x89PNG\r\n\x1a\n an output of an earlier run, to be left alone";

impl Scene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        for mode in ["txt2img", "img2img"] {
            let dir = tmp.path().join("out").join(mode);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("00000-1.png"), EXISTING_PNG).unwrap();
        }
        Scene { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// A copy of the tiny SD1 diffusers folder.
    fn folder_model(&self) -> PathBuf {
        let dir = self.path("model");
        copy_dir(&fixtures().join("sd1-tiny"), &dir);
        dir
    }

    /// A copy of the tiny SD1 single-file checkpoint.
    fn single_file_model(&self) -> PathBuf {
        let file = self.path("model.safetensors");
        fs::copy(fixtures().join("sd1-tiny.safetensors"), &file).unwrap();
        file
    }

    /// Runs `args` and asserts a clean failure that left every file as it was; returns the
    /// error line.
    fn fails(&self, args: &[OsString], limit: Duration, keywords: &[&str]) -> String {
        let before = snapshot(self.tmp.path());
        let run = kakusan(args, limit);
        let line = assert_clean_failure(&run, keywords);
        eprintln!("{line}");
        let after = snapshot(self.tmp.path());
        let new: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
        assert!(new.is_empty(), "the failed run left files {new:?} ({line})");
        for (path, bytes) in &before {
            assert_eq!(
                after.get(path),
                Some(bytes),
                "the failed run changed or removed {} ({line})",
                path.display()
            );
        }
        for mode in ["txt2img", "img2img"] {
            let existing = self.out().join(mode).join("00000-1.png");
            if existing.exists() {
                assert_eq!(fs::read(&existing).unwrap(), EXISTING_PNG);
            }
        }
        line
    }
}

/// A clean failure: see the module doc. Returns the error line.
fn assert_clean_failure(run: &Run, keywords: &[&str]) -> String {
    let code = run.status.code();
    assert!(
        code.is_some(),
        "kakusan was killed by a signal: {:?}\nstderr: {}",
        run.status,
        run.stderr
    );
    assert_ne!(code, Some(0), "kakusan succeeded; stdout: {}", run.stdout);
    assert_ne!(code, Some(101), "kakusan panicked: {}", run.stderr);
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "panic text on stderr: {}",
        run.stderr
    );
    let text = run.stderr.trim();
    assert_eq!(
        text.lines().count(),
        1,
        "the error is not one line:\n{}",
        run.stderr
    );
    assert!(text.starts_with("error: "), "{text}");
    assert!(
        run.stdout.trim().is_empty(),
        "a failed run printed output paths: {}",
        run.stdout
    );
    let lower = text.to_lowercase();
    for k in keywords {
        assert!(
            lower.contains(&k.to_lowercase()),
            "the error does not mention {k:?}: {text}"
        );
    }
    text.to_string()
}

// 1. The model path does not exist.
#[test]
fn missing_model_path() {
    let scene = Scene::new();
    let model = scene.path("no-such-model.safetensors");
    let line = scene.fails(
        &generate_args(&model, &scene.out(), &[]),
        RUN_LIMIT,
        &[
            "no-such-model.safetensors",
            "does not exist",
            "check the path",
        ],
    );
    assert!(line.contains("diffusers folder"), "{line}");
}

// 2. A single file cut short, as by an interrupted download.
#[test]
fn truncated_single_file() {
    let scene = Scene::new();
    let model = scene.single_file_model();
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    scene.fails(
        &generate_args(&model, &scene.out(), &[]),
        RUN_LIMIT,
        &["model.safetensors", "truncated", "download"],
    );
    // Cut inside the 8-byte length field and inside the JSON header too.
    for keep in [5, 100] {
        fs::write(&model, &bytes[..keep]).unwrap();
        scene.fails(
            &generate_args(&model, &scene.out(), &[]),
            RUN_LIMIT,
            &["model.safetensors", "download"],
        );
    }
    // An empty file.
    fs::write(&model, b"").unwrap();
    scene.fails(
        &generate_args(&model, &scene.out(), &[]),
        RUN_LIMIT,
        &["model.safetensors", "download"],
    );
}

// 3. Garbage over the header: in the length field, then inside the JSON.
#[test]
fn corrupt_header() {
    let scene = Scene::new();
    let model = scene.single_file_model();
    let good = fs::read(&model).unwrap();
    let mut bytes = good.clone();
    bytes[..16].copy_from_slice(b"GARBAGE!GARBAGE!");
    fs::write(&model, &bytes).unwrap();
    scene.fails(
        &generate_args(&model, &scene.out(), &[]),
        RUN_LIMIT,
        &["model.safetensors", "corrupt", "header", "download"],
    );
    let mut bytes = good.clone();
    bytes[8..24].copy_from_slice(b"}}}}not json{{{{");
    fs::write(&model, &bytes).unwrap();
    scene.fails(
        &generate_args(&model, &scene.out(), &[]),
        RUN_LIMIT,
        &["model.safetensors", "corrupt", "header", "download"],
    );
    // The same damage in one component of a diffusers folder.
    let folder = scene.folder_model();
    let vae = folder.join("vae/diffusion_pytorch_model.safetensors");
    let mut bytes = fs::read(&vae).unwrap();
    bytes[8..24].copy_from_slice(b"}}}}not json{{{{");
    fs::write(&vae, &bytes).unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &["diffusion_pytorch_model.safetensors", "corrupt", "download"],
    );
}

// 4. A diffusers folder without one of its components.
#[test]
fn folder_missing_a_component() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let vae = folder.join("vae");
    let vae_saved = scene.path("vae-saved");
    fs::rename(&vae, &vae_saved).unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &["vae", "missing", "download"],
    );
    fs::rename(&vae_saved, &vae).unwrap();
    // The UNet folder is there but its weights file is not.
    let unet_weights = folder.join("unet/diffusion_pytorch_model.safetensors");
    fs::remove_file(&unet_weights).unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &[
            "unet",
            "missing",
            "diffusion_pytorch_model.safetensors",
            "download",
        ],
    );
    fs::remove_dir_all(folder.join("unet")).unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &["unet", "download"],
    );
}

// 5. A tensor of the wrong shape: the UNet's conv_in with 8 instead of 16 output channels.
#[test]
fn tensor_of_the_wrong_shape() {
    use safetensors::tensor::TensorView;
    let scene = Scene::new();
    let folder = scene.folder_model();
    let path = folder.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut original_shape = Vec::new();
    for (name, view) in file.tensors() {
        if name == "conv_in.weight" {
            original_shape = view.shape().to_vec();
            let mut shape = original_shape.clone();
            shape[0] /= 2;
            let n: usize = shape.iter().product();
            let data = vec![0u8; n * view.dtype().bitsize() / 8];
            tensors.push((name, view.dtype(), shape, data));
        } else {
            tensors.push((
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            ));
        }
    }
    assert_eq!(original_shape, [16, 4, 3, 3], "fixture changed");
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let line = scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &[
            "conv_in.weight",
            "[8, 4, 3, 3]",
            "[16, 4, 3, 3]",
            "does not match",
        ],
    );
    assert!(line.contains("unet"), "{line}");
}

// 6. An init image that is not an image, and one that does not exist.
#[test]
fn init_image_not_an_image_or_missing() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let text = scene.path("notes.png");
    fs::write(&text, "a shopping list, not a picture\n").unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[os("--init-image"), os(&text)]),
        RUN_LIMIT,
        &["--init-image", "notes.png", "not an image", "PNG, JPEG"],
    );
    let missing = scene.path("missing.png");
    scene.fails(
        &generate_args(&folder, &scene.out(), &[os("--init-image"), os(&missing)]),
        RUN_LIMIT,
        &[
            "--init-image",
            "missing.png",
            "does not exist",
            "check the path",
        ],
    );
    // A real PNG cut short.
    let init = fs::read(fixtures().join("img2img-init-64.png")).unwrap();
    let cut = scene.path("cut.png");
    fs::write(&cut, &init[..init.len() / 2]).unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[os("--init-image"), os(&cut)]),
        RUN_LIMIT,
        &["--init-image", "cut.png", "truncated or damaged"],
    );
}

// 7. A size that is not a multiple of 8.
#[test]
fn size_not_a_multiple_of_eight() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    scene.fails(
        &generate_args(&folder, &scene.out(), &extra(&["--width", "100"])),
        RUN_LIMIT,
        &["width 100", "multiple of 8", "try 96"],
    );
    scene.fails(
        &generate_args(&folder, &scene.out(), &extra(&["--height", "0"])),
        RUN_LIMIT,
        &["height 0", "multiple of 8"],
    );
}

// 8. Absurd sizes: refused at once with the memory estimate, before anything is allocated.
#[test]
fn absurd_size_is_refused_with_the_estimate() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    for size in [
        &["--width", "16384", "--height", "16384", "--batch", "256"][..],
        &["--batch", "1024", "--width", "4096", "--height", "4096"][..],
    ] {
        let run_start = Instant::now();
        let line = scene.fails(
            &generate_args(&folder, &scene.out(), &extra(size)),
            ABSURD_LIMIT,
            &["needs about", "GiB", "available", "smaller size or batch"],
        );
        assert!(run_start.elapsed() < ABSURD_LIMIT, "{line}");
        // The estimate is a number of GiB far above any machine (a tiny model's weights are
        // nothing; its activations grow with the pixels and the batch).
        let gib: f64 = line
            .split("needs about ")
            .nth(1)
            .and_then(|rest| rest.split(" GiB").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no estimate in {line}"));
        assert!(gib > 500.0, "{line}");
    }
    // Beyond the largest side: refused before the model is even loaded.
    let run = {
        let before = snapshot(scene.tmp.path());
        let run = kakusan(
            &generate_args(
                &folder,
                &scene.out(),
                &extra(&["--width", "65536", "--height", "65536"]),
            ),
            ABSURD_LIMIT,
        );
        assert_eq!(snapshot(scene.tmp.path()), before);
        run
    };
    assert_clean_failure(&run, &["65536", "largest side", "smaller size"]);
    assert!(run.elapsed < ABSURD_LIMIT);
}

// 9. An output folder that is a file, and one that cannot be written.
#[test]
fn unwritable_output_folder() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let file = scene.path("a-file");
    fs::write(&file, "I am a file").unwrap();
    scene.fails(
        &generate_args(&folder, &file, &[]),
        RUN_LIMIT,
        &["a-file", "not a folder", "choose a folder"],
    );
    // A folder below a file cannot be created.
    scene.fails(
        &generate_args(&folder, &file.join("sub"), &[]),
        RUN_LIMIT,
        &[
            "a-file",
            "cannot create the output folder",
            "choose a folder",
        ],
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = scene.path("read-only");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let probe = ro.join("probe");
        let permissions_bite = fs::write(&probe, b"x").is_err();
        let _ = fs::remove_file(&probe);
        if permissions_bite {
            // Existing read-only folder, and a folder to be created inside it.
            scene.fails(
                &generate_args(&folder, &ro, &[]),
                RUN_LIMIT,
                &["read-only", "cannot", "permissions"],
            );
            scene.fails(
                &generate_args(&folder, &ro.join("new"), &[]),
                RUN_LIMIT,
                &["read-only", "cannot create", "choose a folder"],
            );
        } else {
            eprintln!(
                "note: files can be created in a mode-555 folder here (running as root?); \
                 the read-only folder case is checked with /proc/self instead where there is one"
            );
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        // /proc/self is a folder nobody, root included, can create files in.
        let proc_self = Path::new("/proc/self");
        if proc_self.is_dir() {
            scene.fails(
                &generate_args(&folder, proc_self, &[]),
                RUN_LIMIT,
                &[
                    "/proc/self",
                    "cannot write in the output folder",
                    "choose another folder",
                ],
            );
        }
    }
}

// 10. An empty prompt is a valid prompt: one PNG, with its parameters, and nothing else.
#[test]
fn empty_prompt_succeeds() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let before = snapshot(scene.tmp.path());
    let run = kakusan(&generate_args(&folder, &scene.out(), &[]), RUN_LIMIT);
    assert_eq!(
        run.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        run.stderr,
        run.stdout
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let after = snapshot(scene.tmp.path());
    let new: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let png = new[0];
    assert_eq!(png.parent(), Some(scene.out().join("txt2img").as_path()));
    // The next number after the existing 00000-1.png, with the seed.
    assert_eq!(png.file_name().unwrap(), "00001-1.png");
    assert!(after[png].starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(run.stdout.trim(), png.display().to_string());
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{}", path.display());
    }
    // `kakusan info` reads the parameters back; with an empty prompt (and no negative one)
    // the text starts with the settings line, as A1111's stripped infotext does.
    let info = kakusan(&[os("info"), os(png)], RUN_LIMIT);
    assert_eq!(info.status.code(), Some(0), "{}", info.stderr);
    assert!(info.stdout.starts_with("Steps: 2,"), "{:?}", info.stdout);
    assert!(
        info.stdout.contains("Steps: 2") && info.stdout.contains("Seed: 1"),
        "{}",
        info.stdout
    );
}

// A model folder's generation_defaults.json: its guidance scale and sampler when --cfg and
// --sampler are not given (written into the PNG's parameters), the options win over it; a
// broken file is a clean error that names it.
#[test]
fn generation_defaults_of_the_model() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    // The PNG's "CFG scale", "Sampler" and "Schedule type" settings.
    let settings_of = |args: &[OsString]| {
        let run = kakusan(args, RUN_LIMIT);
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        let info = kakusan(&[os("info"), os(run.stdout.trim())], RUN_LIMIT);
        assert_eq!(info.status.code(), Some(0), "{}", info.stderr);
        let setting = |key: &str| {
            info.stdout
                .split(", ")
                .find_map(|s| s.trim().strip_prefix(key))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no {key} in {}", info.stdout))
        };
        (
            setting("CFG scale: "),
            setting("Sampler: "),
            setting("Schedule type: "),
        )
    };
    let cfg_of = |args: &[OsString]| settings_of(args).0;
    let sampler_of = |args: &[OsString]| {
        let (_, sampler, schedule) = settings_of(args);
        format!("{sampler} / {schedule}")
    };
    assert_eq!(cfg_of(&generate_args(&folder, &scene.out(), &[])), "7");
    let defaults = folder.join("generation_defaults.json");
    fs::write(&defaults, r#"{ "guidance_scale": 3.5 }"#).unwrap();
    assert_eq!(cfg_of(&generate_args(&folder, &scene.out(), &[])), "3.5");
    assert_eq!(
        cfg_of(&generate_args(
            &folder,
            &scene.out(),
            &extra(&["--cfg", "6"])
        )),
        "6"
    );
    assert_eq!(
        sampler_of(&generate_args(&folder, &scene.out(), &[])),
        "Euler a / Normal"
    );
    fs::write(&defaults, r#"{ "sampler": "DPM++ 2M Karras" }"#).unwrap();
    assert_eq!(
        sampler_of(&generate_args(&folder, &scene.out(), &[])),
        "DPM++ 2M / Karras"
    );
    // A schedule given replaces the one the model's sampler name implies.
    assert_eq!(
        sampler_of(&generate_args(
            &folder,
            &scene.out(),
            &extra(&["--schedule", "exponential"])
        )),
        "DPM++ 2M / Exponential"
    );
    assert_eq!(
        sampler_of(&generate_args(
            &folder,
            &scene.out(),
            &extra(&["--sampler", "Euler"])
        )),
        "Euler / Normal"
    );
    for broken in [
        r#"{ "guidance_scale": -2 }"#,
        r#"{ "cfg": 3.5 }"#,
        r#"{ "sampler": "Eulr" }"#,
        "not json",
    ] {
        fs::write(&defaults, broken).unwrap();
        scene.fails(
            &generate_args(&folder, &scene.out(), &[]),
            RUN_LIMIT,
            &["generation_defaults.json"],
        );
    }
}

// 11. --save-latents into a folder that does not exist: refused before any work, so neither
// an image nor a latents file (whole or partial) appears.
#[test]
fn save_latents_into_a_missing_folder() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let latents = scene.path("no-such-folder/latents.safetensors");
    scene.fails(
        &generate_args(&folder, &scene.out(), &[os("--save-latents"), os(&latents)]),
        RUN_LIMIT,
        &[
            "--save-latents",
            "no-such-folder",
            "does not exist",
            "create it",
        ],
    );
    assert!(!scene.path("no-such-folder").exists());
    // A folder given as the latents file.
    scene.fails(
        &generate_args(
            &folder,
            &scene.out(),
            &[os("--save-latents"), os(scene.out())],
        ),
        RUN_LIMIT,
        &["--save-latents", "is a folder", "file name"],
    );
}

// 12. A pickle checkpoint is refused with the way to convert it.
#[test]
fn pickle_checkpoint_is_refused() {
    let scene = Scene::new();
    let ckpt = scene.path("model.ckpt");
    // The start of a protocol-2 pickle; never unpickled.
    fs::write(&ckpt, b"\x80\x02}q\x00(X\x0a\x00\x00\x00state_dictq\x01.").unwrap();
    scene.fails(
        &generate_args(&ckpt, &scene.out(), &[]),
        RUN_LIMIT,
        &["model.ckpt", "pickle", "convert", ".safetensors"],
    );
    // A pickle given a .safetensors name is recognised by its content.
    let disguised = scene.path("disguised.safetensors");
    fs::write(&disguised, b"PK\x03\x04archive/data.pkl").unwrap();
    scene.fails(
        &generate_args(&disguised, &scene.out(), &[]),
        RUN_LIMIT,
        &[
            "disguised.safetensors",
            "pickle",
            "'disguised-converted.safetensors'",
        ],
    );
    // A diffusers folder whose UNet is only a pickle `.bin`.
    let folder = scene.folder_model();
    fs::remove_file(folder.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    fs::write(
        folder.join("unet/diffusion_pytorch_model.bin"),
        b"\x80\x02}q\x00.",
    )
    .unwrap();
    scene.fails(
        &generate_args(&folder, &scene.out(), &[]),
        RUN_LIMIT,
        &["diffusion_pytorch_model.bin", "pickle", ".safetensors"],
    );
}

// `kakusan info` on files without parameters.
#[test]
fn info_on_bad_files() {
    let scene = Scene::new();
    let text = scene.path("notes.txt");
    fs::write(&text, "not a picture").unwrap();
    scene.fails(
        &[os("info"), os(&text)],
        RUN_LIMIT,
        &["notes.txt", "not a PNG", "kakusan info"],
    );
    // A PNG without a `parameters` chunk (the img2img fixture).
    let plain = scene.path("plain.png");
    fs::copy(fixtures().join("img2img-init-64.png"), &plain).unwrap();
    scene.fails(
        &[os("info"), os(&plain)],
        RUN_LIMIT,
        &["plain.png", "no generation parameters", "stripped"],
    );
    scene.fails(
        &[os("info"), os(scene.path("missing.png"))],
        RUN_LIMIT,
        &["missing.png", "does not exist", "check the path"],
    );
    scene.fails(
        &[os("info"), os(scene.out())],
        RUN_LIMIT,
        &["is a folder", "PNG"],
    );
    let bytes = fs::read(&plain).unwrap();
    let cut = scene.path("cut.png");
    fs::write(&cut, &bytes[..60]).unwrap();
    scene.fails(&[os("info"), os(&cut)], RUN_LIMIT, &["cut.png", "PNG"]);
}

// `kakusan bench` checks its size like `generate`: no huge allocation, no tensor error.
#[test]
fn bench_refuses_bad_sizes() {
    let scene = Scene::new();
    let folder = scene.folder_model();
    let bench = |size: &[&str]| {
        let mut args = vec![
            os("bench"),
            os("--model"),
            os(&folder),
            os("--steps"),
            os("1"),
        ];
        args.extend(extra(size));
        args
    };
    // In tiles the tiny model's VAE would fit 16384x16384 on a large machine; whole, its
    // activations (8 x its top channels x 268 M pixels) fit none.
    scene.fails(
        &bench(&[
            "--width",
            "16384",
            "--height",
            "16384",
            "--vae-tiling",
            "never",
        ]),
        ABSURD_LIMIT,
        &["needs about", "GiB", "smaller size"],
    );
    scene.fails(
        &bench(&["--vae-tiling", "sometimes"]),
        RUN_LIMIT,
        &["sometimes", "auto, always or never"],
    );
    scene.fails(
        &bench(&["--width", "100", "--height", "64"]),
        RUN_LIMIT,
        &["width 100", "multiple of 8"],
    );
    scene.fails(
        &bench(&["--width", "0", "--height", "64"]),
        RUN_LIMIT,
        &["width 0", "multiple of 8"],
    );
}
