//! Reads JSON lines `{"prompt": ..., "steps": N, "hires_steps": M|null, "old": bool}` on stdin
//! and prints, per line, the schedule, the attention pieces of the prompt and the AND parts as
//! JSON. Used by tools/parity/fuzz_prompt.py to compare with A1111's parser on random prompts.

use kakusan_prompt::{and_parts, parse_attention, prompt_schedule, Dialect, ScheduleOptions};
use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let prompt = v["prompt"].as_str().unwrap_or_default();
        let opts = ScheduleOptions {
            steps: v["steps"].as_u64().unwrap_or(20) as u32,
            hires_steps: v["hires_steps"].as_u64().map(|h| h as u32),
            old_scheduling: v["old"].as_bool().unwrap_or(false),
        };
        let schedule = prompt_schedule(prompt, &opts);
        let attention: Vec<(String, f64)> = parse_attention(prompt, Dialect::A1111)
            .pieces
            .into_iter()
            .map(|p| (p.text, p.weight))
            .collect();
        let and: Vec<(String, f64)> = and_parts(prompt)
            .into_iter()
            .map(|p| (p.text, p.weight))
            .collect();
        let j = serde_json::json!({"schedule": schedule, "attention": attention, "and": and});
        let _ = writeln!(out, "{j}");
    }
}
