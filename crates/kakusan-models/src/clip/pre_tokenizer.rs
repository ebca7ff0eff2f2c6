//! Splits normalised text into the words BPE encodes, with CLIP's pattern:
//! the two special-token strings, the English contractions `'s 't 're 've 'm 'll 'd`,
//! runs of letters, single digits, and runs of anything else that is not whitespace.
//! Whitespace separates words and is dropped.
//!
//! Tokenizers saved by `tokenizers` also run the byte-level pre-tokeniser's GPT-2 pattern
//! over each word when its `use_regex` is on. CLIP's words hold no whitespace and are each
//! one letter run, digit, contraction or symbol run, which the GPT-2 pattern leaves whole;
//! it only cuts the special-token strings (`<|`, `startoftext`, `|>`) when they reach the
//! pre-tokeniser as text, i.e. when they are not extracted as special tokens (different
//! case, for example). We apply it too, to stay equal in that corner.

use regex::Regex;

/// CLIP's word pattern (OpenAI `simple_tokenizer.py`, transformers' `CLIPTokenizer`).
const CLIP_WORD_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+";

/// GPT-2's pattern as the byte-level pre-tokeniser applies it, less the look-ahead in
/// `\s+(?!\S)|\s+`: the words it sees contain no whitespace, so `\s+` alone is equivalent.
const GPT2_WORD_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// The compiled word patterns.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    clip: Regex,
    gpt2: Option<Regex>,
}

impl PreTokenizer {
    /// `byte_level_regex`: whether the byte-level step's GPT-2 split is on.
    pub(crate) fn new(byte_level_regex: bool) -> Result<Self, regex::Error> {
        let clip = Regex::new(CLIP_WORD_PATTERN)?;
        let gpt2 = if byte_level_regex {
            Some(Regex::new(GPT2_WORD_PATTERN)?)
        } else {
            None
        };
        Ok(Self { clip, gpt2 })
    }

    /// Calls `f` with each word of `text` (already normalised), in order.
    pub(crate) fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        for word in self.clip.find_iter(text) {
            match &self.gpt2 {
                Some(gpt2) => gpt2.find_iter(word.as_str()).for_each(|w| f(w.as_str())),
                None => f(word.as_str()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: &PreTokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        p.for_each_word(text, |w| out.push(w.to_owned()));
        out
    }

    #[test]
    fn splits_letters_digits_symbols_and_contractions() {
        let p = PreTokenizer::new(false).unwrap();
        assert_eq!(
            words(&p, "it's 2024!! a (red) circle,8k"),
            ["it", "'s", "2", "0", "2", "4", "!!", "a", "(", "red", ")", "circle", ",", "8", "k"]
        );
        // Contractions only after a letter run that ended; a lone quote is a symbol run.
        assert_eq!(words(&p, "'hello' we'll"), ["'", "hello", "'", "we", "'ll"]);
        assert_eq!(words(&p, "<|endoftext|>x"), ["<|endoftext|>", "x"]);
        assert_eq!(words(&p, "été 東京"), ["été", "東京"]);
    }

    #[test]
    fn gpt2_step_changes_only_special_strings() {
        let plain = PreTokenizer::new(false).unwrap();
        let gpt2 = PreTokenizer::new(true).unwrap();
        let text = "it's 2024!! a (red) circle,8k 'x' we'd ... été";
        assert_eq!(words(&plain, text), words(&gpt2, text));
        assert_eq!(words(&gpt2, "<|startoftext|>"), ["<|", "startoftext", "|>"]);
    }
}
