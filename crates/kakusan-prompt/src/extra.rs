//! Extra networks: `<lora:name:0.8>`, `<lyco:...>`, `<hypernet:...>` (A1111's
//! `extra_networks.parse_prompt`).
//!
//! Every `<word:args>` (`<(\w+):([^>]+)>`) is taken out of the text, whatever the word; the args
//! are split at `:`, and an arg `key=value` (exactly one `=`) is a named parameter. `lora` and
//! its alias `lyco` are LoRA calls: the first positional arg is the name, then the text-encoder
//! multiplier (default 1), the UNet multiplier (default: the text encoder's), the dynamic dim;
//! named `te=`, `unet=`, `dyn=` override them. `hypernet` is recognised and reported as not
//! supported; other words are reported as unknown (A1111 skips them too).

use crate::pychar::{is_space, is_word};
use serde::Serialize;

/// One `<kind:args>` found in the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtraNetworkCall {
    /// The word before the first colon (`lora`, `lyco`, `hypernet`, ...).
    pub kind: String,
    /// The colon-separated arguments as written.
    pub args: Vec<String>,
}

/// A LoRA to apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoraCall {
    pub name: String,
    pub te_weight: f64,
    pub unet_weight: f64,
    pub dyn_dim: Option<i64>,
}

/// What the extra networks of a prompt ask for.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ExtraNetworks {
    /// Every call, in prompt order.
    pub calls: Vec<ExtraNetworkCall>,
    /// The LoRA calls (`lora` and `lyco`) that could be read.
    pub loras: Vec<LoraCall>,
    /// Calls kakusan recognises but does not support, or does not know, or could not read.
    pub problems: Vec<String>,
}

/// Python's `float()` on a string: surrounding whitespace allowed.
fn py_float(s: &str) -> Option<f64> {
    s.trim_matches(is_space).parse().ok()
}

/// Python's `int()` on a string.
fn py_int(s: &str) -> Option<i64> {
    s.trim_matches(is_space).parse().ok()
}

fn lora_call(args: &[String]) -> Result<LoraCall, String> {
    let mut positional = Vec::new();
    let mut named = std::collections::HashMap::new();
    for a in args {
        let parts: Vec<&str> = a.splitn(3, '=').collect();
        if parts.len() == 2 {
            named.insert(parts[0].to_string(), parts[1].to_string());
        } else {
            positional.push(a.clone());
        }
    }
    let name = positional
        .first()
        .cloned()
        .ok_or_else(|| "a lora call without a name".to_string())?;
    let num = |s: &str| py_float(s).ok_or_else(|| format!("lora {name:?}: {s:?} is not a number"));
    let mut te = match positional.get(1) {
        Some(s) => num(s)?,
        None => 1.0,
    };
    if let Some(s) = named.get("te") {
        te = num(s)?;
    }
    let mut unet = match positional.get(2) {
        Some(s) => num(s)?,
        None => te,
    };
    if let Some(s) = named.get("unet") {
        unet = num(s)?;
    }
    let int = |s: &str| py_int(s).ok_or_else(|| format!("lora {name:?}: {s:?} is not an integer"));
    let mut dyn_dim = match positional.get(3) {
        Some(s) => Some(int(s)?),
        None => None,
    };
    if let Some(s) = named.get("dyn") {
        dyn_dim = Some(int(s)?);
    }
    Ok(LoraCall {
        name,
        te_weight: te,
        unet_weight: unet,
        dyn_dim,
    })
}

/// Takes every `<word:args>` out of `prompt`: the remaining text and the calls.
pub fn extract_extra_networks(prompt: &str) -> (String, ExtraNetworks) {
    let c: Vec<char> = prompt.chars().collect();
    let mut text = String::with_capacity(prompt.len());
    let mut found = ExtraNetworks::default();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '<' {
            let mut j = i + 1;
            while j < c.len() && is_word(c[j]) {
                j += 1;
            }
            if j > i + 1 && c.get(j) == Some(&':') {
                if let Some(close) = c[j + 1..].iter().position(|ch| *ch == '>') {
                    if close > 0 {
                        let kind: String = c[i + 1..j].iter().collect();
                        let args: String = c[j + 1..j + 1 + close].iter().collect();
                        let args: Vec<String> = args.split(':').map(str::to_string).collect();
                        match kind.as_str() {
                            "lora" | "lyco" => match lora_call(&args) {
                                Ok(call) => found.loras.push(call),
                                Err(e) => found.problems.push(e),
                            },
                            "hypernet" => found.problems.push(format!(
                                "<hypernet:{}> : hypernetworks are not supported; ignored",
                                args.join(":")
                            )),
                            other => found.problems.push(format!(
                                "<{other}:{}> : unknown extra network {other:?}; removed from the prompt and ignored",
                                args.join(":")
                            )),
                        }
                        found.calls.push(ExtraNetworkCall { kind, args });
                        i = j + 1 + close + 1;
                        continue;
                    }
                }
            }
        }
        text.push(c[i]);
        i += 1;
    }
    (text, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_forms() {
        let (t, e) =
            extract_extra_networks("a <lora:foo:0.8> b<lyco:bar:0.5:0.25:8><lora:baz:unet=0.3>");
        assert_eq!(t, "a  b");
        assert_eq!(e.calls.len(), 3);
        assert_eq!(
            e.loras,
            vec![
                LoraCall {
                    name: "foo".into(),
                    te_weight: 0.8,
                    unet_weight: 0.8,
                    dyn_dim: None
                },
                LoraCall {
                    name: "bar".into(),
                    te_weight: 0.5,
                    unet_weight: 0.25,
                    dyn_dim: Some(8)
                },
                LoraCall {
                    name: "baz".into(),
                    te_weight: 1.0,
                    unet_weight: 0.3,
                    dyn_dim: None
                },
            ]
        );
        assert!(e.problems.is_empty());
    }

    #[test]
    fn hypernet_unknown_and_malformed() {
        let (t, e) =
            extract_extra_networks("<hypernet:x:1> <foo:bar> <lora:x:abc> <:x> <lora:> <lora x:1>");
        assert_eq!(t, "   <:x> <lora:> <lora x:1>");
        assert_eq!(e.problems.len(), 3);
        assert!(e.problems[0].contains("not supported"));
        assert!(e.loras.is_empty());
    }

    #[test]
    fn args_run_to_the_first_closing_angle() {
        let (t, e) = extract_extra_networks("<lora:a<lora:b:1>>");
        assert_eq!(t, ">");
        assert_eq!(e.calls[0].args, vec!["a<lora", "b", "1"]);
    }
}
