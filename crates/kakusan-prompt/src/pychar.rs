//! Python's character classes, as the A1111 regular expressions see them.
//!
//! A1111's patterns are Python `re` patterns on `str`, so `\s` is `str.isspace()` and `\b` is a
//! boundary between `\w` and non-`\w` characters. Rust's `char::is_whitespace` lacks the four
//! ASCII separators `\x1c`..`\x1f` that Python counts as space, so we list Python's set here.

/// Python's `\s` (and `str.isspace()`).
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `\w`: letters, digits and `_`. Exact for ASCII; beyond ASCII, Rust's
/// `is_alphanumeric` (Unicode Alphabetic or Numeric) stands in for Python's `str.isalnum()`;
/// they differ on a few combining marks, which only matters for a `BREAK` or `AND` glued to such
/// a mark.
pub(crate) fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Python's `\d` restricted to ASCII: A1111's `\d` also takes other scripts' decimal digits
/// (and `float()` reads them); kakusan treats those as text.
pub(crate) fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// Does `c[k..k + word.len()]` hold `word` as a whole word (`\bword\b`), with `word` made of
/// word characters?
pub(crate) fn whole_word_at(c: &[char], k: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    if k + w.len() > c.len() || c[k..k + w.len()] != w[..] {
        return false;
    }
    let before_ok = k == 0 || !is_word(c[k - 1]);
    let after_ok = k + w.len() == c.len() || !is_word(c[k + w.len()]);
    before_ok && after_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_space_includes_ascii_separators() {
        assert!(is_space('\u{1c}'));
        assert!(!'\u{1c}'.is_whitespace());
        assert!(is_space('\u{3000}'));
        assert!(!is_space('\u{200b}'));
    }

    #[test]
    fn whole_words() {
        let c: Vec<char> = "a BREAK,BREAKs xBREAK".chars().collect();
        assert!(whole_word_at(&c, 2, "BREAK"));
        assert!(!whole_word_at(&c, 8, "BREAK"));
        assert!(!whole_word_at(&c, 16, "BREAK"));
    }
}
