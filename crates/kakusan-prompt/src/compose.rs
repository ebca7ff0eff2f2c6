//! `AND` composition: `a AND b :1.2` is several prompts, each with a weight, combined in the
//! guidance step (A1111's `get_multicond_prompt_list`).
//!
//! The prompt is split at every whole word `AND` (upper case). Each part ends in an optional
//! weight `: 1.2` (`[-+]?(\d+\.?|\d*\.\d+)`, whitespace allowed around the colon); the part's
//! text loses its trailing whitespace but keeps its leading whitespace. Without a weight the
//! weight is 1.

use crate::pychar::{is_digit, is_space, whole_word_at};
use serde::Serialize;

/// One `AND` part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AndPart {
    pub text: String,
    pub weight: f64,
}

/// Splits at `\bAND\b` like Python's `re.split`.
fn split_and(prompt: &str) -> Vec<Vec<char>> {
    let c: Vec<char> = prompt.chars().collect();
    let mut parts = Vec::new();
    let mut last = 0;
    let mut k = 0;
    while k + 3 <= c.len() {
        if whole_word_at(&c, k, "AND") {
            parts.push(c[last..k].to_vec());
            k += 3;
            last = k;
        } else {
            k += 1;
        }
    }
    parts.push(c[last..].to_vec());
    parts
}

/// Does `s` (whole) match `[-+]?(?:\d+\.?|\d*\.\d+)`?
fn is_and_weight(s: &[char]) -> bool {
    let s = match s.first() {
        Some('+' | '-') => &s[1..],
        _ => s,
    };
    let digits_before = s.iter().take_while(|c| is_digit(**c)).count();
    let rest = &s[digits_before..];
    match rest {
        [] => digits_before > 0,
        ['.'] => digits_before > 0,
        ['.', tail @ ..] => !tail.is_empty() && tail.iter().all(|c| is_digit(*c)),
        _ => false,
    }
}

/// A1111's `re_weight` on one part: `^((?:\s|.)*?)(?:\s*:\s*(NUMBER))?\s*$`.
fn part_weight(part: &[char]) -> AndPart {
    let mut end = part.len();
    while end > 0 && is_space(part[end - 1]) {
        end -= 1;
    }
    if let Some(colon) = part[..end].iter().rposition(|c| *c == ':') {
        let mut num_start = colon + 1;
        while num_start < end && is_space(part[num_start]) {
            num_start += 1;
        }
        let number = &part[num_start..end];
        if is_and_weight(number) {
            let mut text_end = colon;
            while text_end > 0 && is_space(part[text_end - 1]) {
                text_end -= 1;
            }
            let number: String = number.iter().collect();
            return AndPart {
                text: part[..text_end].iter().collect(),
                // Every string the pattern accepts is a valid float.
                weight: number.parse().unwrap_or(1.0),
            };
        }
    }
    AndPart {
        text: part[..end].iter().collect(),
        weight: 1.0,
    }
}

/// The `AND` parts of `prompt`, in order (A1111 also de-duplicates equal texts into one
/// conditioning; the parts keep their own weights).
pub fn and_parts(prompt: &str) -> Vec<AndPart> {
    split_and(prompt).iter().map(|p| part_weight(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<(String, f64)> {
        and_parts(p)
            .into_iter()
            .map(|a| (a.text, a.weight))
            .collect()
    }

    #[test]
    fn weights_and_whitespace() {
        assert_eq!(
            parts("a cat AND a dog :1.2"),
            vec![("a cat".to_string(), 1.0), (" a dog".to_string(), 1.2)]
        );
        assert_eq!(parts("x : -.5  "), vec![("x".to_string(), -0.5)]);
        assert_eq!(parts("x:5."), vec![("x".to_string(), 5.0)]);
        assert_eq!(parts("x:."), vec![("x:.".to_string(), 1.0)]);
        assert_eq!(
            parts("ANDROID AND"),
            vec![("ANDROID".to_string(), 1.0), (String::new(), 1.0)]
        );
        assert_eq!(parts("(a:1.5)"), vec![("(a:1.5)".to_string(), 1.0)]);
    }
}
