//! kakusan-prompt against A1111's own parser: tests/fixtures/prompt_cases.json, written by
//! tools/parity/make_prompt_cases.py from AUTOMATIC1111's modules/prompt_parser.py.

use kakusan_prompt::{
    and_parts, extract_extra_networks, parse_attention, prompt_schedule, Dialect, ScheduleOptions,
};
use serde_json::Value;
use std::path::Path;

fn cases() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/prompt_cases.json");
    let text = std::fs::read_to_string(&path).expect("read prompt_cases.json");
    serde_json::from_str(&text).expect("parse prompt_cases.json")
}

/// Weights are the same f64 operations in the same order as A1111's, so they agree bit for bit;
/// the tolerance only absorbs serde_json's default float parsing, which may be one ulp off
/// (relative 2.2e-16), far inside the 1e-6 that matters for a picture.
fn same_weight(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// Compares our pieces with A1111's `[[text, weight], ...]`; a string says what differs.
fn compare_pieces(prompt: &str, ours: &[(String, f64)], theirs: &Value) -> Result<(), String> {
    let theirs = theirs.as_array().ok_or("not an array")?;
    let theirs: Vec<(String, f64)> = theirs
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_string(),
                p[1].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let same = ours.len() == theirs.len()
        && ours
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.0 == b.0 && same_weight(a.1, b.1));
    if same {
        Ok(())
    } else {
        Err(format!(
            "{prompt:?}:\n  ours   {ours:?}\n  A1111  {theirs:?}"
        ))
    }
}

fn attention(text: &str) -> (Vec<(String, f64)>, Vec<String>) {
    let a = parse_attention(text, Dialect::A1111);
    (
        a.pieces.into_iter().map(|p| (p.text, p.weight)).collect(),
        a.warnings,
    )
}

fn check_attention(text: &str, theirs: &Value, failures: &mut Vec<String>) {
    let (ours, warnings) = attention(text);
    if theirs.get("error").is_some() {
        // A1111 raises; we must not, and must say why the result is not A1111's.
        if warnings.is_empty() {
            failures.push(format!("{text:?}: A1111 raises, we gave no warning"));
        }
    } else if let Err(e) = compare_pieces(text, &ours, theirs) {
        failures.push(format!("attention {e}"));
    }
}

#[test]
fn at_least_eighty_prompts() {
    let c = cases();
    assert!(c["cases"].as_array().unwrap().len() >= 80);
}

#[test]
fn attention_matches_a1111() {
    let c = cases();
    let mut failures = Vec::new();
    for case in c["cases"].as_array().unwrap() {
        check_attention(
            case["prompt"].as_str().unwrap(),
            &case["attention"],
            &mut failures,
        );
    }
    for (text, theirs) in c["attention_of_scheduled_texts"].as_object().unwrap() {
        check_attention(text, theirs, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn schedules_match_a1111() {
    let c = cases();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in c["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        for s in case["schedules"].as_array().unwrap() {
            let opts = ScheduleOptions {
                steps: s["steps"].as_u64().unwrap() as u32,
                hires_steps: s["hires_steps"].as_u64().map(|h| h as u32),
                old_scheduling: s["old"].as_bool().unwrap(),
            };
            let ours = serde_json::to_value(prompt_schedule(prompt, &opts)).unwrap();
            // More than one option: A1111's answer depends on Python's hash seed there.
            let options = s["a1111"].as_array().unwrap();
            if !options.contains(&ours) {
                failures.push(format!(
                    "{prompt:?} {opts:?}:\n  ours  {ours}\n  A1111 {options:?}"
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= 400, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn and_parts_match_a1111() {
    let c = cases();
    let mut failures = Vec::new();
    for case in c["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ours: Vec<(String, f64)> = and_parts(prompt)
            .into_iter()
            .map(|p| (p.text, p.weight))
            .collect();
        if let Err(e) = compare_pieces(prompt, &ours, &case["and"]) {
            failures.push(format!("AND {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn extra_networks_match_a1111() {
    let c = cases();
    let mut failures = Vec::new();
    for case in c["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let (text, found) = extract_extra_networks(prompt);
        let calls: Vec<Value> = found
            .calls
            .iter()
            .map(|c| serde_json::json!([c.kind, c.args]))
            .collect();
        let want = &case["extra_networks"];
        if want["text"] != text || want["calls"] != Value::Array(calls.clone()) {
            failures.push(format!("{prompt:?}: ours {text:?} {calls:?}, A1111 {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
