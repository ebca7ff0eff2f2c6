//! Textual inversion against diffusers (tools/parity/make_ti_fixture.py): an A1111-layout
//! embedding (`emb_params`, 2 vectors) in an embeddings folder, used by name; diffusers'
//! `load_textual_inversion` + `maybe_convert_prompt` on the same prompts; the text encoder's
//! last hidden state compared.
//!
//! Tolerance: 1e-5 of max(1, max|ref|), as the weighted-conditioning parity: the unweighted
//! encoder agrees with transformers to ~1e-6; a vector in the wrong slot, a missing vector or
//! the name read as text moves values by far more (checked: the prompt without the folder).

use candle_core::Device;
use kakusan_pipeline::conditioning::PromptOptions;
use kakusan_pipeline::{LoadOptions, StableDiffusion};

mod common;

use common::max_abs;

const TOL: f32 = 1e-5;

#[test]
fn embeddings_match_diffusers_load_textual_inversion() {
    let dir = common::fixtures();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ti-sd1-tiny-ref.json")).unwrap()).unwrap();
    let refs =
        candle_core::safetensors::load(dir.join("ti-sd1-tiny-ref.safetensors"), &Device::Cpu)
            .unwrap();
    let opts = LoadOptions {
        embeddings_dir: Some(dir.join("ti-sd1-tiny")),
        ..LoadOptions::default()
    };
    let model = StableDiffusion::load(&dir.join("sd1-tiny"), &opts).unwrap();
    let plain = StableDiffusion::load(&dir.join("sd1-tiny"), &LoadOptions::default()).unwrap();
    let prompts = meta["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 3);
    for (i, p) in prompts.iter().enumerate() {
        let prompt = p.as_str().unwrap();
        let want = &refs[&i.to_string()];
        let range = max_abs(want).max(1.0);
        let cond = model
            .encode_conditioning(prompt, "", 10, 1, &PromptOptions::default())
            .unwrap();
        let got = &cond.parts[0].1[0].1;
        assert_eq!(got.dims(), want.dims());
        let err = max_abs(&(got - want).unwrap());
        assert!(err <= TOL * range, "{prompt:?}: off by {err:.3e}");
        let text = plain
            .encode_conditioning(prompt, "", 10, 1, &PromptOptions::default())
            .unwrap();
        assert!(max_abs(&(&text.parts[0].1[0].1 - want).unwrap()) > 100.0 * TOL * range);
    }
}
