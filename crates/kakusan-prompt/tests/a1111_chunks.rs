//! Chunking and emphasis against tests/fixtures/prompt_chunks.json (tools/parity/
//! make_chunk_cases.py: a Python re-statement of A1111's tokenize_line on A1111's own attention
//! parser, with transformers' CLIPTokenizer on tests/fixtures/tokenizer).
//!
//! The tokenizer here is the fixture's record of each piece's ids, so this tests the chunking
//! alone; that kakusan's CLIP tokenizer gives those ids is tested in kakusan-models (and the
//! whole chain by the `kakusan prompt explain` CLI test).

use kakusan_prompt::{apply_emphasis, chunk_text, Dialect, EmphasisMode, SpecialIds};
use serde_json::Value;
use std::path::Path;

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/prompt_chunks.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read prompt_chunks.json"))
        .expect("parse prompt_chunks.json")
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn chunks_match_a1111() {
    let f = fixture();
    let ids = SpecialIds {
        bos: f["bos"].as_u64().unwrap() as u32,
        eos: f["eos"].as_u64().unwrap() as u32,
        pad: f["eos"].as_u64().unwrap() as u32,
        comma: f["comma"].as_u64().map(|c| c as u32),
    };
    let table = f["ids_of_piece"].as_object().unwrap();
    let mut failures = Vec::new();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let mut multi_chunk = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let mode = EmphasisMode::from_name(case["emphasis"].as_str().unwrap()).unwrap();
        let mut unknown = Vec::new();
        let mut tokenize = |text: &str| match table.get(text) {
            Some(v) => u32s(v),
            None => {
                unknown.push(text.to_string());
                Vec::new()
            }
        };
        let ours = chunk_text(prompt, Dialect::A1111, mode, &ids, &mut tokenize);
        if !unknown.is_empty() {
            failures.push(format!(
                "{prompt:?}: pieces A1111 did not make: {unknown:?}"
            ));
            continue;
        }
        let want = case["chunks"].as_array().unwrap();
        if want.len() > 1 {
            multi_chunk += 1;
        }
        let mut same = ours.chunks.len() == want.len()
            && ours.token_count as u64 == case["token_count"].as_u64().unwrap();
        for (c, w) in ours.chunks.iter().zip(want) {
            let mut t = u32s(&w["tokens"]);
            let mut wt = f64s(&w["weights"]);
            t.resize(77, ids.eos);
            wt.resize(77, 1.0);
            // Weights: the same f64 products as A1111's; 1e-12 relative only absorbs
            // serde_json's default float parsing (may be one ulp off).
            same &= c.tokens == t
                && c.weights.len() == 77
                && c.weights
                    .iter()
                    .zip(&wt)
                    .all(|(a, b)| a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()));
        }
        if !same {
            failures.push(format!(
                "{prompt:?} ({mode:?}): ours {} chunks / {} tokens, A1111 {} / {}",
                ours.chunks.len(),
                ours.token_count,
                want.len(),
                case["token_count"]
            ));
        }
    }
    assert!(multi_chunk >= 20, "{multi_chunk}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn emphasis_matches_torch() {
    let f = fixture();
    let e = &f["emphasis"];
    let dim = e["dim"].as_u64().unwrap() as usize;
    let z: Vec<f32> = f64s(&e["z"]).into_iter().map(|v| v as f32).collect();
    let weights = f64s(&e["weights"]);
    for (mode, key) in [
        (EmphasisMode::Original, "original"),
        (EmphasisMode::NoNorm, "no_norm"),
    ] {
        let mut ours = z.clone();
        apply_emphasis(&mut ours, dim, &weights, mode);
        let want = f64s(&e[key]);
        // torch computes in float32 (its mean by pairwise summation, ours in f64): agreement
        // to a few float32 ulps, 1e-5 relative to the largest value.
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&want) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5 * scale,
                "{mode:?}: {a} vs {b}"
            );
        }
    }
    // The weights really change the values (the test would pass for a no-op otherwise).
    let mut ours = z.clone();
    apply_emphasis(&mut ours, dim, &weights, EmphasisMode::Original);
    assert!(ours.iter().zip(&z).any(|(a, b)| (a - b).abs() > 1e-3));
}
