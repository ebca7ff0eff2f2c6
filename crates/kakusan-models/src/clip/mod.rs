//! CLIP for Stable Diffusion: the byte-level BPE tokenizer and the text transformer.
//!
//! * [`Tokenizer`] turns a prompt into token ids exactly as transformers' `CLIPTokenizer`
//!   does (transformers 5, whose CLIP tokenizer is the `tokenizers`-backed pipeline), from a
//!   tokenizer folder in the hub layout (`vocab.json` + `merges.txt`) or the transformers 5
//!   layout (`tokenizer.json`).
//! * [`ClipTextModel`] turns ids into the embeddings the UNet attends to, with A1111's
//!   "CLIP skip" (1 = last layer).
//!
//! The tokenizer is our own code rather than the `tokenizers` crate. That crate *is* the
//! reference implementation and would match by construction, but it brings a C regex
//! library (oniguruma), rayon and a long dependency tree for what CLIP needs: NFC,
//! whitespace collapse, lower-casing, one regular expression, a byte table and a merge
//! loop. Each of these steps is written here to its behaviour (per-character lower-casing,
//! added tokens cut before normalisation, leftmost-longest matching) and checked token for
//! token against transformers on the fixtures.
//!
//! What "the same ids" means: transformers 5 / diffusers. OpenAI's and open_clip's
//! tokenizers (and so A1111) first run ftfy and `html.unescape`, and do not treat
//! `<|endoftext|>` typed in a prompt, or SD 2.x's pad token `!`, as special tokens; they
//! differ from transformers on such prompts (HTML entities, ligatures, mojibake, `!` with
//! SD 2.x). The fixtures record both (`ids_ftfy`); only the transformers ids are matched.

mod activation;
mod added_tokens;
mod attention;
mod bpe;
mod byte_level;
mod config;
mod embeddings;
mod encoder_layer;
mod error;
mod pre_tokenizer;
mod text_model;
mod text_normalizer;
mod tokenizer;
mod tokenizer_files;

pub use config::{ClipActivation, ClipTextConfig};
pub use error::{TextModelError, TokenizerError};
pub use text_model::ClipTextModel;
pub use tokenizer::Tokenizer;
