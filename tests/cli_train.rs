//! `kakusan train vae`, `kakusan train unet` and `kakusan generate` on what they export:
//! the whole kakusan-mini recipe, at two steps per stage and batch 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kakusan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn write_configs(dir: &Path) -> (PathBuf, PathBuf) {
    let mini = root().join("training/kakusan-mini");
    let trainer =
        "[trainer]\ntotal_steps = 2\nwarmup_steps = 1\ncheckpoint_every = 1\nlog_every = 1\n";
    let vae = dir.join("vae.toml");
    std::fs::write(
        &vae,
        format!(
            "[model]\nvae_config = {:?}\n[task]\nbatch_size = 2\n{trainer}",
            mini.join("vae_config.json")
        ),
    )
    .unwrap();
    let unet = dir.join("unet.toml");
    std::fs::write(
        &unet,
        format!(
            "[model]\ntext_encoder_config = {:?}\nunet_config = {:?}\nscheduler_config = {:?}\nvae = {:?}\ntokenizer = {:?}\n[task]\nbatch_size = 2\n{trainer}",
            mini.join("text_encoder_config.json"),
            mini.join("unet_config.json"),
            mini.join("scheduler_config.json"),
            dir.join("vae-run/vae"),
            root().join("tests/fixtures/tokenizer"),
        ),
    )
    .unwrap();
    (vae, unet)
}

#[test]
fn train_both_stages_then_generate_with_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let (vae_toml, unet_toml) = write_configs(tmp.path());
    let vae_out = tmp.path().join("vae-run");

    let out = ok(&kakusan(&[
        "train",
        "vae",
        "--config",
        &s(&vae_toml),
        "--out",
        &s(&vae_out),
    ]));
    assert!(out.contains("scaling_factor"), "{out}");
    let vae_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vae_out.join("vae/config.json")).unwrap()).unwrap();
    let scale = vae_cfg["scaling_factor"].as_f64().unwrap();
    assert!(scale.is_finite() && scale > 0.0, "{scale}");
    let csv = std::fs::read_to_string(vae_out.join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(vae_out.join("loss.png").is_file());

    // A second run into the same folder must be asked to resume.
    let again = kakusan(&[
        "train",
        "vae",
        "--config",
        &s(&vae_toml),
        "--out",
        &s(&vae_out),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    // Decoder-only fine-tuning keeps the encoder and the latent scale exactly.
    let dec_toml = tmp.path().join("vae-decoder.toml");
    let text = std::fs::read_to_string(&vae_toml)
        .unwrap()
        .replace("[task]\n", "[task]\ndecoder_only = true\n");
    std::fs::write(&dec_toml, text).unwrap();
    let dec_out = tmp.path().join("dec-run");
    let no_init = kakusan(&[
        "train",
        "vae",
        "--config",
        &s(&dec_toml),
        "--out",
        &s(&dec_out),
    ]);
    assert!(!no_init.status.success());
    assert!(String::from_utf8_lossy(&no_init.stderr).contains("--init"));
    ok(&kakusan(&[
        "train",
        "vae",
        "--config",
        &s(&dec_toml),
        "--init",
        &s(&vae_out.join("vae")),
        "--out",
        &s(&dec_out),
    ]));
    let dec_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dec_out.join("vae/config.json")).unwrap()).unwrap();
    assert_eq!(dec_cfg["scaling_factor"].as_f64(), Some(scale));
    let load = |dir: &Path| {
        candle_core::safetensors::load(
            dir.join("vae/diffusion_pytorch_model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let (base, tuned) = (load(&vae_out), load(&dec_out));
    let same = |name: &str| {
        let d = (&base[name] - &tuned[name]).unwrap().abs().unwrap();
        d.max_all().unwrap().to_scalar::<f32>().unwrap() == 0.0
    };
    assert!(same("encoder.conv_in.weight") && same("quant_conv.weight"));
    assert!(!same("decoder.conv_out.weight"));

    let unet_out = tmp.path().join("unet-run");
    ok(&kakusan(&[
        "train",
        "unet",
        "--config",
        &s(&unet_toml),
        "--out",
        &s(&unet_out),
    ]));
    let model = unet_out.join("model");
    for part in [
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
    ] {
        assert!(model.join(part).is_file(), "{part} missing");
    }
    let pics = tmp.path().join("pics");
    let out = ok(&kakusan(&[
        "generate",
        "a red 5 on a blue background",
        "--model",
        &s(&model),
        "--steps",
        "2",
        "--seed",
        "3",
        "--output-dir",
        &s(&pics),
    ]));
    let png = PathBuf::from(out.lines().next().unwrap().trim());
    let img = image::open(&png).unwrap();
    // The model's native size comes from its UNet sample size times the VAE's factor.
    assert_eq!((img.width(), img.height()), (64, 64));

    // The adherence report runs on the export (an untrained model: only the format is
    // checked here; the thresholds are asserted on the shipped model).
    let grid = tmp.path().join("grid.png");
    let out = ok(&kakusan(&[
        "eval",
        "--model",
        &s(&model),
        "--count",
        "4",
        "--steps",
        "2",
        "--grid",
        &s(&grid),
    ]));
    for word in [
        "glyph",
        "colour",
        "background",
        "position",
        "size",
        "one object",
    ] {
        assert!(out.contains(word), "{word} missing in {out}");
    }
    assert!(image::open(&grid).is_ok());
    // The same prompt set drawn as one glyph (the novel moon of a fine-tuning demo); an
    // unknown glyph is a clear error.
    ok(&kakusan(&[
        "eval",
        "--model",
        &s(&model),
        "--count",
        "2",
        "--steps",
        "2",
        "--glyph",
        "moon",
        "--grid",
        &s(&grid),
    ]));
    let bad = kakusan(&["eval", "--model", &s(&model), "--glyph", "hexagon"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("not a glyph") && err.contains("moon"), "{err}");
    // Fine-tuning the export on a folder of pictures with captions (kohya layout).
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("2_hexagon")).unwrap();
    let picture = |rgb: [u8; 3]| image::RgbImage::from_pixel(40, 40, image::Rgb(rgb));
    picture([200, 30, 30]).save(data.join("red.png")).unwrap();
    std::fs::write(data.join("red.txt"), "a red square").unwrap();
    picture([30, 200, 30])
        .save(data.join("2_hexagon/h.png"))
        .unwrap();
    // A fine-tuning config that names no model file takes the --from model's own
    // architecture, schedule, VAE and tokenizer.
    let ft_toml = tmp.path().join("ft.toml");
    let text = std::fs::read_to_string(&unet_toml).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|l| {
            ![
                "scheduler_config",
                "unet_config",
                "text_encoder_config",
                "vae",
                "tokenizer",
            ]
            .iter()
            .any(|field| l.starts_with(&format!("{field} =")))
        })
        .collect();
    std::fs::write(&ft_toml, without.join("\n")).unwrap();
    // The fine-tune of `model` on `data` into `out`, with `extra` options.
    let fine_tune = |extra: &[&str], out: &Path| {
        let mut a = vec![
            "train".to_string(),
            "unet".into(),
            "--config".into(),
            s(&ft_toml),
            "--from".into(),
            s(&model),
            "--data".into(),
            s(&data),
            "--out".into(),
            s(out),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        kakusan(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The base model's recommended settings go with the fine-tune (kakusan-mini's CFG).
    let defaults = |dir: &Path| std::fs::read(dir.join("generation_defaults.json"));
    assert!(
        defaults(&model).is_err(),
        "a from-scratch export has no defaults"
    );
    std::fs::write(
        model.join("generation_defaults.json"),
        "{ \"guidance_scale\": 4.5 }",
    )
    .unwrap();
    let ft_out = tmp.path().join("ft-run");
    let out = fine_tune(&[], &ft_out);
    ok(&out);
    assert_eq!(
        defaults(&ft_out.join("model")).unwrap(),
        defaults(&model).unwrap()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 pictures, 3 per epoch"), "{err}");
    let before = std::fs::read(model.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let after =
        std::fs::read(ft_out.join("model/unet/diffusion_pytorch_model.safetensors")).unwrap();
    assert_ne!(before, after, "fine-tuning changed nothing");
    let schedule = |dir: &Path| std::fs::read(dir.join("scheduler/scheduler_config.json")).unwrap();
    assert_eq!(schedule(&ft_out.join("model")), schedule(&model));
    let unet_config = |dir: &Path| std::fs::read(dir.join("unet/config.json")).unwrap();
    assert_eq!(unet_config(&ft_out.join("model")), unet_config(&model));
    // Prior preservation: half of each batch from the procedural data; a bad share or an
    // empty prior folder is a clear error.
    let prior_out = tmp.path().join("ft-prior");
    let out = fine_tune(&["--prior-fraction", "0.5"], &prior_out);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prior: the procedural data"), "{err}");
    let prior_unet =
        std::fs::read(prior_out.join("model/unet/diffusion_pytorch_model.safetensors")).unwrap();
    assert_ne!(prior_unet, after, "the prior pictures changed nothing");
    let empty_prior = tmp.path().join("empty-prior");
    std::fs::create_dir_all(&empty_prior).unwrap();
    let empty_prior = s(&empty_prior);
    for (extra, message) in [
        (
            vec!["--prior-fraction", "1"],
            "--prior-fraction 1: must be at least 0 and below 1",
        ),
        (
            vec!["--prior-fraction", "0.5", "--prior-data", &empty_prior],
            "--prior-data: ",
        ),
        (
            vec!["--prior-data", &empty_prior],
            "--prior-data needs --prior-fraction",
        ),
    ] {
        let bad = fine_tune(&extra, &tmp.path().join("bad-prior"));
        assert_eq!(bad.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains(message), "{extra:?}: {err}");
    }
    // Without --from there is no model to take it from: a clear error.
    let bad = kakusan(&[
        "train",
        "unet",
        "--config",
        &s(&ft_toml),
        "--out",
        &s(&tmp.path().join("no-schedule")),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unet_config, scheduler_config, vae, tokenizer are needed unless --from"),
        "{err}"
    );
    // An empty data folder is a clear error, not a panic.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let bad = kakusan(&[
        "train",
        "unet",
        "--config",
        &s(&unet_toml),
        "--data",
        &s(&empty),
        "--out",
        &s(&tmp.path().join("bad-run")),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no pictures"));

    // A compact copy of the UNet run resumes (here: finds the run complete).
    let compact = tmp.path().join("compact");
    ok(&kakusan(&[
        "train",
        "compact",
        &s(&unet_out),
        "--to",
        &s(&compact),
    ]));
    assert!(compact.join("loss.csv").is_file());
    let out = ok(&kakusan(&[
        "train",
        "unet",
        "--config",
        &s(&unet_toml),
        "--out",
        &s(&compact),
        "--resume",
    ]));
    assert!(out.contains("finished: step 2 of 2"), "{out}");
}

#[test]
fn dataset_folder_writes_captioned_novel_glyphs_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("moons");
    let args = [
        "dataset",
        "folder",
        "--out",
        &s(&dir),
        "--count",
        "3",
        "--novel-glyphs",
        "1",
        "--two-object-fraction",
        "0",
    ];
    let out = ok(&kakusan(&args));
    assert!(out.contains("3 pictures"), "{out}");
    for i in 0..3 {
        let png = dir.join(format!("{i:06}.png"));
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
        let caption = std::fs::read_to_string(png.with_extension("txt")).unwrap();
        assert!(
            caption.contains("moon") || caption.contains("crescent"),
            "{caption}"
        );
    }
    let before = std::fs::read(dir.join("000000.txt")).unwrap();
    let again = kakusan(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(dir.join("000000.txt")).unwrap(), before);
}
