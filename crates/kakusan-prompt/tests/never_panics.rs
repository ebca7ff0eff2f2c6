//! Property tests: no input makes the prompt crate panic, and no text is lost on the way from
//! the prompt to the explained pieces.
//!
//! "No text is lost", precisely. Call *syntax characters* `( ) [ ] { } : | \`, whitespace,
//! ASCII digits, `.`, `+` and `-`: the only characters the language may consume (brackets,
//! weights `:1.5)`, escapes, whitespace around `BREAK`, `AND` weights). Then:
//! 1. attention: the prompt's non-syntax characters, in order, equal those of the pieces' texts
//!    joined (a `BREAK` marker counts as the text `BREAK`);
//! 2. extra networks: the remaining text is the prompt with each call `<kind:args>` cut out,
//!    i.e. the lengths add up, and every call is a substring of the prompt;
//! 3. AND: the prompt's non-syntax characters with each whole-word `AND` removed equal those of
//!    the parts' texts joined;
//! 4. chunks: every chunk is 77 tokens (BOS, 75, EOS) with 77 weights, and the tokens between
//!    BOS and EOS, padding removed, are the pieces' tokens in order (a BREAK marker has none);
//! 5. schedule: every scheduled text is a subsequence of the prompt (editing only chooses), the
//!    end steps increase strictly and the last is the steps; a prompt without `[` has the one
//!    entry `(steps, prompt)`.

use kakusan_prompt::{
    and_parts, chunk_text, extract_extra_networks, parse_attention, prompt_schedule, Dialect,
    EmphasisMode, ScheduleOptions, SpecialIds,
};
use proptest::prelude::*;

fn is_syntax(c: char) -> bool {
    matches!(
        c,
        '(' | ')' | '[' | ']' | '{' | '}' | ':' | '|' | '\\' | '.' | '+' | '-'
    ) || c.is_ascii_digit()
        || c.is_whitespace()
        || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn content(s: &str) -> String {
    s.chars().filter(|c| !is_syntax(*c)).collect()
}

fn is_subsequence(small: &str, big: &str) -> bool {
    let mut it = big.chars();
    small.chars().all(|c| it.any(|b| b == c))
}

/// Strings that are mostly prompt syntax, plus any unicode.
fn prompt_strategy() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(":".to_string()),
        Just("|".to_string()),
        Just("\\".to_string()),
        Just(" ".to_string()),
        Just("BREAK".to_string()),
        Just("AND".to_string()),
        Just("<lora:".to_string()),
        Just(">".to_string()),
        Just("1.5".to_string()),
        Just("0.3".to_string()),
        Just("3".to_string()),
        Just("-".to_string()),
        Just("\n".to_string()),
        "[a-c]{1,3}",
        "\\PC{1,2}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

fn check_all(prompt: &str, steps: u32, hires: Option<u32>, old: bool) -> Result<(), TestCaseError> {
    for dialect in [Dialect::A1111, Dialect::NovelAi] {
        let a = parse_attention(prompt, dialect);
        prop_assert!(!a.pieces.is_empty());
        let joined: String = a.pieces.iter().map(|p| p.text.as_str()).collect();
        prop_assert_eq!(content(prompt), content(&joined), "attention lost text");
    }

    // A tokenizer of one token per non-space character (',' is the comma), never the padding id.
    let ids = SpecialIds {
        bos: 1,
        eos: 2,
        pad: 2,
        comma: Some(44),
    };
    let mut tok = |t: &str| -> Vec<u32> {
        t.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| u32::from(c).max(3))
            .collect()
    };
    for mode in [EmphasisMode::Original, EmphasisMode::None] {
        let chunked = chunk_text(prompt, Dialect::A1111, mode, &ids, &mut tok);
        prop_assert!(!chunked.chunks.is_empty());
        let mut got: Vec<u32> = Vec::new();
        for c in &chunked.chunks {
            prop_assert_eq!(c.tokens.len(), 77);
            prop_assert_eq!(c.weights.len(), 77);
            prop_assert_eq!(c.tokens[0], 1);
            prop_assert_eq!(c.tokens[76], 2);
            got.extend(c.tokens[1..76].iter().filter(|&&t| t != 2));
        }
        let pieces = kakusan_prompt::chunks::pieces_for(prompt, Dialect::A1111, mode);
        let want: Vec<u32> = pieces
            .iter()
            .filter(|p| !p.is_break())
            .flat_map(|p| tok(&p.text))
            .collect();
        prop_assert_eq!(got, want, "chunking lost or invented tokens");
    }

    let (text, extra) = extract_extra_networks(prompt);
    let cut: usize = extra
        .calls
        .iter()
        .map(|c| {
            let s = format!("<{}:{}>", c.kind, c.args.join(":"));
            assert!(prompt.contains(&s));
            s.chars().count()
        })
        .sum();
    prop_assert_eq!(text.chars().count() + cut, prompt.chars().count());

    let parts = and_parts(prompt);
    prop_assert!(!parts.is_empty());
    let without_and = {
        let c: Vec<char> = prompt.chars().collect();
        let word = |ch: char| ch == '_' || ch.is_alphanumeric();
        let mut out = String::new();
        let mut i = 0;
        while i < c.len() {
            let is_and = c[i..].starts_with(&['A', 'N', 'D'])
                && (i == 0 || !word(c[i - 1]))
                && (i + 3 == c.len() || !word(c[i + 3]));
            if is_and {
                i += 3;
            } else {
                out.push(c[i]);
                i += 1;
            }
        }
        out
    };
    let joined: String = parts.iter().map(|p| p.text.as_str()).collect();
    prop_assert_eq!(content(&without_and), content(&joined), "AND lost text");

    let opts = ScheduleOptions {
        steps,
        hires_steps: hires,
        old_scheduling: old,
    };
    let schedule = prompt_schedule(prompt, &opts);
    let last = hires.filter(|_| !old).unwrap_or(steps);
    prop_assert_eq!(schedule.last().map(|e| e.0), Some(last));
    prop_assert!(schedule.windows(2).all(|w| w[0].0 < w[1].0));
    for (_, t) in &schedule {
        prop_assert!(is_subsequence(t, prompt), "{t:?} not from {prompt:?}");
    }
    if !prompt.contains('[') {
        prop_assert_eq!(schedule, vec![(last, prompt.to_string())]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn syntax_heavy_prompts(prompt in prompt_strategy(), steps in 0u32..40, hires in prop::option::of(1u32..30), old in any::<bool>()) {
        check_all(&prompt, steps, hires, old)?;
    }

    #[test]
    fn arbitrary_strings(prompt in any::<String>(), steps in 1u32..30) {
        check_all(&prompt, steps, None, false)?;
    }
}

#[test]
fn long_and_deep_inputs() {
    let deep = format!("{}x{}", "(".repeat(5000), "[".repeat(5000));
    check_all(&deep, 20, None, false).unwrap();
    let edits = "[a:b:1]".repeat(2000);
    check_all(&edits, 20, None, false).unwrap();
    let alternations = "[a|b|c]".repeat(200);
    check_all(&alternations, 150, None, false).unwrap();
}
