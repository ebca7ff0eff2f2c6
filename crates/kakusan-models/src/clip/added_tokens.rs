//! Added (special) tokens and how they are cut out of the text before BPE.
//!
//! Like transformers / `tokenizers`: the special tokens of a tokenizer (`<|startoftext|>`,
//! `<|endoftext|>`, and the pad token, which is `!` for SD 2.x) are found in the text and
//! become their ids directly, whatever surrounds them. Tokens marked `normalized: false`
//! are looked for in the raw text first; the text between them is normalised, and tokens
//! marked `normalized: true` are then looked for in that normalised text. Matching is
//! leftmost-longest and non-overlapping; `lstrip` / `rstrip` swallow the whitespace before /
//! after a match; `single_word` accepts a match only when no word character touches it.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// One added token, with the flags transformers stores for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddedToken {
    pub(crate) content: String,
    pub(crate) id: u32,
    pub(crate) single_word: bool,
    pub(crate) lstrip: bool,
    pub(crate) rstrip: bool,
    pub(crate) normalized: bool,
}

/// A piece of text: either plain text (a byte range of the input) or an added token's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Range<usize>),
    Token(u32),
}

static STARTS_WITH_WORD: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\w").ok());
static ENDS_WITH_WORD: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\w$").ok());

fn is_match(re: &LazyLock<Option<Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(text))
}

/// Byte offset where the whitespace at the end of `text` begins.
fn trailing_space_start(text: &str) -> usize {
    text.trim_end_matches(char::is_whitespace).len()
}

/// Length of the whitespace at the start of `text`.
fn leading_space_len(text: &str) -> usize {
    text.len() - text.trim_start_matches(char::is_whitespace).len()
}

/// The longest token of `tokens` that starts at byte `at` of `text`.
fn longest_at<'t>(tokens: &[&'t AddedToken], text: &str, at: usize) -> Option<&'t AddedToken> {
    let rest = &text[at..];
    tokens
        .iter()
        .filter(|t| !t.content.is_empty() && rest.starts_with(t.content.as_str()))
        .max_by_key(|t| t.content.len())
        .copied()
}

/// Cuts `text` at the occurrences of `tokens`. Text pieces are byte ranges of `text`;
/// whitespace swallowed by `lstrip` / `rstrip` belongs to no piece.
pub(crate) fn split_on_added(text: &str, tokens: &[&AddedToken]) -> Vec<Piece> {
    if tokens.is_empty() || text.is_empty() {
        return vec![Piece::Text(0..text.len())];
    }
    let mut pieces = Vec::new();
    let mut emitted_up_to = 0;
    let mut search_from = 0;
    while search_from < text.len() {
        let found = text[search_from..]
            .char_indices()
            .map(|(i, _)| search_from + i)
            .find_map(|at| longest_at(tokens, text, at).map(|t| (at, t)));
        let Some((at, token)) = found else {
            break;
        };
        let mut start = at;
        let mut stop = at + token.content.len();
        search_from = stop;
        if token.single_word {
            let free_before = start == 0 || !is_match(&ENDS_WITH_WORD, &text[..start]);
            let free_after = stop == text.len() || !is_match(&STARTS_WITH_WORD, &text[stop..]);
            if !(free_before && free_after) {
                continue;
            }
        }
        if token.lstrip {
            start = trailing_space_start(&text[..start]).max(emitted_up_to);
        }
        if token.rstrip {
            stop += leading_space_len(&text[stop..]);
            search_from = stop;
        }
        if emitted_up_to < start {
            pieces.push(Piece::Text(emitted_up_to..start));
        }
        pieces.push(Piece::Token(token.id));
        emitted_up_to = stop;
    }
    if emitted_up_to < text.len() {
        pieces.push(Piece::Text(emitted_up_to..text.len()));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(content: &str, id: u32) -> AddedToken {
        AddedToken {
            content: content.to_owned(),
            id,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
        }
    }

    fn show(text: &str, pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(r) => format!("{:?}", &text[r.clone()]),
                Piece::Token(id) => format!("#{id}"),
            })
            .collect()
    }

    #[test]
    fn cuts_tokens_anywhere() {
        let eot = token("<|endoftext|>", 49407);
        let bang = token("!", 0);
        let text = "a cat!<|endoftext|>!! dog";
        let pieces = split_on_added(text, &[&eot, &bang]);
        assert_eq!(
            show(text, &pieces),
            ["\"a cat\"", "#0", "#49407", "#0", "#0", "\" dog\""]
        );
    }

    #[test]
    fn leftmost_longest() {
        let short = token("ab", 1);
        let long = token("abc", 2);
        let text = "xabcab";
        assert_eq!(
            show(text, &split_on_added(text, &[&short, &long])),
            ["\"x\"", "#2", "#1"]
        );
    }

    #[test]
    fn strip_and_single_word_flags() {
        let mut t = token("<m>", 7);
        t.lstrip = true;
        t.rstrip = true;
        let text = "a  <m>  b";
        assert_eq!(
            show(text, &split_on_added(text, &[&t])),
            ["\"a\"", "#7", "\"b\""]
        );

        let mut w = token("cat", 9);
        w.single_word = true;
        let text = "cats cat";
        assert_eq!(
            show(text, &split_on_added(text, &[&w])),
            ["\"cats \"", "#9"]
        );
    }

    #[test]
    fn no_tokens_or_empty_text() {
        assert_eq!(split_on_added("abc", &[]), [Piece::Text(0..3)]);
        let t = token("x", 1);
        assert_eq!(split_on_added("", &[&t]), [Piece::Text(0..0)]);
    }
}
