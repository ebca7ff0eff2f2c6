//! How A1111 quotes infotext values: `infotext_utils.quote` writes a value as JSON
//! (`json.dumps(v, ensure_ascii=False)`) when it holds `,`, `:` or a newline, and `unquote`
//! reads a value that starts and ends with `"` as JSON, keeping the raw text if that fails.
//!
//! [`quote_value`] also quotes values A1111 would write bare but could not read back intact:
//! empty values (A1111's parser drops `Key: ` entirely), values starting with `"` (they would
//! be JSON-decoded), and values with leading or trailing whitespace (trimmed by the parser).
//! A1111 reads all of these quoted forms correctly.

use std::borrow::Cow;
use std::fmt::Write;

/// Python's `str.isspace()`: Unicode white space plus the separators U+001C..=U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
pub(crate) fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// The value as it is written after `Key: ` (see the module doc for when it is quoted).
pub fn quote_value(value: &str) -> Cow<'_, str> {
    let a1111_quotes = value.contains([',', ':', '\n']);
    let unreadable_bare = value.is_empty()
        || value.starts_with('"')
        || value.starts_with(is_python_space)
        || value.ends_with(is_python_space);
    if a1111_quotes || unreadable_bare {
        Cow::Owned(json_string(value))
    } else {
        Cow::Borrowed(value)
    }
}

/// A value as A1111's `unquote` reads it: JSON-decoded when it starts and ends with `"` and
/// is one valid JSON string, otherwise unchanged.
pub fn unquote_value(text: &str) -> Cow<'_, str> {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        if let Some(decoded) = parse_json_string(text) {
            return Cow::Owned(decoded);
        }
    }
    Cow::Borrowed(text)
}

/// `json.dumps(value, ensure_ascii=False)` for a string.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `json.loads(text)` when `text` is exactly one JSON string (strict: raw control characters
/// are refused, as Python's default). Lone surrogate escapes, which Python accepts but Rust
/// strings cannot hold, count as failure.
fn parse_json_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None, // the string ended before the last quote: extra data
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{08}'),
                'f' => out.push('\u{0c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let first = hex4(&mut chars)?;
                    let code = if (0xD800..0xDC00).contains(&first) {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let second = hex4(&mut chars)?;
                        if !(0xDC00..0xE000).contains(&second) {
                            return None;
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    } else {
                        first
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_a1111() {
        assert_eq!(quote_value("Euler a"), "Euler a");
        assert_eq!(quote_value("v1-5-pruned-emaonly"), "v1-5-pruned-emaonly");
        assert_eq!(quote_value("a, b"), "\"a, b\"");
        assert_eq!(quote_value("x: y"), "\"x: y\"");
        assert_eq!(quote_value("line\nbreak"), "\"line\\nbreak\"");
        // ensure_ascii=False keeps non-ASCII as is; quotes and backslashes are escaped.
        assert_eq!(quote_value("猫, \"neko\" \\"), "\"猫, \\\"neko\\\" \\\\\"");
        assert_eq!(quote_value("tab\there, \u{1}"), "\"tab\\there, \\u0001\"");
        // Bare values that contain a quote elsewhere stay bare, as in A1111.
        assert_eq!(quote_value("say \"hi\""), "say \"hi\"");
    }

    #[test]
    fn quotes_what_a1111_could_not_read_back() {
        assert_eq!(quote_value(""), "\"\"");
        assert_eq!(quote_value("\"x\""), "\"\\\"x\\\"\"");
        assert_eq!(quote_value(" padded "), "\" padded \"");
    }

    #[test]
    fn unquotes_like_a1111() {
        assert_eq!(unquote_value("plain"), "plain");
        assert_eq!(unquote_value("\"a, b\""), "a, b");
        assert_eq!(unquote_value("\"\\u732b \\ud83d\\ude00\""), "猫 😀");
        assert_eq!(unquote_value("\"\\/\\b\\f\\n\\r\\t\""), "/\u{8}\u{c}\n\r\t");
        // Not one JSON string: kept raw.
        assert_eq!(unquote_value("\"a\" \"b\""), "\"a\" \"b\"");
        assert_eq!(unquote_value("\""), "\"");
        assert_eq!(unquote_value("\"bad \\x escape\""), "\"bad \\x escape\"");
        assert_eq!(unquote_value("\"raw\ttab\""), "\"raw\ttab\"");
        assert_eq!(unquote_value("\"\\ud800\""), "\"\\ud800\"");
    }

    #[test]
    fn quoting_round_trips() {
        for v in [
            "",
            "a",
            "a,b",
            "\"",
            "\\",
            "\u{0}",
            "日本語: テスト",
            "  x",
            "x\n",
            "😀,",
        ] {
            assert_eq!(unquote_value(&quote_value(v)), v, "{v:?}");
        }
    }

    #[test]
    fn python_whitespace() {
        assert_eq!(python_strip("\u{1f} a b\u{3000}\n"), "a b");
        assert!(!is_python_space('\u{200b}'));
    }
}
