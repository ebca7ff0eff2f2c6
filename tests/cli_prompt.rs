//! `kakusan prompt explain`: the JSON it prints, with the bundled CLIP tokenizer, against the
//! A1111 chunking fixture (tests/fixtures/prompt_chunks.json, made with transformers'
//! CLIPTokenizer on the same vocabulary), and clean refusals of bad options.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn explain(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kakusan"))
        .arg("prompt")
        .arg("explain")
        .args(args)
        .env_remove("KAKUSAN_LOG")
        .output()
        .expect("run kakusan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tokenizer() -> String {
    fixtures().join("tokenizer").display().to_string()
}

#[test]
fn explains_schedule_pieces_and_loras() {
    let (ok, stdout, stderr) = explain(&[
        "a [cat:dog:0.5], (red:1.3) <lora:style:0.8> AND blue :0.5",
        "--steps",
        "10",
        "--model",
        &tokenizer(),
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["extra_networks"]["loras"][0]["name"], "style");
    assert_eq!(v["extra_networks"]["loras"][0]["unet_weight"], 0.8);
    assert_eq!(v["and"].as_array().unwrap().len(), 2);
    assert_eq!(v["and"][1]["weight"], 0.5);
    assert_eq!(
        v["and"][0]["schedule"],
        serde_json::json!([[5, "a cat, (red:1.3)"], [10, "a dog, (red:1.3)"]])
    );
    let e = &v["and"][0]["entries"][1];
    assert_eq!(
        e["pieces"],
        serde_json::json!([["a dog, ", 1.0], ["red", 1.3]])
    );
    let chunk = &e["chunks"][0];
    assert_eq!(chunk["ids"].as_array().unwrap().len(), 77);
    assert_eq!(chunk["tokens"][1], "a</w>");
    assert_eq!(chunk["tokens"][2], "dog</w>");
    assert_eq!(chunk["tokens"][3], ",</w>");
    assert_eq!(chunk["weights"][4], 1.3);
    assert_eq!(chunk["weights"][5], 1.0);
}

/// The whole chain (parser, kakusan's CLIP tokenizer, chunking) against the fixture made
/// with A1111's parser and transformers' tokenizer, on every "Original" case.
#[test]
fn chunks_match_the_a1111_fixture_with_the_real_tokenizer() {
    let text = std::fs::read_to_string(fixtures().join("prompt_chunks.json")).unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).unwrap();
    let eos = f["eos"].as_u64().unwrap();
    let mut checked = 0;
    for case in f["cases"].as_array().unwrap() {
        if case["emphasis"] != "Original" || checked >= 12 {
            continue;
        }
        let prompt = case["prompt"].as_str().unwrap();
        let (ok, stdout, stderr) = explain(&[prompt, "--model", &tokenizer()]);
        assert!(ok, "{prompt:?}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let chunks = v["and"][0]["entries"][0]["chunks"]
            .as_array()
            .unwrap()
            .clone();
        let want = case["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), want.len(), "{prompt:?}");
        for (c, w) in chunks.iter().zip(want) {
            let mut ids: Vec<u64> = w["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            ids.resize(77, eos);
            let ours: Vec<u64> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(ours, ids, "{prompt:?}");
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn bad_options_are_clean_errors() {
    for args in [
        vec!["a", "--steps", "0"],
        vec!["a", "--dialect", "klingon"],
        vec!["a", "--emphasis", "loud"],
        vec!["a", "--model", "/nonexistent/model.safetensors"],
    ] {
        let (ok, stdout, stderr) = explain(&args);
        assert!(!ok, "{args:?}");
        assert!(stdout.is_empty());
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn explains_embedding_slots() {
    let emb = fixtures().join("ti-sd1-tiny").display().to_string();
    let (ok, stdout, stderr) = explain(&[
        "a (kksemb:1.2) cat",
        "--model",
        &tokenizer(),
        "--embeddings",
        &emb,
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let chunk = &v["and"][0]["entries"][0]["chunks"][0];
    assert_eq!(
        chunk["tokens"].as_array().unwrap()[..5],
        [
            "<|startoftext|>",
            "a</w>",
            "<embedding:kksemb>",
            "<embedding:kksemb>",
            "cat</w>"
        ]
    );
    assert_eq!(chunk["weights"][3], 1.2);
    // Without the folder the name is text.
    let (ok, stdout, _) = explain(&["a kksemb cat", "--model", &tokenizer()]);
    assert!(ok);
    assert!(!stdout.contains("<embedding:"));
}

#[test]
fn second_order_samplers_schedule_over_model_calls() {
    let schedule_of = |extra: &[&str]| {
        let mut args = vec!["a [red:blue:0.5] cat, [dog:fox:3]", "--model"];
        let tok = tokenizer();
        args.push(&tok);
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = explain(&args);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        (v["and"][0]["schedule"].clone(), v["steps"].clone())
    };
    // Heun at 10 steps is A1111's schedule over 20 model calls: the step-numbered edit
    // switches earlier in the picture, the fraction at the same point.
    let (heun, heun_steps) = schedule_of(&["--steps", "10", "--sampler", "Heun"]);
    let (twenty, _) = schedule_of(&["--steps", "20"]);
    let (ten, _) = schedule_of(&["--steps", "10"]);
    assert_eq!(heun, twenty);
    assert_ne!(heun, ten);
    assert_eq!(heun_steps, 20);
    // A first-order sampler leaves the schedule as --steps gives it, in either naming style.
    assert_eq!(
        schedule_of(&["--steps", "10", "--sampler", "Euler a"]).0,
        ten
    );
    assert_eq!(
        schedule_of(&["--steps", "10", "--sampler", "dpmpp_2m"]).0,
        ten
    );
    // An unknown sampler is refused, naming the valid ones.
    let (ok, _, stderr) = explain(&["a cat", "--sampler", "Eulr"]);
    assert!(!ok);
    assert!(stderr.contains("Euler a"), "{stderr}");
}
