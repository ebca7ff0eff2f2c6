//! Emphasis ("attention") syntax: `(a)`, `((a))`, `[a]`, `(a:1.3)`, escapes, `BREAK`, and the
//! NovelAI `{a}` dialect.
//!
//! The behaviour is A1111's `parse_prompt_attention`, quirks included, because a prompt copied
//! from A1111 must give the same weights:
//! - round and square brackets are two independent stacks: `([a:1.5)]` is legal, the `:1.5)`
//!   closes the `(` and the `]` closes the `[`;
//! - a closing bracket with nothing open, and `:1.5)` with no `(` open, are plain text;
//! - brackets still open at the end apply their multiplier to everything after them;
//! - `\(` `\)` `\[` `\]` `\\` are literal characters; a backslash before anything else vanishes;
//! - `BREAK` (a whole word, upper case) becomes a `("BREAK", -1)` marker. The marker's weight is
//!   multiplied like any other piece, so a `BREAK` inside brackets is no longer a marker and is
//!   encoded as the word "break" with a negative weight (as A1111 does; `explain` warns);
//! - adjacent pieces with exactly equal weights merge; an empty prompt is `[("", 1.0)]`.
//!
//! Where A1111 raises (a weight like `(a:1.2.3)` or `(a:.)` that Python's `float()` refuses), we
//! keep the `:1.2.3)` as text and record a warning instead of failing.

use crate::pychar::{is_digit, is_space, whole_word_at};
use serde::Serialize;

/// `(a)` multiplies by this.
pub const ROUND_MULTIPLIER: f64 = 1.1;
/// NovelAI `{a}` multiplies by this.
pub const CURLY_MULTIPLIER: f64 = 1.05;

/// Which emphasis syntax is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// AUTOMATIC1111's webui: `{}` are plain text.
    #[default]
    A1111,
    /// A1111 plus NovelAI's braces: `{a}` multiplies by 1.05, `\{` `\}` are literal.
    NovelAi,
}

impl Dialect {
    /// The name written into metadata and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::A1111 => "a1111",
            Dialect::NovelAi => "novelai",
        }
    }

    /// Parses [`Dialect::name`].
    pub fn from_name(name: &str) -> Option<Dialect> {
        match name.to_ascii_lowercase().as_str() {
            "a1111" => Some(Dialect::A1111),
            "novelai" | "nai" => Some(Dialect::NovelAi),
            _ => None,
        }
    }
}

/// One run of text with its weight. `("BREAK", -1.0)` is the chunk-break marker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Piece {
    pub text: String,
    pub weight: f64,
}

impl Piece {
    fn new(text: impl Into<String>, weight: f64) -> Piece {
        Piece {
            text: text.into(),
            weight,
        }
    }

    /// Is this the `BREAK` marker (text `BREAK`, weight exactly -1, as A1111 tests it)?
    pub fn is_break(&self) -> bool {
        self.text == "BREAK" && self.weight == -1.0
    }
}

/// The parsed pieces and what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attention {
    pub pieces: Vec<Piece>,
    /// Human-readable notes on places where the prompt does something surprising.
    pub warnings: Vec<String>,
}

/// A lexical token of the emphasis syntax (A1111's `re_attention` alternatives, in its order).
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `\(` and friends: the literal character after the backslash; a lone `\` gives "".
    Escaped(String),
    Open(Bracket),
    Close(Bracket),
    /// `:1.5)` with the number's text and the whole match.
    Weight {
        number: String,
        whole: String,
    },
    /// A run of other characters, or a lone `:`.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bracket {
    Round,
    Square,
    Curly,
}

fn lex(text: &str, dialect: Dialect) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let curly = dialect == Dialect::NovelAi;
    let special = |ch: char| {
        matches!(ch, '\\' | '(' | ')' | '[' | ']' | ':') || (curly && matches!(ch, '{' | '}'))
    };
    let mut toks = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            '\\' => {
                let next = c.get(i + 1).copied();
                let escapable = |n: char| {
                    matches!(n, '(' | ')' | '[' | ']' | '\\') || (curly && matches!(n, '{' | '}'))
                };
                match next {
                    Some(n) if escapable(n) => {
                        toks.push(Tok::Escaped(n.to_string()));
                        i += 2;
                    }
                    _ => {
                        toks.push(Tok::Escaped(String::new()));
                        i += 1;
                    }
                }
            }
            '(' => {
                toks.push(Tok::Open(Bracket::Round));
                i += 1;
            }
            '[' => {
                toks.push(Tok::Open(Bracket::Square));
                i += 1;
            }
            '{' if curly => {
                toks.push(Tok::Open(Bracket::Curly));
                i += 1;
            }
            ':' => {
                // `:\s*([+-]?[.\d]+)\s*\)`
                let mut j = i + 1;
                while j < c.len() && is_space(c[j]) {
                    j += 1;
                }
                let num_start = j;
                if j < c.len() && matches!(c[j], '+' | '-') {
                    j += 1;
                }
                let digits_start = j;
                while j < c.len() && (c[j] == '.' || is_digit(c[j])) {
                    j += 1;
                }
                let num_end = j;
                while j < c.len() && is_space(c[j]) {
                    j += 1;
                }
                if num_end > digits_start && j < c.len() && c[j] == ')' {
                    toks.push(Tok::Weight {
                        number: c[num_start..num_end].iter().collect(),
                        whole: c[i..=j].iter().collect(),
                    });
                    i = j + 1;
                } else {
                    toks.push(Tok::Text(":".to_string()));
                    i += 1;
                }
            }
            ')' => {
                toks.push(Tok::Close(Bracket::Round));
                i += 1;
            }
            ']' => {
                toks.push(Tok::Close(Bracket::Square));
                i += 1;
            }
            '}' if curly => {
                toks.push(Tok::Close(Bracket::Curly));
                i += 1;
            }
            _ => {
                let start = i;
                while i < c.len() && !special(c[i]) {
                    i += 1;
                }
                toks.push(Tok::Text(c[start..i].iter().collect()));
            }
        }
    }
    toks
}

/// Splits `text` at `\s*\bBREAK\b\s*` like Python's `re.split`.
pub(crate) fn split_break(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut last = 0;
    let mut search = 0;
    let mut k = 0;
    while k + 5 <= c.len() {
        if !whole_word_at(&c, k, "BREAK") {
            k += 1;
            continue;
        }
        // The match starts at the earliest position (not before the search start) from which
        // `\s*` reaches this BREAK.
        let mut start = k;
        while start > search && is_space(c[start - 1]) {
            start -= 1;
        }
        let mut end = k + 5;
        while end < c.len() && is_space(c[end]) {
            end += 1;
        }
        parts.push(c[last..start].iter().collect());
        last = end;
        search = end;
        k = end;
    }
    parts.push(c[last..].iter().collect());
    parts
}

/// A1111's `parse_prompt_attention` (see the module notes), with the NovelAI braces when the
/// dialect asks for them.
pub fn parse_attention(text: &str, dialect: Dialect) -> Attention {
    let mut res: Vec<Piece> = Vec::new();
    let mut warnings = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let mut curly: Vec<usize> = Vec::new();
    let square_multiplier = 1.0 / 1.1;

    fn multiply(res: &mut [Piece], from: usize, m: f64) {
        for p in &mut res[from..] {
            p.weight *= m;
        }
    }
    fn push_text(res: &mut Vec<Piece>, text: &str) {
        for (i, part) in split_break(text).into_iter().enumerate() {
            if i > 0 {
                res.push(Piece::new("BREAK", -1.0));
            }
            res.push(Piece::new(part, 1.0));
        }
    }

    for tok in lex(text, dialect) {
        match tok {
            Tok::Escaped(s) => res.push(Piece::new(s, 1.0)),
            Tok::Open(Bracket::Round) => round.push(res.len()),
            Tok::Open(Bracket::Square) => square.push(res.len()),
            Tok::Open(Bracket::Curly) => curly.push(res.len()),
            Tok::Weight { number, whole } => {
                if round.is_empty() {
                    push_text(&mut res, &whole);
                } else {
                    match number.parse::<f64>() {
                        Ok(w) => {
                            let from = round.pop().unwrap_or(0);
                            multiply(&mut res, from, w);
                        }
                        Err(_) => {
                            warnings.push(format!(
                                "weight {number:?} in {whole:?} is not a number (A1111 fails on it); kept as text"
                            ));
                            push_text(&mut res, &whole);
                        }
                    }
                }
            }
            Tok::Close(Bracket::Round) => match round.pop() {
                Some(from) => multiply(&mut res, from, ROUND_MULTIPLIER),
                None => push_text(&mut res, ")"),
            },
            Tok::Close(Bracket::Square) => match square.pop() {
                Some(from) => multiply(&mut res, from, square_multiplier),
                None => push_text(&mut res, "]"),
            },
            Tok::Close(Bracket::Curly) => match curly.pop() {
                Some(from) => multiply(&mut res, from, CURLY_MULTIPLIER),
                None => push_text(&mut res, "}"),
            },
            Tok::Text(s) => push_text(&mut res, &s),
        }
    }
    for &from in &round {
        multiply(&mut res, from, ROUND_MULTIPLIER);
    }
    for &from in &square {
        multiply(&mut res, from, square_multiplier);
    }
    for &from in &curly {
        multiply(&mut res, from, CURLY_MULTIPLIER);
    }
    if res.is_empty() {
        res.push(Piece::new("", 1.0));
    }
    // Before merging, the pieces whose text is exactly "BREAK" are the markers.
    if res.iter().any(|p| p.text == "BREAK" && p.weight != -1.0) {
        warnings.push(
            "BREAK inside brackets is not a chunk break (A1111 encodes it as the word \"break\" with the brackets' weight, negated)"
                .to_string(),
        );
    }
    // Merge runs of identical weights (exact float equality, as A1111).
    let mut merged: Vec<Piece> = Vec::with_capacity(res.len());
    for p in res {
        match merged.last_mut() {
            Some(last) if last.weight == p.weight => last.text.push_str(&p.text),
            _ => merged.push(p),
        }
    }
    Attention {
        pieces: merged,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, f64)> {
        parse_attention(text, Dialect::A1111)
            .pieces
            .into_iter()
            .map(|p| (p.text, p.weight))
            .collect()
    }

    fn v(items: &[(&str, f64)]) -> Vec<(String, f64)> {
        items.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    // The expectations below are A1111's own doctests, weights to the last bit.
    #[test]
    fn a1111_doctests() {
        assert_eq!(p("normal text"), v(&[("normal text", 1.0)]));
        assert_eq!(
            p("an (important) word"),
            v(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        );
        assert_eq!(p("(unbalanced"), v(&[("unbalanced", 1.1)]));
        assert_eq!(p("\\(literal\\]"), v(&[("(literal]", 1.0)]));
        assert_eq!(p("(unnecessary)(parens)"), v(&[("unnecessaryparens", 1.1)]));
        assert_eq!(
            p("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            v(&[
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ])
        );
    }

    #[test]
    fn break_marker_and_break_in_brackets() {
        assert_eq!(
            p("a BREAK b"),
            v(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)])
        );
        let a = parse_attention("(a BREAK b)", Dialect::A1111);
        assert_eq!(a.pieces[1].text, "BREAK");
        assert!(!a.pieces[1].is_break());
        assert!(!a.warnings.is_empty());
    }

    #[test]
    fn bad_weight_is_text_with_warning() {
        let a = parse_attention("(a:1.2.3)", Dialect::A1111);
        assert_eq!(a.pieces, vec![Piece::new("a:1.2.3)", 1.1)]);
        assert_eq!(a.warnings.len(), 1);
    }

    #[test]
    fn novelai_braces() {
        let a = parse_attention("{a} {{b}} \\{c\\}", Dialect::NovelAi);
        assert_eq!(
            a.pieces,
            vec![
                Piece::new("a", 1.05),
                Piece::new(" ", 1.0),
                Piece::new("b", 1.05 * 1.05),
                Piece::new(" {c}", 1.0),
            ]
        );
        assert_eq!(p("{a}"), v(&[("{a}", 1.0)]));
    }

    #[test]
    fn empty_prompt() {
        assert_eq!(p(""), v(&[("", 1.0)]));
        assert_eq!(p("()"), v(&[("", 1.0)]));
    }
}
