//! Textual-inversion embeddings on the tiny SD1 fixture: an embedding whose vectors are the
//! token embeddings of known words must give exactly the conditioning of those words (same
//! arithmetic, so the tolerance is 0 up to the f32 reductions, which run on identical inputs in
//! identical order: we allow 1e-6 absolute for safety against any re-association); unknown
//! names stay text; refused files are reported.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use kakusan_models::clip::Tokenizer;
use kakusan_models::weights::{EmbeddingLibrary, SafetensorsStore, TextualInversion};
use kakusan_pipeline::conditioning::PromptOptions;
use kakusan_pipeline::{LoadOptions, StableDiffusion};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd1-tiny")
}

/// The token embedding rows of `words` (one token each).
fn rows_of(words: &[&str]) -> Tensor {
    let tok = Tokenizer::from_folder(fixture().join("tokenizer")).unwrap();
    let store = SafetensorsStore::open(fixture().join("text_encoder/model.safetensors")).unwrap();
    let rows: Vec<Tensor> = words
        .iter()
        .map(|w| {
            let ids = tok.encode(w);
            assert_eq!(ids.len(), 1, "{w} is one token");
            let id = ids[0] as usize;
            store
                .load_rows(
                    "text_model.embeddings.token_embedding.weight",
                    id..id + 1,
                    DType::F32,
                    &Device::Cpu,
                )
                .unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

fn cond(model: &StableDiffusion, prompt: &str) -> (Vec<f32>, Vec<String>) {
    let c = model
        .encode_conditioning(prompt, "", 10, 1, &PromptOptions::default())
        .unwrap();
    let v = c.parts[0].1[0].1.flatten_all().unwrap().to_vec1().unwrap();
    (v, c.warnings)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn embedding_vectors_replace_their_names_tokens() {
    let mut model = StableDiffusion::load(&fixture(), &LoadOptions::default()).unwrap();
    let mut lib = EmbeddingLibrary::default();
    lib.insert(TextualInversion {
        name: "kksone".into(),
        vectors: rows_of(&["cat"]),
        path: PathBuf::new(),
        hash: String::new(),
    });
    lib.insert(TextualInversion {
        name: "kkstwo".into(),
        vectors: rows_of(&["cat", "dog"]),
        path: PathBuf::new(),
        hash: String::new(),
    });
    lib.refused
        .insert("kksbad".into(), "it is a pickle file".into());
    let (plain_before, _) = cond(&model, "a red kksone, blue");
    model.set_embeddings(lib);
    let cases = [
        ("a red kksone, blue", "a red cat, blue"),
        ("a red kkstwo, blue", "a red cat dog, blue"),
        ("(kksone:1.3) and [kkstwo]", "(cat:1.3) and [cat dog]"),
        ("[kksone:kkstwo:0.5]", "[cat:cat dog:0.5]"),
    ];
    for (with_emb, words) in cases {
        let (a, _) = cond(&model, with_emb);
        let (b, _) = cond(&model, words);
        let d = max_diff(&a, &b);
        assert!(d <= 1e-6, "{with_emb:?} vs {words:?}: {d}");
    }
    // Used: the conditioning differs from reading the name as text.
    let (a, _) = cond(&model, "a red kksone, blue");
    assert!(max_diff(&a, &plain_before) > 1e-3);
    // Unknown and refused names are text; the refused one says why.
    let (a, w) = cond(&model, "a kksbad kksnone");
    assert!(
        w.iter()
            .any(|w| w.contains("kksbad") && w.contains("pickle")),
        "{w:?}"
    );
    model.set_embeddings(EmbeddingLibrary::default());
    let (b, _) = cond(&model, "a kksbad kksnone");
    assert_eq!(max_diff(&a, &b), 0.0);
}

#[test]
fn embeddings_folder_is_loaded_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let map: std::collections::HashMap<String, Tensor> =
        [("emb_params".to_string(), rows_of(&["dog"]))]
            .into_iter()
            .collect();
    candle_core::safetensors::save(&map, dir.path().join("kksdog.safetensors")).unwrap();
    std::fs::write(dir.path().join("kkspickle.pt"), b"PK\x03\x04").unwrap();
    let opts = LoadOptions {
        embeddings_dir: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let model = StableDiffusion::load(&fixture(), &opts).unwrap();
    assert_eq!(model.embeddings().embeddings.len(), 1);
    assert!(model.embeddings().refused.contains_key("kkspickle"));
    let (a, _) = cond(&model, "a kksdog");
    let (b, _) = cond(&model, "a dog");
    assert!(max_diff(&a, &b) <= 1e-6);
    let (_, w) = cond(&model, "a kkspickle");
    assert!(w.iter().any(|w| w.contains("pickle")), "{w:?}");
}
