//! CLIP's text clean-up before pre-tokenisation, as transformers' `CLIPTokenizer` (which
//! since transformers 5 is the `tokenizers`-backed one) does it: Unicode NFC, every run of
//! whitespace replaced by one space, then lower-casing character by character.
//!
//! Lower-casing is per character (`char::to_lowercase`), like the `tokenizers` crate and
//! unlike Python's `str.lower()`: a word-final capital sigma becomes `σ`, not `ς`. There is
//! no ftfy step: the `tokenizers` pipeline has none (only transformers 4's slow tokenizer
//! ran ftfy when it happened to be installed).

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// Runs of Unicode whitespace (`White_Space` property), as `\s+` in the reference regex.
static WHITESPACE_RUN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\s+").ok());

/// NFC, whitespace runs to single spaces, lower case. Leading and trailing whitespace
/// become one space each, not nothing; the pre-tokeniser drops spaces anyway.
pub(crate) fn normalize(text: &str) -> String {
    let composed: String = text.nfc().collect();
    let spaced = match WHITESPACE_RUN.as_ref() {
        Some(re) => re.replace_all(&composed, " ").into_owned(),
        None => collapse_whitespace(&composed),
    };
    spaced.chars().flat_map(char::to_lowercase).collect()
}

/// The same whitespace collapse without the regex engine (only used if the pattern failed
/// to compile, which it cannot; kept so no path panics).
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_whitespace_and_lowercases() {
        assert_eq!(normalize("  A\tRed \n\n Circle "), " a red circle ");
        assert_eq!(
            collapse_whitespace("  A\tRed \n\n Circle "),
            " A Red Circle "
        );
        // No-break space and ideographic space are whitespace too.
        assert_eq!(normalize("a\u{a0}b\u{3000}c"), "a b c");
    }

    #[test]
    fn composes_to_nfc() {
        // e + combining acute -> é (U+00E9).
        assert_eq!(normalize("Cafe\u{301}"), "caf\u{e9}");
    }

    #[test]
    fn lowercases_per_character() {
        assert_eq!(normalize("ΟΔΟΣ"), "οδοσ");
        // İ lower-cases to two characters: i + combining dot above.
        assert_eq!(normalize("İ"), "i\u{307}");
    }
}
