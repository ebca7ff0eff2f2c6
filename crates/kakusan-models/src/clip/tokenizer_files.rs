//! Reading a CLIP tokenizer folder in either layout met in the wild:
//!
//! * hub layout: `vocab.json` (token → id) + `merges.txt` (a `#version` line, then one
//!   `left right` merge per line, in rank order), with optional `special_tokens_map.json`
//!   and `tokenizer_config.json`;
//! * transformers 5 layout: `tokenizer.json` (the `tokenizers` format: `model.vocab`,
//!   `model.merges` as `"left right"` strings or `[left, right]` pairs, `added_tokens`)
//!   with `tokenizer_config.json`.
//!
//! When both are present `tokenizer.json` wins, as in transformers 5. The special tokens
//! (BOS, EOS, UNK, PAD) are resolved by name: `special_tokens_map.json` over
//! `tokenizer_config.json` over CLIP's defaults (`<|startoftext|>`, `<|endoftext|>` for
//! the rest), so SD 1.x pads with `<|endoftext|>` (49407) and SD 2.x with `!` (0).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::added_tokens::AddedToken;
use super::bpe::END_OF_WORD;
use super::error::TokenizerError;

const BOS_DEFAULT: &str = "<|startoftext|>";
const EOS_DEFAULT: &str = "<|endoftext|>";

/// Everything a tokenizer folder says, before ids are resolved.
#[derive(Debug)]
pub(crate) struct TokenizerFiles {
    pub(crate) vocab: HashMap<String, u32>,
    pub(crate) merges: Vec<(String, String)>,
    /// Added tokens listed explicitly (tokenizer.json `added_tokens` or the config's
    /// `added_tokens_decoder`).
    pub(crate) added: Vec<AddedToken>,
    pub(crate) bos: TokenSpec,
    pub(crate) eos: TokenSpec,
    pub(crate) unk: TokenSpec,
    pub(crate) pad: TokenSpec,
    /// Whether the byte-level pre-tokeniser's GPT-2 split is on.
    pub(crate) byte_level_regex: bool,
    /// The file the vocabulary came from, for messages.
    pub(crate) source: PathBuf,
}

/// A special token as a configuration names it: its text and, when given as an object,
/// its matching flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSpec {
    pub(crate) content: String,
    pub(crate) flags: Option<TokenFlags>,
}

/// Matching flags of an added token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenFlags {
    pub(crate) single_word: bool,
    pub(crate) lstrip: bool,
    pub(crate) rstrip: bool,
    pub(crate) normalized: bool,
}

impl TokenSpec {
    fn plain(content: &str) -> Self {
        Self {
            content: content.to_owned(),
            flags: None,
        }
    }
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| TokenizerError::Json {
        path: path.to_owned(),
        source,
    })
}

fn read_optional_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn format_error(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn flag(obj: &serde_json::Map<String, Value>, name: &str, default: bool) -> bool {
    obj.get(name).and_then(Value::as_bool).unwrap_or(default)
}

/// Flags of an added-token object; absent `normalized` defaults as in `tokenizers`:
/// special tokens are not normalised, others are.
fn flags_of(obj: &serde_json::Map<String, Value>) -> TokenFlags {
    let special = flag(obj, "special", true);
    TokenFlags {
        single_word: flag(obj, "single_word", false),
        lstrip: flag(obj, "lstrip", false),
        rstrip: flag(obj, "rstrip", false),
        normalized: flag(obj, "normalized", !special),
    }
}

/// A special-token entry of a config: a string, an `AddedToken` object, or null/absent.
fn token_spec(value: Option<&Value>) -> Option<TokenSpec> {
    match value? {
        Value::String(s) => Some(TokenSpec::plain(s)),
        Value::Object(obj) => Some(TokenSpec {
            content: obj.get("content")?.as_str()?.to_owned(),
            flags: Some(flags_of(obj)),
        }),
        _ => None,
    }
}

fn vocab_from(value: &Value, path: &Path) -> Result<HashMap<String, u32>, TokenizerError> {
    let map = value
        .as_object()
        .ok_or_else(|| format_error(path, "the vocabulary is not a JSON object of token: id"))?;
    map.iter()
        .map(|(token, id)| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|id| (token.clone(), id))
                .ok_or_else(|| {
                    format_error(path, format!("vocabulary entry {token:?} has no valid id"))
                })
        })
        .collect()
}

/// Parses `merges.txt`: an optional `#version` header, then `left right` per line.
fn merges_from_text(text: &str, path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut merges = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if index == 0 && line.starts_with("#version") {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(l), Some(r), None) => merges.push((l.to_owned(), r.to_owned())),
            _ => {
                return Err(format_error(
                    path,
                    format!("line {} is not a merge of two symbols: {line:?}", index + 1),
                ))
            }
        }
    }
    Ok(merges)
}

/// Parses `model.merges` of tokenizer.json: `"left right"` strings or `[left, right]`.
fn merges_from_json(value: &Value, path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let list = value
        .as_array()
        .ok_or_else(|| format_error(path, "model.merges is not a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, merge)| {
            let pair = match merge {
                Value::String(s) => {
                    let mut parts = s.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(l), Some(r), None) => Some((l.to_owned(), r.to_owned())),
                        _ => None,
                    }
                }
                Value::Array(items) => match items.as_slice() {
                    [Value::String(l), Value::String(r)] => Some((l.clone(), r.clone())),
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| {
                format_error(path, format!("model.merges[{i}] is not a pair: {merge}"))
            })
        })
        .collect()
}

/// `added_tokens` of tokenizer.json: a list of objects with `id` and `content`.
fn added_from_list(value: Option<&Value>, path: &Path) -> Result<Vec<AddedToken>, TokenizerError> {
    let Some(list) = value.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item.as_object();
            let content = obj.and_then(|o| o.get("content")).and_then(Value::as_str);
            let id = obj
                .and_then(|o| o.get("id"))
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok());
            match (obj, content, id) {
                (Some(obj), Some(content), Some(id)) => Ok(added_token(content, id, flags_of(obj))),
                _ => Err(format_error(
                    path,
                    format!("added_tokens[{i}] needs a string content and an integer id"),
                )),
            }
        })
        .collect()
}

/// `added_tokens_decoder` of tokenizer_config.json: an object of id: token object.
fn added_from_decoder(
    value: Option<&Value>,
    path: &Path,
) -> Result<Vec<AddedToken>, TokenizerError> {
    let Some(map) = value.and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut added = Vec::with_capacity(map.len());
    for (key, item) in map {
        let id = key.parse::<u32>().map_err(|_| {
            format_error(
                path,
                format!("added_tokens_decoder key {key:?} is not an id"),
            )
        })?;
        let obj = item.as_object();
        let content = obj.and_then(|o| o.get("content")).and_then(Value::as_str);
        match (obj, content) {
            (Some(obj), Some(content)) => added.push(added_token(content, id, flags_of(obj))),
            _ => {
                return Err(format_error(
                    path,
                    format!("added_tokens_decoder[{key}] has no string content"),
                ))
            }
        }
    }
    added.sort_by_key(|t| t.id);
    Ok(added)
}

fn added_token(content: &str, id: u32, flags: TokenFlags) -> AddedToken {
    AddedToken {
        content: content.to_owned(),
        id,
        single_word: flags.single_word,
        lstrip: flags.lstrip,
        rstrip: flags.rstrip,
        normalized: flags.normalized,
    }
}

/// Whether the pre-tokeniser of a tokenizer.json runs the byte-level GPT-2 split
/// (`ByteLevel.use_regex`, default true); the hub's CLIP files turn it off.
fn byte_level_regex_of(pre_tokenizer: Option<&Value>) -> bool {
    fn find(value: &Value) -> Option<bool> {
        let obj = value.as_object()?;
        if obj.get("type").and_then(Value::as_str) == Some("ByteLevel") {
            return Some(
                obj.get("use_regex")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            );
        }
        obj.get("pretokenizers")?.as_array()?.iter().find_map(find)
    }
    pre_tokenizer.and_then(find).unwrap_or(true)
}

/// Special-token names resolved from the optional config files.
struct SpecialNames {
    bos: TokenSpec,
    eos: TokenSpec,
    unk: TokenSpec,
    pad: TokenSpec,
}

fn special_names(map: Option<&Value>, config: Option<&Value>) -> SpecialNames {
    let pick = |key: &str, default: &str| {
        token_spec(map.and_then(|m| m.get(key)))
            .or_else(|| token_spec(config.and_then(|c| c.get(key))))
            .unwrap_or_else(|| TokenSpec::plain(default))
    };
    SpecialNames {
        bos: pick("bos_token", BOS_DEFAULT),
        eos: pick("eos_token", EOS_DEFAULT),
        unk: pick("unk_token", EOS_DEFAULT),
        pad: pick("pad_token", EOS_DEFAULT),
    }
}

/// Reads the tokenizer files of `dir`.
pub(crate) fn read_folder(dir: &Path) -> Result<TokenizerFiles, TokenizerError> {
    let config_path = dir.join("tokenizer_config.json");
    let config = read_optional_json(&config_path)?;
    let map = read_optional_json(&dir.join("special_tokens_map.json"))?;
    let names = special_names(map.as_ref(), config.as_ref());
    let config_added = added_from_decoder(
        config.as_ref().and_then(|c| c.get("added_tokens_decoder")),
        &config_path,
    )?;

    let tokenizer_json = dir.join("tokenizer.json");
    let vocab_json = dir.join("vocab.json");
    let merges_txt = dir.join("merges.txt");
    let (vocab, merges, mut added, byte_level_regex, source) = if tokenizer_json.is_file() {
        let root = read_json(&tokenizer_json)?;
        let model = root
            .get("model")
            .ok_or_else(|| format_error(&tokenizer_json, "no \"model\" section"))?;
        if let Some(kind) = model.get("type").and_then(Value::as_str) {
            if kind != "BPE" {
                return Err(format_error(
                    &tokenizer_json,
                    format!("model type is {kind:?}; a CLIP tokenizer is \"BPE\""),
                ));
            }
        }
        let suffix = model.get("end_of_word_suffix").and_then(Value::as_str);
        if suffix != Some(END_OF_WORD) {
            return Err(format_error(
                &tokenizer_json,
                format!(
                    "model.end_of_word_suffix is {suffix:?}; CLIP's BPE marks word ends with \
                     {END_OF_WORD:?}"
                ),
            ));
        }
        let vocab = vocab_from(
            model
                .get("vocab")
                .ok_or_else(|| format_error(&tokenizer_json, "no model.vocab"))?,
            &tokenizer_json,
        )?;
        let merges = merges_from_json(
            model
                .get("merges")
                .ok_or_else(|| format_error(&tokenizer_json, "no model.merges"))?,
            &tokenizer_json,
        )?;
        let added = added_from_list(root.get("added_tokens"), &tokenizer_json)?;
        let regex = byte_level_regex_of(root.get("pre_tokenizer"));
        (vocab, merges, added, regex, tokenizer_json)
    } else if vocab_json.is_file() && merges_txt.is_file() {
        let vocab = vocab_from(&read_json(&vocab_json)?, &vocab_json)?;
        let merges = merges_from_text(&read_text(&merges_txt)?, &merges_txt)?;
        // transformers 5 builds this layout with ByteLevel(add_prefix_space=False), whose
        // use_regex is on.
        (vocab, merges, Vec::new(), true, vocab_json)
    } else {
        return Err(TokenizerError::MissingFiles {
            dir: dir.to_owned(),
        });
    };
    if vocab.is_empty() {
        return Err(format_error(&source, "the vocabulary is empty"));
    }
    for token in config_added {
        if !added.iter().any(|t| t.content == token.content) {
            added.push(token);
        }
    }
    Ok(TokenizerFiles {
        vocab,
        merges,
        added,
        bos: names.bos,
        eos: names.eos,
        unk: names.unk,
        pad: names.pad,
        byte_level_regex,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_text_skips_header_and_blank_lines() {
        let path = Path::new("merges.txt");
        let merges = merges_from_text("#version: 0.2\ni n\nt h</w>\r\n\n", path).unwrap();
        assert_eq!(
            merges,
            [("i".into(), "n".into()), ("t".into(), "h</w>".into())]
        );
        assert!(merges_from_text("#version: 0.2\na b c\n", path).is_err());
    }

    #[test]
    fn merges_json_accepts_both_forms() {
        let path = Path::new("tokenizer.json");
        let merges = merges_from_json(&json!(["i n", ["t", "h</w>"]]), path).unwrap();
        assert_eq!(
            merges,
            [("i".into(), "n".into()), ("t".into(), "h</w>".into())]
        );
        assert!(merges_from_json(&json!(["abc"]), path).is_err());
        assert!(merges_from_json(&json!([1]), path).is_err());
    }

    #[test]
    fn special_names_precedence_and_defaults() {
        let map = json!({"pad_token": "!"});
        let config = json!({
            "pad_token": "<|endoftext|>",
            "bos_token": {"content": "<|startoftext|>", "normalized": true, "__type": "AddedToken"}
        });
        let names = special_names(Some(&map), Some(&config));
        assert_eq!(names.pad.content, "!");
        assert_eq!(names.bos.content, "<|startoftext|>");
        assert_eq!(names.bos.flags.map(|f| f.normalized), Some(true));
        assert_eq!(names.eos.content, "<|endoftext|>");
        let names = special_names(None, None);
        assert_eq!(names.pad.content, "<|endoftext|>");
        assert_eq!(names.unk.content, "<|endoftext|>");
    }

    #[test]
    fn byte_level_regex_flag() {
        let off = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split"}, {"type": "ByteLevel", "use_regex": false}]});
        assert!(!byte_level_regex_of(Some(&off)));
        let default = json!({"type": "ByteLevel", "add_prefix_space": false});
        assert!(byte_level_regex_of(Some(&default)));
        assert!(byte_level_regex_of(None));
    }

    #[test]
    fn added_token_lists() {
        let path = Path::new("x.json");
        let list = json!([{"id": 49406, "content": "<|startoftext|>", "special": true,
                           "normalized": true, "lstrip": false}]);
        let added = added_from_list(Some(&list), path).unwrap();
        assert_eq!(added[0].id, 49406);
        assert!(added[0].normalized);
        let decoder = json!({"0": {"content": "!", "special": true}});
        let added = added_from_decoder(Some(&decoder), path).unwrap();
        assert_eq!((added[0].id, added[0].normalized), (0, false));
        assert!(added_from_decoder(Some(&json!({"x": {"content": "!"}})), path).is_err());
    }
}
