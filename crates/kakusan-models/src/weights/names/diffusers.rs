//! The namings of diffusers folders, which are the canonical names with two variations seen in
//! the wild: text encoders saved by transformers 5 have no `text_model.` level, and VAEs saved
//! by diffusers before 0.14 name the mid-block attention `query/key/value/proj_attn` (where
//! current diffusers says `to_q/to_k/to_v/to_out.0`; the old ones may also be 1x1-conv shaped).

use super::{is_inside_text_model, text_relative, KeyNaming, Source};

/// Which component of a diffusers folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffusersPart {
    Unet,
    Vae,
    TextEncoder,
}

/// The naming of one component of a diffusers folder.
#[derive(Debug, Clone)]
pub struct DiffusersNaming {
    part: DiffusersPart,
}

impl DiffusersNaming {
    /// The naming of `part`.
    pub fn new(part: DiffusersPart) -> Self {
        DiffusersNaming { part }
    }
}

/// The pre-0.14 diffusers name of a VAE attention tensor, if `name` is one.
fn legacy_vae_attention(name: &str) -> Option<String> {
    let (head, tail) = name.split_once(".attentions.")?;
    let (number, rest) = tail.split_once('.')?;
    let old = if let Some(r) = rest.strip_prefix("to_q.") {
        format!("query.{r}")
    } else if let Some(r) = rest.strip_prefix("to_k.") {
        format!("key.{r}")
    } else if let Some(r) = rest.strip_prefix("to_v.") {
        format!("value.{r}")
    } else if let Some(r) = rest.strip_prefix("to_out.0.") {
        format!("proj_attn.{r}")
    } else {
        return None;
    };
    Some(format!("{head}.attentions.{number}.{old}"))
}

impl KeyNaming for DiffusersNaming {
    fn candidates(&self, name: &str) -> Vec<Source> {
        match self.part {
            DiffusersPart::Unet => vec![Source::key(name)],
            DiffusersPart::Vae => {
                let mut out = vec![Source::key(name)];
                out.extend(legacy_vae_attention(name).map(Source::key));
                out
            }
            DiffusersPart::TextEncoder => {
                let relative = text_relative(name);
                if is_inside_text_model(relative) {
                    vec![
                        Source::key(format!("text_model.{relative}")),
                        Source::key(relative),
                    ]
                } else {
                    vec![Source::key(name)]
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_encoder_with_and_without_text_model() {
        let naming = DiffusersNaming::new(DiffusersPart::TextEncoder);
        let want = vec![
            Source::key("text_model.final_layer_norm.weight"),
            Source::key("final_layer_norm.weight"),
        ];
        assert_eq!(
            naming.candidates("text_model.final_layer_norm.weight"),
            want
        );
        assert_eq!(naming.candidates("final_layer_norm.weight"), want);
        assert_eq!(
            naming.candidates("text_projection.weight"),
            vec![Source::key("text_projection.weight")]
        );
    }

    #[test]
    fn vae_legacy_attention_names() {
        let naming = DiffusersNaming::new(DiffusersPart::Vae);
        assert_eq!(
            naming.candidates("decoder.mid_block.attentions.0.to_q.weight"),
            vec![
                Source::key("decoder.mid_block.attentions.0.to_q.weight"),
                Source::key("decoder.mid_block.attentions.0.query.weight"),
            ]
        );
        assert_eq!(
            naming.candidates("encoder.mid_block.attentions.0.to_out.0.bias")[1],
            Source::key("encoder.mid_block.attentions.0.proj_attn.bias")
        );
        assert_eq!(
            naming.candidates("encoder.mid_block.attentions.0.group_norm.bias"),
            vec![Source::key(
                "encoder.mid_block.attentions.0.group_norm.bias"
            )]
        );
        assert_eq!(
            DiffusersNaming::new(DiffusersPart::Unet).candidates("conv_in.weight"),
            vec![Source::key("conv_in.weight")]
        );
    }
}
