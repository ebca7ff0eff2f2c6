//! The CLIP tokenizer: text to token ids exactly as transformers' `CLIPTokenizer` gives
//! them (transformers 5, i.e. the `tokenizers`-backed pipeline).
//!
//! The steps, in order:
//! 1. added tokens marked not-normalised (the special tokens, e.g. `<|endoftext|>`, and
//!    SD 2.x's pad token `!`) are cut out of the raw text and become their ids;
//! 2. each remaining piece is normalised (`text_normalizer`:
//!    NFC, whitespace runs to one space, lower case) and added tokens marked normalised are
//!    cut out of it;
//! 3. the rest is split into words by CLIP's pattern (`pre_tokenizer`);
//! 4. each word's UTF-8 bytes are mapped to byte-level characters
//!    (`byte_level`) and encoded by BPE (`bpe`), the last
//!    symbol of each word carrying `</w>`.
//!
//! [`Tokenizer::encode_padded`] then frames the ids as the text encoder wants them:
//! `<|startoftext|>`, at most `max_len - 2` ids, `<|endoftext|>`, then the pad token up to
//! `max_len` (transformers' `padding="max_length", truncation=True`).

use std::collections::HashMap;
use std::path::Path;

use super::added_tokens::{split_on_added, AddedToken, Piece};
use super::bpe::Bpe;
use super::byte_level::ByteLevelTable;
use super::error::TokenizerError;
use super::pre_tokenizer::PreTokenizer;
use super::text_normalizer::normalize;
use super::tokenizer_files::{read_folder, TokenSpec};

/// A CLIP byte-level BPE tokenizer loaded from a tokenizer folder.
#[derive(Debug)]
pub struct Tokenizer {
    bpe: Bpe,
    byte_level: ByteLevelTable,
    pre_tokenizer: PreTokenizer,
    /// Added tokens matched in the raw text.
    raw_added: Vec<AddedToken>,
    /// Added tokens matched in the normalised text.
    normalized_added: Vec<AddedToken>,
    id_to_token: HashMap<u32, String>,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    vocab_size: usize,
}

/// Where a special token's id comes from: an explicit added token, else the vocabulary.
fn resolve_id(
    spec: &TokenSpec,
    role: &'static str,
    added: &[AddedToken],
    bpe: &Bpe,
    dir: &Path,
) -> Result<u32, TokenizerError> {
    added
        .iter()
        .find(|t| t.content == spec.content)
        .map(|t| t.id)
        .or_else(|| bpe.token_id(&spec.content))
        .ok_or_else(|| TokenizerError::MissingSpecialToken {
            role,
            content: spec.content.clone(),
            dir: dir.to_owned(),
        })
}

/// The added token a special-token role stands for, with the config's flags or, when the
/// config names it by a plain string, those transformers gives a special token (matched in
/// the raw text, no stripping).
fn special_added_token(spec: &TokenSpec, id: u32) -> AddedToken {
    let flags = spec.flags;
    AddedToken {
        content: spec.content.clone(),
        id,
        single_word: flags.is_some_and(|f| f.single_word),
        lstrip: flags.is_some_and(|f| f.lstrip),
        rstrip: flags.is_some_and(|f| f.rstrip),
        normalized: flags.is_some_and(|f| f.normalized),
    }
}

impl Tokenizer {
    /// Loads the tokenizer saved in `dir` (a diffusers `tokenizer/` folder), in either the
    /// hub layout (`vocab.json` + `merges.txt`) or the transformers 5 layout
    /// (`tokenizer.json`); see `tokenizer_files`.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let files = read_folder(dir)?;
        let (bpe, unusable) = Bpe::new(files.vocab, &files.merges, Some(&files.unk.content));
        if let Some(first) = unusable.first() {
            tracing::warn!(
                file = %files.source.display(),
                count = unusable.len(),
                first_index = first.index,
                first = %first.reason,
                "BPE merges that cannot apply were skipped"
            );
        }
        let mut added = files.added;
        let bos_id = resolve_id(&files.bos, "BOS", &added, &bpe, dir)?;
        let eos_id = resolve_id(&files.eos, "EOS", &added, &bpe, dir)?;
        let pad_id = resolve_id(&files.pad, "pad", &added, &bpe, dir)?;
        let unk_id = resolve_id(&files.unk, "unknown", &added, &bpe, dir).ok();
        let roles = [
            (&files.bos, Some(bos_id)),
            (&files.eos, Some(eos_id)),
            (&files.unk, unk_id),
            (&files.pad, Some(pad_id)),
        ];
        for (spec, id) in roles {
            if let Some(id) = id {
                if !added.iter().any(|t| t.content == spec.content) {
                    added.push(special_added_token(spec, id));
                }
            }
        }
        let (normalized_added, raw_added): (Vec<_>, Vec<_>) =
            added.iter().cloned().partition(|t| t.normalized);

        let mut id_to_token: HashMap<u32, String> =
            bpe.vocab().iter().map(|(t, &id)| (id, t.clone())).collect();
        for token in &added {
            id_to_token.insert(token.id, token.content.clone());
        }
        let vocab_size = id_to_token.keys().max().map_or(0, |&max| max as usize + 1);
        let pre_tokenizer =
            PreTokenizer::new(files.byte_level_regex).map_err(|e| TokenizerError::Format {
                path: files.source.clone(),
                message: format!("internal word pattern failed to compile: {e}"),
            })?;
        tracing::debug!(
            dir = %dir.display(),
            vocab_size,
            merges = files.merges.len(),
            bos_id,
            eos_id,
            pad_id,
            "loaded CLIP tokenizer"
        );
        Ok(Self {
            bpe,
            byte_level: ByteLevelTable::new(),
            pre_tokenizer,
            raw_added,
            normalized_added,
            id_to_token,
            bos_id,
            eos_id,
            pad_id,
            vocab_size,
        })
    }

    /// The token ids of `text`, without BOS/EOS, untruncated.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let raw: Vec<&AddedToken> = self.raw_added.iter().collect();
        let normalized: Vec<&AddedToken> = self.normalized_added.iter().collect();
        let mut ids = Vec::new();
        for piece in split_on_added(text, &raw) {
            let range = match piece {
                Piece::Token(id) => {
                    ids.push(id);
                    continue;
                }
                Piece::Text(range) => range,
            };
            let normal = normalize(&text[range]);
            for inner in split_on_added(&normal, &normalized) {
                match inner {
                    Piece::Token(id) => ids.push(id),
                    Piece::Text(range) => {
                        self.pre_tokenizer.for_each_word(&normal[range], |word| {
                            ids.extend(self.bpe.encode_word(&self.byte_level.encode(word)));
                        });
                    }
                }
            }
        }
        ids
    }

    /// `max_len` ids for the text encoder: BOS, the ids of `text` truncated to
    /// `max_len - 2`, EOS, then the pad id. (With `max_len` < 2 the frame itself is cut.)
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = self.encode(text);
        ids.truncate(max_len.saturating_sub(2));
        let mut framed = Vec::with_capacity(max_len.max(2));
        framed.push(self.bos_id);
        framed.extend(ids);
        framed.push(self.eos_id);
        framed.resize(max_len.max(framed.len()), self.pad_id);
        framed.truncate(max_len);
        framed
    }

    /// The token string of an id as the vocabulary spells it (byte-level characters, word
    /// ends marked `</w>`), e.g. 320 → `"a</w>"`.
    pub fn decode_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(&id).map(String::as_str)
    }

    /// Readable text of a sequence of ids: tokens joined, byte-level characters turned
    /// back into UTF-8 (invalid sequences replaced), word ends as spaces, trimmed.
    /// Unknown ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for token in ids.iter().filter_map(|&id| self.decode_token(id)) {
            for c in token.chars() {
                match self.byte_level.byte_of(c) {
                    Some(b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes)
            .replace(super::bpe::END_OF_WORD, " ")
            .trim()
            .to_owned()
    }

    /// The id of a token string, if the vocabulary or the added tokens hold it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.raw_added
            .iter()
            .chain(&self.normalized_added)
            .find(|t| t.content == token)
            .map(|t| t.id)
            .or_else(|| self.bpe.token_id(token))
    }

    /// The padding id (49407 `<|endoftext|>` for SD 1.x, 0 `!` for SD 2.x).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `<|startoftext|>` (49406 in CLIP's vocabulary).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of `<|endoftext|>` (49407 in CLIP's vocabulary).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// One more than the largest id (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A toy CLIP-like vocabulary: the byte-level characters of "a", "b", "c", " ", "!"
    /// with and without `</w>`, a few merges, and the two specials.
    fn toy_vocab() -> (serde_json::Value, Vec<&'static str>) {
        let tokens = [
            "!",
            "a",
            "b",
            "c",
            "!</w>",
            "a</w>",
            "b</w>",
            "c</w>",
            "ab",
            "ab</w>",
            "abc</w>",
            "<|startoftext|>",
            "<|endoftext|>",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        let merges = vec!["a b", "ab c</w>", "a b</w>"];
        (serde_json::Value::Object(vocab), merges)
    }

    fn hub_folder(pad: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (vocab, merges) = toy_vocab();
        std::fs::write(dir.path().join("vocab.json"), vocab.to_string()).unwrap();
        let text = format!("#version: 0.2\n{}\n", merges.join("\n"));
        std::fs::write(dir.path().join("merges.txt"), text).unwrap();
        let map = json!({"pad_token": pad});
        std::fs::write(dir.path().join("special_tokens_map.json"), map.to_string()).unwrap();
        dir
    }

    fn json_folder(pad: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (vocab, merges) = toy_vocab();
        let merges: Vec<serde_json::Value> = merges
            .iter()
            .map(|m| {
                let (l, r) = m.split_once(' ').unwrap();
                json!([l, r])
            })
            .collect();
        let root = json!({
            "added_tokens": [
                {"id": 11, "content": "<|startoftext|>", "special": true, "normalized": true},
                {"id": 12, "content": "<|endoftext|>", "special": true, "normalized": true}
            ],
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split"}, {"type": "ByteLevel", "use_regex": false}]},
            "model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": vocab,
                      "merges": merges, "unk_token": "<|endoftext|>"}
        });
        std::fs::write(dir.path().join("tokenizer.json"), root.to_string()).unwrap();
        let config = json!({"pad_token": pad, "model_max_length": 77});
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn both_layouts_give_the_same_ids() {
        for dir in [hub_folder("<|endoftext|>"), json_folder("<|endoftext|>")] {
            let tok = Tokenizer::from_folder(dir.path()).unwrap();
            assert_eq!((tok.bos_id(), tok.eos_id(), tok.pad_id()), (11, 12, 12));
            assert_eq!(tok.vocab_size(), 13);
            // "ABC" -> abc</w>; "ab" -> ab</w>; "c" -> c</w>; "ba" -> b a</w>.
            assert_eq!(tok.encode("  ABC\tab c ba "), [10, 9, 7, 2, 5]);
            assert_eq!(tok.encode("ab<|endoftext|>c"), [9, 12, 7]);
            assert_eq!(tok.decode_token(10), Some("abc</w>"));
            assert_eq!(tok.decode(&tok.encode("abc  ab")), "abc ab");
            assert_eq!(tok.token_id("<|startoftext|>"), Some(11));
        }
    }

    #[test]
    fn pad_token_bang_is_cut_out_of_text() {
        let tok = Tokenizer::from_folder(hub_folder("!").path()).unwrap();
        assert_eq!(tok.pad_id(), 0);
        // As transformers does: the pad token is a special token, so "!" in the prompt is
        // id 0 ("!"), not "!</w>".
        assert_eq!(tok.encode("ab!"), [9, 0]);
        let plain = Tokenizer::from_folder(hub_folder("<|endoftext|>").path()).unwrap();
        assert_eq!(plain.encode("ab!"), [9, 4]);
    }

    #[test]
    fn padded_frame_truncates_and_pads() {
        let tok = Tokenizer::from_folder(hub_folder("!").path()).unwrap();
        assert_eq!(tok.encode_padded("abc ab", 6), [11, 10, 9, 12, 0, 0]);
        assert_eq!(tok.encode_padded("abc ab c", 4), [11, 10, 9, 12]);
        assert_eq!(tok.encode_padded("", 3), [11, 12, 0]);
        assert_eq!(tok.encode_padded("abc", 1), [11]);
        assert_eq!(tok.encode_padded("abc", 0), Vec::<u32>::new());
    }

    #[test]
    fn clear_errors() {
        let empty = tempfile::tempdir().unwrap();
        let err = Tokenizer::from_folder(empty.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::MissingFiles { .. }), "{err}");
        assert!(err.to_string().contains("vocab.json"));

        let dir = hub_folder("<pad>");
        let err = Tokenizer::from_folder(dir.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::MissingSpecialToken { role: "pad", .. }),
            "{err}"
        );

        let dir = hub_folder("!");
        std::fs::write(dir.path().join("vocab.json"), "{not json").unwrap();
        let err = Tokenizer::from_folder(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Json { .. }), "{err}");
    }
}
