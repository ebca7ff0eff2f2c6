//! Prompt editing `[from:to:when]` and alternation `[a|b|c]`: a prompt becomes a schedule of
//! plain prompts, as A1111's `get_learned_conditioning_prompt_schedules`.
//!
//! A1111 parses with a Lark Earley grammar and falls back to the whole prompt, unchanged, for
//! every step when the grammar does not match. This module is a hand-written parser for the same
//! language:
//! - a group is `(p)`, `(p:p)`, `[p]`, `[p:N]`, `[p:p:N]` (whitespace allowed around `N`) or
//!   `[p|p|...]` (options may be empty); inside a group every bracket must belong to a group;
//! - at the top level a `(`, `[`, `)`, `]` or `:` that does not start or belong to a group is
//!   plain text; a group is taken wherever one parses;
//! - `|` outside an alternation, or a backslash at the end or before a newline, make the whole
//!   prompt not match (then it is used as it is, for all steps);
//! - `N` is Lark's `SIGNED_NUMBER` (`1`, `-2`, `0.5`, `.5`, `5.`, `1e3`, `2.5E-1`).
//!
//! Step arithmetic (A1111 1.6+, "new" scheduling, the default): a number with a `.` is a fraction
//! of the steps, one without is a step number; with hires steps, fractions count from 1.0 and
//! step numbers from the first pass's steps. The old scheduling ("use_old_scheduling") reads
//! numbers below 1 as fractions. The step is truncated toward zero and capped at the steps;
//! steps below 1 are not schedule points (the edit is then always "to").
//!
//! Nesting deeper than [`MAX_DEPTH`] groups counts as not matching (A1111 itself fails with a
//! Python recursion error long before).

use crate::pychar::{is_digit, is_space};

/// Deeper nesting is treated as a prompt that does not match the grammar.
pub const MAX_DEPTH: usize = 200;

/// How numbers in `[a:b:N]` become steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// The steps the schedule covers (A1111: the first pass's total steps).
    pub steps: u32,
    /// For the hires pass: its steps (then `steps` is the first pass's).
    pub hires_steps: Option<u32>,
    /// A1111's "use old prompt editing timelines" option.
    pub old_scheduling: bool,
}

impl ScheduleOptions {
    pub fn new(steps: u32) -> ScheduleOptions {
        ScheduleOptions {
            steps,
            hires_steps: None,
            old_scheduling: false,
        }
    }
}

/// One entry of a schedule: the text is used up to and including `end_step`.
pub type ScheduleEntry = (u32, String);

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Lit(String),
    Scheduled {
        before: Vec<Item>,
        after: Vec<Item>,
        when: String,
    },
    Alternate(Vec<Vec<Item>>),
}

struct Parser<'a> {
    c: &'a [char],
}

impl Parser<'_> {
    fn top(&self) -> Option<Vec<Item>> {
        let c = self.c;
        let mut out = Vec::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '(' | '[' => match self.group(i, 1) {
                    Some((items, end)) => {
                        out.extend(items);
                        i = end;
                    }
                    None => {
                        out.push(Item::Lit(c[i].to_string()));
                        i += 1;
                    }
                },
                ')' | ']' | ':' => {
                    out.push(Item::Lit(c[i].to_string()));
                    i += 1;
                }
                '|' => return None,
                '\\' => {
                    let end = self.escape(i)?;
                    out.push(Item::Lit(c[i..end].iter().collect()));
                    i = end;
                }
                _ => {
                    let end = self.plain(i);
                    out.push(Item::Lit(c[i..end].iter().collect()));
                    i = end;
                }
            }
        }
        Some(out)
    }

    /// End of a run of plain characters (no specials, no backslash) starting at `i`.
    fn plain(&self, mut i: usize) -> usize {
        while i < self.c.len() && !matches!(self.c[i], '\\' | '[' | ']' | '(' | ')' | ':' | '|') {
            i += 1;
        }
        i
    }

    /// `\x` (any character but a newline); `None` for a backslash at the end or before `\n`.
    fn escape(&self, i: usize) -> Option<usize> {
        match self.c.get(i + 1) {
            Some('\n') | None => None,
            Some(_) => Some(i + 2),
        }
    }

    /// A `prompt`: items up to the first `)`, `]`, `:` or `|` outside groups (or the end).
    fn seq(&self, mut i: usize, depth: usize) -> Option<(Vec<Item>, usize)> {
        let c = self.c;
        let mut out = Vec::new();
        while i < c.len() {
            match c[i] {
                '(' | '[' => {
                    let (items, end) = self.group(i, depth + 1)?;
                    out.extend(items);
                    i = end;
                }
                ')' | ']' | ':' | '|' => break,
                '\\' => {
                    let end = self.escape(i)?;
                    out.push(Item::Lit(c[i..end].iter().collect()));
                    i = end;
                }
                _ => {
                    let end = self.plain(i);
                    out.push(Item::Lit(c[i..end].iter().collect()));
                    i = end;
                }
            }
        }
        Some((out, i))
    }

    /// A group starting at the bracket at `i`; its items and the index after it.
    fn group(&self, i: usize, depth: usize) -> Option<(Vec<Item>, usize)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let c = self.c;
        let lit = |s: &str| Item::Lit(s.to_string());
        let (first, j) = self.seq(i + 1, depth)?;
        let at = |k: usize| c.get(k).copied();
        if c[i] == '(' {
            let mut items = vec![lit("(")];
            items.extend(first);
            return match at(j) {
                Some(')') => {
                    items.push(lit(")"));
                    Some((items, j + 1))
                }
                Some(':') => {
                    let (second, k) = self.seq(j + 1, depth)?;
                    if at(k) != Some(')') {
                        return None;
                    }
                    items.push(lit(":"));
                    items.extend(second);
                    items.push(lit(")"));
                    Some((items, k + 1))
                }
                _ => None,
            };
        }
        match at(j) {
            Some(']') => {
                let mut items = vec![lit("[")];
                items.extend(first);
                items.push(lit("]"));
                Some((items, j + 1))
            }
            Some('|') => {
                let mut options = vec![first];
                let mut k = j;
                loop {
                    let (option, end) = self.seq(k + 1, depth)?;
                    options.push(option);
                    match at(end) {
                        Some('|') => k = end,
                        Some(']') => return Some((vec![Item::Alternate(options)], end + 1)),
                        _ => return None,
                    }
                }
            }
            Some(':') => {
                if let Some((when, end)) = self.number_tail(j + 1) {
                    let item = Item::Scheduled {
                        before: Vec::new(),
                        after: first,
                        when,
                    };
                    return Some((vec![item], end));
                }
                let (second, k) = self.seq(j + 1, depth)?;
                if at(k) != Some(':') {
                    return None;
                }
                let (when, end) = self.number_tail(k + 1)?;
                let item = Item::Scheduled {
                    before: first,
                    after: second,
                    when,
                };
                Some((vec![item], end))
            }
            _ => None,
        }
    }

    /// `[WHITESPACE] NUMBER [WHITESPACE] "]"` from `i`: the number's text and the index after `]`.
    fn number_tail(&self, mut i: usize) -> Option<(String, usize)> {
        let c = self.c;
        while i < c.len() && is_space(c[i]) {
            i += 1;
        }
        let end = signed_number(c, i)?;
        let number: String = c[i..end].iter().collect();
        let mut k = end;
        while k < c.len() && is_space(c[k]) {
            k += 1;
        }
        (c.get(k) == Some(&']')).then_some((number, k + 1))
    }
}

/// Lark's `SIGNED_NUMBER` regex matched at `i` (its alternatives in Lark's order: `INT _EXP`,
/// `DECIMAL _EXP?`, `INT`); the end of the match.
fn signed_number(c: &[char], i: usize) -> Option<usize> {
    let digits = |mut k: usize| {
        let s = k;
        while k < c.len() && is_digit(c[k]) {
            k += 1;
        }
        (k > s).then_some(k)
    };
    let exp = |k: usize| -> Option<usize> {
        if !matches!(c.get(k), Some('e' | 'E')) {
            return None;
        }
        let mut k = k + 1;
        if matches!(c.get(k), Some('+' | '-')) {
            k += 1;
        }
        digits(k)
    };
    let mut k = i;
    if matches!(c.get(k), Some('+' | '-')) {
        k += 1;
    }
    // INT _EXP
    if let Some(e) = digits(k).and_then(exp) {
        return Some(e);
    }
    // DECIMAL _EXP?  with DECIMAL: INT "." INT? | "." INT
    let decimal = match digits(k) {
        Some(d) if c.get(d) == Some(&'.') => Some(digits(d + 1).unwrap_or(d + 1)),
        Some(_) => None,
        None if c.get(k) == Some(&'.') => digits(k + 1),
        None => None,
    };
    if let Some(d) = decimal {
        return Some(exp(d).unwrap_or(d));
    }
    // INT
    digits(k)
}

struct Steps {
    steps: i64,
    int_offset: f64,
    flt_offset: f64,
    old: bool,
}

impl Steps {
    fn new(o: &ScheduleOptions) -> Steps {
        match o.hires_steps {
            Some(h) if !o.old_scheduling => Steps {
                steps: i64::from(h),
                int_offset: f64::from(o.steps),
                flt_offset: 1.0,
                old: false,
            },
            _ => Steps {
                steps: i64::from(o.steps),
                int_offset: 0.0,
                flt_offset: 0.0,
                old: o.old_scheduling,
            },
        }
    }

    /// The step a `[a:b:N]` switches after (may be below 1: then it never shows `a`).
    fn when(&self, number: &str) -> i64 {
        // `number` matched SIGNED_NUMBER, which Rust's float syntax accepts; 0 is unreachable.
        let v: f64 = number.parse().unwrap_or(0.0);
        let steps = self.steps as f64;
        let v = if self.old {
            if v < 1.0 {
                v * steps
            } else {
                v
            }
        } else if number.contains('.') {
            (v - self.flt_offset) * steps
        } else {
            v - self.int_offset
        };
        // Python's int() truncates toward zero; `as` does too, and saturates where Python
        // would raise on infinity.
        (v as i64).min(self.steps)
    }
}

fn collect(items: &[Item], s: &Steps, points: &mut Vec<i64>, alternates: &mut bool) {
    for item in items {
        match item {
            Item::Lit(_) => {}
            Item::Scheduled {
                before,
                after,
                when,
            } => {
                let w = s.when(when);
                if w >= 1 {
                    points.push(w);
                }
                collect(before, s, points, alternates);
                collect(after, s, points, alternates);
            }
            Item::Alternate(options) => {
                *alternates = true;
                for o in options {
                    collect(o, s, points, alternates);
                }
            }
        }
    }
}

fn render(items: &[Item], step: i64, s: &Steps, out: &mut String) {
    for item in items {
        match item {
            Item::Lit(t) => out.push_str(t),
            Item::Scheduled {
                before,
                after,
                when,
            } => {
                let chosen = if step <= s.when(when) { before } else { after };
                render(chosen, step, s, out);
            }
            Item::Alternate(options) => {
                let n = options.len() as i64;
                let k = (step - 1).rem_euclid(n) as usize;
                render(&options[k], step, s, out);
            }
        }
    }
}

/// The schedule of `prompt`: `(end_step, text)` pairs in increasing `end_step`; the last entry
/// ends at the steps (the hires steps for a hires schedule).
///
/// At sampling step `i` (counting model evaluations from 0, as A1111's denoiser does) the text
/// is the first entry's with `i <= end_step` (see [`text_at`]).
pub fn prompt_schedule(prompt: &str, options: &ScheduleOptions) -> Vec<ScheduleEntry> {
    let s = Steps::new(options);
    let chars: Vec<char> = prompt.chars().collect();
    let whole = || vec![(clamp_u32(s.steps), prompt.to_string())];
    let Some(items) = (Parser { c: &chars }).top() else {
        return whole();
    };
    let mut points = vec![s.steps];
    let mut alternates = false;
    collect(&items, &s, &mut points, &mut alternates);
    if alternates {
        points.extend(1..=s.steps);
    }
    points.sort_unstable();
    points.dedup();
    points
        .into_iter()
        .map(|t| {
            let mut text = String::new();
            render(&items, t, &s, &mut text);
            (clamp_u32(t), text)
        })
        .collect()
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// Does `prompt` match the editing grammar? (When not, its schedule is the prompt as it is.)
pub fn parses(prompt: &str) -> bool {
    let chars: Vec<char> = prompt.chars().collect();
    (Parser { c: &chars }).top().is_some()
}

/// The entry in force at sampling step `step` (0-based count of model evaluations): the first
/// with `step <= end_step`, else the first entry (A1111's `reconstruct_cond_batch`).
pub fn text_at(schedule: &[ScheduleEntry], step: u32) -> Option<&str> {
    schedule
        .iter()
        .find(|(end, _)| step <= *end)
        .or_else(|| schedule.first())
        .map(|(_, t)| t.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Vec<(u32, String)> {
        prompt_schedule(p, &ScheduleOptions::new(10))
    }

    fn v(items: &[(u32, &str)]) -> Vec<(u32, String)> {
        items.iter().map(|(s, t)| (*s, t.to_string())).collect()
    }

    // A1111's doctests (the one marked "not handling this right now" is replaced by what
    // A1111's code really returns with its pinned Lark 1.1.2: the whole prompt).
    #[test]
    fn a1111_doctests() {
        assert_eq!(g("test"), v(&[(10, "test")]));
        assert_eq!(g("a [b:3]"), v(&[(3, "a "), (10, "a b")]));
        assert_eq!(g("a [b: 3]"), v(&[(3, "a "), (10, "a b")]));
        assert_eq!(g("a [[[b]]:2]"), v(&[(2, "a "), (10, "a [[b]]")]));
        assert_eq!(g("[(a:2):3]"), v(&[(3, ""), (10, "(a:2)")]));
        assert_eq!(g("a [b : c : 1] d"), v(&[(1, "a b  d"), (10, "a  c  d")]));
        assert_eq!(
            g("a[b:[c:d:2]:1]e"),
            v(&[(1, "abe"), (2, "ace"), (10, "ade")])
        );
        assert_eq!(g("a [unbalanced"), v(&[(10, "a [unbalanced")]));
        assert_eq!(g("a [b:.5] c"), v(&[(5, "a  c"), (10, "a b c")]));
        assert_eq!(g("a [{b|d{:.5] c"), v(&[(10, "a [{b|d{:.5] c")]));
        assert_eq!(
            g("((a][:b:c [d:3]"),
            v(&[(3, "((a][:b:c "), (10, "((a][:b:c d")])
        );
        let alt: Vec<(u32, String)> = (1..=10)
            .map(|i| (i, if i % 2 == 1 { "a" } else { "(b:1.1)" }.to_string()))
            .collect();
        assert_eq!(g("[a|(b:1.1)]"), alt);
        let fe: Vec<(u32, String)> = (1..=10)
            .map(|i| (i, if i % 2 == 1 { "female" } else { "male" }.to_string()))
            .collect();
        assert_eq!(g("[fe|]male"), fe);
        let fe4: Vec<(u32, String)> = (1..=10)
            .map(|i| (i, if i % 4 == 1 { "female" } else { "male" }.to_string()))
            .collect();
        assert_eq!(g("[fe|||]male"), fe4);
        let hires = ScheduleOptions {
            steps: 10,
            hires_steps: Some(10),
            old_scheduling: false,
        };
        assert_eq!(prompt_schedule("a [b:.5] c", &hires), v(&[(10, "a b c")]));
        assert_eq!(
            prompt_schedule("a [b:1.5] c", &hires),
            v(&[(5, "a  c"), (10, "a b c")])
        );
    }

    #[test]
    fn new_and_old_scheduling_differ_on_one_point_zero() {
        // "1.0" has a dot: a fraction (all steps) in the new scheduling, step 1 in the old.
        assert_eq!(g("[a:b:1.0]"), v(&[(10, "a")]));
        let old = ScheduleOptions {
            old_scheduling: true,
            ..ScheduleOptions::new(10)
        };
        assert_eq!(
            prompt_schedule("[a:b:1.0]", &old),
            v(&[(1, "a"), (10, "b")])
        );
    }

    #[test]
    fn numbers() {
        let c: Vec<char> = "1e5 1.e5 .5 5. -3 1e 1.5.5".chars().collect();
        assert_eq!(signed_number(&c, 0), Some(3));
        assert_eq!(signed_number(&c, 4), Some(8));
        assert_eq!(signed_number(&c, 9), Some(11));
        assert_eq!(signed_number(&c, 12), Some(14));
        assert_eq!(signed_number(&c, 15), Some(17));
        assert_eq!(signed_number(&c, 18), Some(19));
        assert_eq!(signed_number(&c, 21), Some(24));
        for s in ["1e5", "1.e5", ".5", "5.", "-3", "+2.5E-1"] {
            assert!(s.parse::<f64>().is_ok(), "{s}");
        }
    }

    #[test]
    fn step_lookup_is_a1111s() {
        let s = g("a [b:3]");
        assert_eq!(text_at(&s, 0), Some("a "));
        assert_eq!(text_at(&s, 3), Some("a "));
        assert_eq!(text_at(&s, 4), Some("a b"));
        assert_eq!(text_at(&s, 99), Some("a "));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let p = format!("{}a{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(prompt_schedule(&p, &ScheduleOptions::new(5)), vec![(5, p)]);
    }
}
