//! The A1111 infotext: what it holds ([`GenerationParameters`]), how A1111 writes it
//! (`processing.create_infotext`) and how A1111 reads it (`infotext_utils.parse_generation_parameters`).
//!
//! Layout written:
//! ```text
//! <prompt, possibly several lines>
//! Negative prompt: <negative prompt, possibly several lines>      (only if not empty)
//! Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: abcdef1234, Model: name, Denoising strength: 0.6, Clip skip: 2, Version: kakusan 0.1.0
//! ```
//! The pairs come in A1111's order (Steps, Sampler, Schedule type, CFG scale, Seed, Size,
//! Model hash, Model, Batch size, Batch pos, Denoising strength, Clip skip, then the extra
//! pairs in their order, then Version); absent optional fields are left out; values are
//! quoted by [`quote_value`]; the whole text is stripped of surrounding white space.
//! Numbers are written in their shortest form (`7`, `7.5`, `0.6`).
//!
//! Reading follows A1111: the last line is the parameter line if it holds at least three
//! `Key: value` pairs (A1111's regular expression); the lines before it are the prompt, each
//! stripped, until a line starting with `Negative prompt:`, after which they are the negative
//! prompt. Because of these rules a prompt survives a write/read round trip exactly when its
//! lines have no surrounding white space, it does not start with an empty line, and no line
//! starts with `Negative prompt:` (such text is read as A1111 would read it).
//!
//! One A1111 writing rule is not copied: A1111 writes a pair whose value equals its key as the
//! bare key, which its own parser then drops; kakusan always writes `Key: value`.

use std::sync::OnceLock;

use regex::Regex;

use super::quoting::{python_strip, quote_value, unquote_value};

/// The `Version` value kakusan writes: `kakusan <crate version>`.
pub const KAKUSAN_VERSION: &str = concat!("kakusan ", env!("CARGO_PKG_VERSION"));

/// The keys [`GenerationParameters`] holds in named fields; extra pairs may not use them.
const KNOWN_KEYS: [&str; 13] = [
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Batch size",
    "Batch pos",
    "Denoising strength",
    "Clip skip",
    "Version",
];

/// The parameters of one generated picture, as A1111's infotext records them.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParameters {
    /// The prompt (may span several lines).
    pub prompt: String,
    /// The negative prompt; empty means none (no `Negative prompt:` line).
    pub negative_prompt: String,
    /// `Steps`.
    pub steps: u32,
    /// `Sampler`, with A1111's names (`Euler a`, `DPM++ 2M`, ...).
    pub sampler: String,
    /// `Schedule type` (`Karras`, `Automatic`, ...); A1111 before 1.9 did not write it.
    pub schedule: Option<String>,
    /// `CFG scale`.
    pub cfg_scale: f64,
    /// `Seed`.
    pub seed: u64,
    /// Width from `Size: WxH`.
    pub width: u32,
    /// Height from `Size: WxH`.
    pub height: u32,
    /// `Model hash` (A1111 writes the first 10 hex digits of the file's SHA-256).
    pub model_hash: Option<String>,
    /// `Model` (the checkpoint's name).
    pub model_name: Option<String>,
    /// `Denoising strength` (img2img).
    pub denoising_strength: Option<f64>,
    /// `Clip skip`; A1111 leaves it out when it is 1.
    pub clip_skip: Option<u32>,
    /// `Batch size` (older A1111 wrote it when the batch had 2 or more images).
    pub batch_size: Option<u32>,
    /// `Batch pos`: the picture's index in its batch.
    pub batch_pos: Option<u32>,
    /// Every other pair, in order (`ENSD`, `Hires upscale`, `Lora hashes`, ...), values
    /// unquoted. Keys must have A1111's key shape (see [`GenerationParameters::push_extra`]).
    pub extra: Vec<(String, String)>,
    /// `Version` (kakusan writes [`KAKUSAN_VERSION`]; A1111 writes e.g. `v1.10.1`).
    pub version: Option<String>,
}

impl Default for GenerationParameters {
    /// A1111's txt2img defaults: 20 steps of `Euler a`, CFG 7, 512x512, seed 0, no prompt.
    fn default() -> Self {
        GenerationParameters {
            prompt: String::new(),
            negative_prompt: String::new(),
            steps: 20,
            sampler: "Euler a".to_string(),
            schedule: None,
            cfg_scale: 7.0,
            seed: 0,
            width: 512,
            height: 512,
            model_hash: None,
            model_name: None,
            denoising_strength: None,
            clip_skip: None,
            batch_size: None,
            batch_pos: None,
            extra: Vec::new(),
            version: None,
        }
    }
}

/// Why an infotext could not be read, or an extra pair not added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParametersError {
    /// The last line does not hold A1111's `Key: value` pairs.
    #[error(
        "no A1111 parameter line found: the last line must hold `Key: value` pairs such as \
         `Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512`"
    )]
    NoParameterLine,
    /// A field every A1111 infotext has is missing.
    #[error("the A1111 parameter line has no `{0}:` entry")]
    MissingField(&'static str),
    /// A field's value is not of the right kind.
    #[error("A1111 parameter `{key}: {value}` is not valid: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An extra key cannot be written so that it reads back.
    #[error("cannot use {key:?} as an extra parameter name: {reason}")]
    InvalidExtraKey {
        /// The key.
        key: String,
        /// Why not.
        reason: &'static str,
    },
}

/// A1111's `re_param`: one `Key: value` pair; a value is a JSON string or runs to the comma.
fn pair_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        // The pattern is a constant: it always compiles (checked by the tests).
        Regex::new(r#"\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"#)
            .expect("constant regex compiles")
    })
}

/// A1111's key shape: a word character, then at least one of word characters, ` `, `-`, `/`.
fn key_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| Regex::new(r"^\w[\w \-/]+$").expect("constant regex compiles"))
}

/// Shortest decimal form of a float (`7`, `7.5`, `0.6`).
fn format_number(value: f64) -> String {
    format!("{value}")
}

impl GenerationParameters {
    /// The infotext in A1111's layout (see the module doc).
    pub fn to_a1111_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("Steps", self.steps.to_string()),
            ("Sampler", self.sampler.clone()),
        ];
        if let Some(schedule) = &self.schedule {
            pairs.push(("Schedule type", schedule.clone()));
        }
        pairs.push(("CFG scale", format_number(self.cfg_scale)));
        pairs.push(("Seed", self.seed.to_string()));
        pairs.push(("Size", format!("{}x{}", self.width, self.height)));
        if let Some(hash) = &self.model_hash {
            pairs.push(("Model hash", hash.clone()));
        }
        if let Some(name) = &self.model_name {
            pairs.push(("Model", name.clone()));
        }
        if let Some(size) = self.batch_size {
            pairs.push(("Batch size", size.to_string()));
        }
        if let Some(pos) = self.batch_pos {
            pairs.push(("Batch pos", pos.to_string()));
        }
        if let Some(strength) = self.denoising_strength {
            pairs.push(("Denoising strength", format_number(strength)));
        }
        if let Some(skip) = self.clip_skip {
            pairs.push(("Clip skip", skip.to_string()));
        }
        for (key, value) in &self.extra {
            pairs.push((key.as_str(), value.clone()));
        }
        if let Some(version) = &self.version {
            pairs.push(("Version", version.clone()));
        }
        let line = pairs
            .iter()
            .map(|(key, value)| format!("{key}: {}", quote_value(value)))
            .collect::<Vec<_>>()
            .join(", ");
        let negative = if self.negative_prompt.is_empty() {
            String::new()
        } else {
            format!("\nNegative prompt: {}", self.negative_prompt)
        };
        python_strip(&format!("{}{negative}\n{line}", self.prompt)).to_string()
    }

    /// Appends an extra pair, refusing keys that would not read back as written: keys that
    /// do not have A1111's key shape (a word character, then one or more word characters,
    /// spaces, `-` or `/`) and keys of the named fields (`Steps`, `Model`, ...).
    pub fn push_extra(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), ParametersError> {
        let key = key.into();
        if !key_pattern().is_match(&key) {
            return Err(ParametersError::InvalidExtraKey {
                key,
                reason: "A1111 keys are a letter or digit followed by letters, digits, spaces, \
                         '-' or '/' (at least two characters)",
            });
        }
        if KNOWN_KEYS.contains(&key.as_str()) {
            return Err(ParametersError::InvalidExtraKey {
                key,
                reason: "this key has its own field in GenerationParameters",
            });
        }
        self.extra.push((key, value.into()));
        Ok(())
    }

    /// The value of an extra pair.
    pub fn extra_value(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an A1111 infotext (see the module doc for the rules; they are A1111's).
///
/// Steps, Sampler, CFG scale, Seed and Size are required; other known keys fill their
/// fields, the rest go to `extra` in order. As in A1111 (a Python dict), a repeated key keeps
/// its first position and its last value, and a pair with an empty value is ignored.
pub fn parse_a1111(text: &str) -> Result<GenerationParameters, ParametersError> {
    let mut lines: Vec<&str> = python_strip(text).split('\n').collect();
    let last = lines.pop().unwrap_or("");
    let found: Vec<(String, String)> = pair_pattern()
        .captures_iter(last)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    if found.len() < 3 {
        return Err(ParametersError::NoParameterLine);
    }

    let mut prompt = String::new();
    let mut negative = String::new();
    let mut in_negative = false;
    for line in lines {
        let mut line = python_strip(line);
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            line = python_strip(rest);
        }
        let target = if in_negative {
            &mut negative
        } else {
            &mut prompt
        };
        if !target.is_empty() {
            target.push('\n');
        }
        target.push_str(line);
    }

    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, raw) in found {
        if raw.is_empty() {
            continue; // A1111's `v[0]` raises and the pair is skipped
        }
        let value = if raw.starts_with('"') && raw.ends_with('"') {
            unquote_value(&raw).into_owned()
        } else {
            raw
        };
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => pairs.push((key, value)),
        }
    }

    let mut params = GenerationParameters {
        prompt,
        negative_prompt: negative,
        ..GenerationParameters::default()
    };
    let mut seen = [false; 5];
    for (key, value) in pairs {
        match key.as_str() {
            "Steps" => {
                params.steps = parse_number(&key, &value, "a whole number of steps")?;
                seen[0] = true;
            }
            "Sampler" => {
                params.sampler = value;
                seen[1] = true;
            }
            "CFG scale" => {
                params.cfg_scale = parse_float(&key, &value)?;
                seen[2] = true;
            }
            "Seed" => {
                params.seed = parse_number(&key, &value, "a non-negative whole number")?;
                seen[3] = true;
            }
            "Size" => {
                (params.width, params.height) = parse_size(&key, &value)?;
                seen[4] = true;
            }
            "Schedule type" => params.schedule = Some(value),
            "Model hash" => params.model_hash = Some(value),
            "Model" => params.model_name = Some(value),
            "Batch size" => params.batch_size = Some(parse_number(&key, &value, "a whole number")?),
            "Batch pos" => params.batch_pos = Some(parse_number(&key, &value, "a whole number")?),
            "Denoising strength" => params.denoising_strength = Some(parse_float(&key, &value)?),
            "Clip skip" => params.clip_skip = Some(parse_number(&key, &value, "a whole number")?),
            "Version" => params.version = Some(value),
            _ => params.extra.push((key, value)),
        }
    }
    let required = ["Steps", "Sampler", "CFG scale", "Seed", "Size"];
    if let Some(i) = seen.iter().position(|&s| !s) {
        return Err(ParametersError::MissingField(required[i]));
    }
    Ok(params)
}

fn invalid(key: &str, value: &str, expected: &'static str) -> ParametersError {
    ParametersError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn parse_number<T: std::str::FromStr>(
    key: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, ParametersError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, expected))
}

fn parse_float(key: &str, value: &str) -> Result<f64, ParametersError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(invalid(key, value, "a finite number such as 7 or 7.5")),
    }
}

/// A1111's `re_imagesize`: `^(\d+)x(\d+)$`.
fn parse_size(key: &str, value: &str) -> Result<(u32, u32), ParametersError> {
    let expected = "WIDTHxHEIGHT such as 512x768";
    let (w, h) = value
        .split_once('x')
        .ok_or_else(|| invalid(key, value, expected))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(h) {
        return Err(invalid(key, value, expected));
    }
    Ok((
        w.parse().map_err(|_| invalid(key, value, expected))?,
        h.parse().map_err(|_| invalid(key, value, expected))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        assert!(pair_pattern().is_match("Steps: 20"));
        assert!(key_pattern().is_match("Hires upscale"));
    }

    #[test]
    fn finds_pairs_as_a1111s_regex_does() {
        let line = r#"Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2", Size: 512x512"#;
        let found: Vec<(String, String)> = pair_pattern()
            .captures_iter(line)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("Steps".into(), "20".into()),
                ("Sampler".into(), "Euler a".into()),
                ("Lora hashes".into(), "\"a: 1, b: 2\"".into()),
                ("Size".into(), "512x512".into()),
            ]
        );
    }

    #[test]
    fn numbers_are_written_short() {
        assert_eq!(format_number(7.0), "7");
        assert_eq!(format_number(7.5), "7.5");
        assert_eq!(format_number(0.6), "0.6");
    }

    #[test]
    fn push_extra_validates_keys() {
        let mut p = GenerationParameters::default();
        p.push_extra("ENSD", "31337").unwrap();
        p.push_extra("Hires upscale", "2").unwrap();
        assert_eq!(p.extra_value("ENSD"), Some("31337"));
        for bad in ["", "E", "a:b", "a,b", " lead", "Steps", "Model"] {
            assert!(p.push_extra(bad, "x").is_err(), "{bad:?}");
        }
    }
}
