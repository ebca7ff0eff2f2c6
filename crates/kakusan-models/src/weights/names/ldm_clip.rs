//! The transformers CLIP text encoder inside an LDM/A1111 SD 1.x checkpoint:
//! `cond_stage_model.transformer.text_model.*`, or `cond_stage_model.transformer.*` in files
//! saved with old transformers (no `text_model.` level). Both are tried.

use super::{is_inside_text_model, text_relative, KeyNaming, Source};

/// The SD 1.x text encoder of an LDM single-file checkpoint.
#[derive(Debug, Clone)]
pub struct LdmClipNaming {
    prefix: String,
}

impl LdmClipNaming {
    /// The usual prefix of the text encoder in SD 1.x LDM checkpoints.
    pub const PREFIX: &'static str = "cond_stage_model.transformer.";

    /// A naming for keys `prefix` + transformers name.
    pub fn new(prefix: impl Into<String>) -> Self {
        LdmClipNaming {
            prefix: prefix.into(),
        }
    }
}

impl KeyNaming for LdmClipNaming {
    fn candidates(&self, name: &str) -> Vec<Source> {
        let relative = text_relative(name);
        if is_inside_text_model(relative) {
            vec![
                Source::key(format!("{}text_model.{relative}", self.prefix)),
                Source::key(format!("{}{relative}", self.prefix)),
            ]
        } else {
            vec![Source::key(format!("{}{name}", self.prefix))]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_prefix_styles_are_candidates() {
        let naming = LdmClipNaming::new(LdmClipNaming::PREFIX);
        let want = vec![
            Source::key("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight"),
            Source::key("cond_stage_model.transformer.encoder.layers.3.mlp.fc1.weight"),
        ];
        assert_eq!(
            naming.candidates("text_model.encoder.layers.3.mlp.fc1.weight"),
            want
        );
        assert_eq!(naming.candidates("encoder.layers.3.mlp.fc1.weight"), want);
        assert_eq!(
            naming.candidates("text_projection.weight"),
            vec![Source::key(
                "cond_stage_model.transformer.text_projection.weight"
            )]
        );
    }
}
