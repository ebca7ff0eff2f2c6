//! The CLIP tokenizer against transformers' `CLIPTokenizer` (transformers 5.24,
//! `tests/fixtures/tokenizer_cases.json`, made by tools/parity/make_tokenizer_cases.py):
//! every case, both pad tokens, both folder layouts. Token ids must be equal exactly.

use std::path::{Path, PathBuf};

use kakusan_models::clip::Tokenizer;
use serde_json::Value;

const MAX_LEN: usize = 77;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Case {
    text: String,
    pad: String,
    ids: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let path = fixtures().join("tokenizer_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures from tools/parity)", path.display()));
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_owned(),
            pad: c["pad"].as_str().unwrap().to_owned(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
        })
        .collect()
}

/// Compares every case with the given pad; returns how many were checked.
fn check(tok: &Tokenizer, pad: &str, label: &str) -> usize {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.pad == pad) {
        assert_eq!(case.ids.len(), MAX_LEN);
        let got = tok.encode_padded(&case.text, MAX_LEN);
        if got != case.ids {
            failures.push(format!(
                "{:?}\n   want {:?}\n   got  {:?}",
                case.text, case.ids, got
            ));
        }
        // The unpadded ids are the framed ones without BOS/EOS/pad when not truncated.
        let plain = tok.encode(&case.text);
        if plain.len() + 2 <= MAX_LEN {
            assert_eq!(&got[1..=plain.len()], plain.as_slice(), "{:?}", case.text);
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{label}: {} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

/// A copy of the hub-layout fixture folder whose config names `pad` as the pad token (what
/// the fixture script did with `CLIPTokenizer.from_pretrained(..., pad_token=pad)`).
fn hub_folder_with_pad(pad: &str) -> tempfile::TempDir {
    let src = fixtures().join("tokenizer");
    let dir = tempfile::tempdir().unwrap();
    for name in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let map_path = src.join("special_tokens_map.json");
    let mut map: Value = serde_json::from_str(&std::fs::read_to_string(map_path).unwrap()).unwrap();
    map["pad_token"] = Value::String(pad.to_owned());
    std::fs::write(dir.path().join("special_tokens_map.json"), map.to_string()).unwrap();
    dir
}

#[test]
fn hub_layout_sd1_pad_matches_transformers() {
    let tok = Tokenizer::from_folder(fixtures().join("tokenizer")).unwrap();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (49406, 49407, 49407)
    );
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!(tok.encode("a red circle"), [320, 736, 7117]);
    assert_eq!(tok.decode_token(320), Some("a</w>"));
    assert!(
        check(
            &tok,
            "<|endoftext|>",
            "vocab.json layout, pad <|endoftext|>"
        ) >= 100
    );
}

#[test]
fn hub_layout_sd2_pad_matches_transformers() {
    let dir = hub_folder_with_pad("!");
    let tok = Tokenizer::from_folder(dir.path()).unwrap();
    assert_eq!(tok.pad_id(), 0);
    assert!(check(&tok, "!", "vocab.json layout, pad !") >= 100);
}

#[test]
fn sd2_tiny_tokenizer_json_layout_matches_transformers() {
    let dir = fixtures().join("sd2-tiny/tokenizer");
    assert!(
        dir.join("tokenizer.json").is_file() && !dir.join("vocab.json").exists(),
        "sd2-tiny/tokenizer should hold the tokenizer.json layout"
    );
    let tok = Tokenizer::from_folder(&dir).unwrap();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (49406, 49407, 0)
    );
    assert_eq!(tok.vocab_size(), 49408);
    assert!(check(&tok, "!", "tokenizer.json layout, pad !") >= 100);
}

#[test]
fn sd1_tiny_tokenizer_matches_transformers() {
    let tok = Tokenizer::from_folder(fixtures().join("sd1-tiny/tokenizer")).unwrap();
    assert_eq!(tok.pad_id(), 49407);
    assert!(check(&tok, "<|endoftext|>", "sd1-tiny tokenizer") >= 100);
}

#[test]
fn decode_round_trips_plain_text() {
    let tok = Tokenizer::from_folder(fixtures().join("tokenizer")).unwrap();
    for text in [
        "a photograph of an astronaut riding a horse",
        "café 東京 🔥",
        "8k, (cat:1.2)",
    ] {
        let ids = tok.encode(text);
        let back = tok.decode(&ids);
        assert_eq!(tok.encode(&back), ids, "{text:?} -> {back:?}");
    }
}
