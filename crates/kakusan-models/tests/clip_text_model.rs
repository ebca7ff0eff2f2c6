//! The CLIP text encoder against transformers' `CLIPTextModel` on the tiny random-weight
//! fixtures (tools/parity/make_fixtures.py): `sd1-tiny` (quick_gelu, keys under
//! `text_model.`) and `sd2-tiny` (gelu, keys saved without the `text_model.` prefix, as
//! transformers 5 does). Compared: the last layer (CLIP skip 1, `last_hidden_state`) and
//! the penultimate (CLIP skip 2) for the prompt, the negative prompt and the empty prompt,
//! plus the batch of two the UNet was fed.
//!
//! Tolerance: max |ours - ref| <= 1e-5 * max(1, max |ref|), fidelity.md's bound for text
//! embeddings: fp32 with the same weights differs from torch only by summation order
//! (~1e-7 relative), while a wrong layer, activation or mask moves results by 1e-3 or more.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{component_vb, fixtures, reference, relative_error};
use kakusan_models::clip::{ClipTextConfig, ClipTextModel, Tokenizer};

/// Loads `<model>/text_encoder` in f32; `add_prefix` maps our `text_model.` names onto files
/// saved without the prefix (the weights module does this for real; here it is inline).
fn load_model(model: &str, add_prefix: bool) -> ClipTextModel {
    let (vb, dir) = component_vb(model, "text_encoder", "model.safetensors");
    let cfg = ClipTextConfig::from_file(dir.join("config.json")).unwrap();
    let vb = if add_prefix {
        vb.rename_f(|name| name.strip_prefix("text_model.").unwrap_or(name).to_owned())
    } else {
        vb
    };
    ClipTextModel::new(vb, &cfg).unwrap()
}

const TOLERANCE: f32 = 1e-5;

fn assert_close(ours: &Tensor, reference: &Tensor, what: &str) {
    let err = relative_error(ours, reference);
    eprintln!("{what}: relative error {err:e}");
    assert!(
        err <= TOLERANCE,
        "{what}: relative error {err:e} > {TOLERANCE:e}"
    );
}

fn check_model(name: &str, add_prefix: bool) {
    let model = load_model(name, add_prefix);
    let refs = reference(name);
    let tokenizer = Tokenizer::from_folder(fixtures().join(name).join("tokenizer")).unwrap();
    let texts = [
        ("prompt", "a red circle on a blue background, best quality"),
        ("negative", "blurry, low quality"),
        ("empty", ""),
    ];
    for (key, text) in texts {
        let ids = &refs[&format!("tokens.{key}")];
        // Our tokenizer gives the ids the reference run used.
        let recorded: Vec<u32> = ids
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(
            tokenizer.encode_padded(text, 77),
            recorded,
            "{name} {key} tokens"
        );

        let last = model.forward(ids, 1).unwrap();
        assert_close(
            &last,
            &refs[&format!("text.{key}.last_hidden_state")],
            &format!("{name} {key} last"),
        );
        if let Some(penultimate) = refs.get(&format!("text.{key}.penultimate")) {
            let skip2 = model.forward(ids, 2).unwrap();
            assert_close(&skip2, penultimate, &format!("{name} {key} clip skip 2"));
            // A wrong layer would not pass: the two references differ far beyond tolerance.
            assert!(
                relative_error(penultimate, &refs[&format!("text.{key}.last_hidden_state")]) > 1e-3
            );
        }
    }

    // The batch the UNet was conditioned on: [negative; prompt], computed as one batch.
    let ids = Tensor::cat(&[&refs["tokens.negative"], &refs["tokens.prompt"]], 0).unwrap();
    let ids = ids.to_dtype(DType::U32).unwrap();
    let batch = model.forward(&ids, 1).unwrap();
    assert_close(&batch, &refs["unet.context"], &format!("{name} batch of 2"));

    // forward_hidden_states + final_layer_norm gives what forward gives.
    let states = model.forward_hidden_states(&ids).unwrap();
    assert_eq!(states.len(), model.num_layers() + 1);
    let penultimate = model.final_layer_norm(&states[states.len() - 2]).unwrap();
    let skip2 = model.forward(&ids, 2).unwrap();
    assert_eq!(relative_error(&penultimate, &skip2), 0.0);
}

#[test]
fn sd1_tiny_text_encoder_matches_transformers() {
    check_model("sd1-tiny", false);
}

#[test]
fn sd2_tiny_text_encoder_without_prefix_matches_transformers() {
    check_model("sd2-tiny", true);
}

#[test]
fn clip_skip_out_of_range_is_an_error() {
    let model = load_model("sd1-tiny", false);
    let ids = Tensor::zeros((1, 77), DType::U32, &Device::Cpu).unwrap();
    let err = model.forward(&ids, 4).unwrap_err();
    assert!(
        err.to_string().contains("between 1 (last layer) and 3"),
        "{err}"
    );
    assert!(model.forward(&ids, 0).is_err());
    assert!(model.forward(&ids, 3).is_ok());
}

#[test]
fn half_precision_follows_the_var_builder_dtype() {
    let dir = fixtures().join("sd1-tiny/text_encoder");
    let cfg = ClipTextConfig::from_file(dir.join("config.json")).unwrap();
    let files = [dir.join("model.safetensors")];
    // SAFETY: the fixture file is not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F16, &Device::Cpu) }.unwrap();
    let model = ClipTextModel::new(vb, &cfg).unwrap();
    let refs = reference("sd1-tiny");
    let out = model.forward(&refs["tokens.prompt"], 1).unwrap();
    assert_eq!(out.dtype(), DType::F16);
    // f16 keeps ~3 decimal digits per operation; three layers stay within 2e-2 of the
    // fp32 reference, which a wrong computation would not.
    let out = out.to_dtype(DType::F32).unwrap();
    let err = relative_error(&out, &refs["text.prompt.last_hidden_state"]);
    eprintln!("sd1-tiny f16 prompt last: relative error {err:e}");
    assert!(err < 2e-2, "f16 relative error {err:e}");
}
