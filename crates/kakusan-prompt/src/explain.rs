//! Everything the model will get from a prompt, in one serialisable value: what
//! `kakusan prompt explain` prints.
//!
//! Stages, in A1111's order: extra networks (`<lora:...>`) leave the positive prompt; the rest
//! is split at `AND`; each part gets its schedule; each scheduled text is parsed for emphasis
//! and cut into chunks. The texts of one part's schedule are padded to the same chunk count (A1111
//! encodes them as one batch). The negative prompt has no `AND` and keeps `<...>` as text (A1111
//! parses extra networks in the positive prompt only). Positive and negative are then padded
//! to the same chunk count with empty chunks (A1111's "pad prompt/negative prompt to be same
//! length" option, which kakusan always applies).

use crate::attention::Dialect;
use crate::chunks::{
    chunk_pieces, equalize_chunk_counts, Chunk, EmbeddingMatch, EmphasisMode, SpecialIds,
};
use crate::compose::and_parts;
use crate::extra::{extract_extra_networks, ExtraNetworks};
use crate::schedule::{prompt_schedule, ScheduleOptions};
use serde::Serialize;

/// How to read the prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExplainOptions {
    pub schedule: ScheduleOptions,
    pub dialect: Dialect,
    pub emphasis: EmphasisMode,
}

/// One chunk as the text encoder gets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedChunk {
    /// 77 ids (after SD2's pad replacement).
    pub ids: Vec<u32>,
    /// The vocabulary's spelling of each id (`"a</w>"`); `"<embedding:name>"` in embedding
    /// slots.
    pub tokens: Vec<String>,
    /// One weight per id.
    pub weights: Vec<f64>,
}

/// One schedule entry: a plain text and what it becomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedEntry {
    pub end_step: u32,
    pub text: String,
    /// `[text, weight]` pairs; `["BREAK", -1]` is a chunk break.
    pub pieces: Vec<(String, f64)>,
    /// A1111's token count for this text (its UI's "n/75").
    pub token_count: usize,
    pub chunks: Vec<ExplainedChunk>,
}

/// One prompt (an `AND` part, or the negative prompt).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedPrompt {
    pub text: String,
    /// The `AND` weight (1 for the negative prompt).
    pub weight: f64,
    /// `[end_step, text]` pairs.
    pub schedule: Vec<(u32, String)>,
    pub entries: Vec<ExplainedEntry>,
}

/// The whole explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explained {
    pub prompt: String,
    pub dialect: &'static str,
    pub emphasis: &'static str,
    pub steps: u32,
    pub hires_steps: Option<u32>,
    pub old_scheduling: bool,
    /// The positive prompt without its extra networks.
    pub text: String,
    pub extra_networks: ExtraNetworks,
    /// The `AND` parts of `text`.
    pub and: Vec<ExplainedPrompt>,
    pub negative: Option<ExplainedPrompt>,
    pub warnings: Vec<String>,
}

fn explain_one(
    text: &str,
    weight: f64,
    opts: &ExplainOptions,
    ids: &SpecialIds,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    embedding_at: &mut dyn FnMut(&[u32], usize) -> Option<EmbeddingMatch>,
    warnings: &mut Vec<String>,
) -> (ExplainedPrompt, Vec<Vec<Chunk>>) {
    let schedule = prompt_schedule(text, &opts.schedule);
    let mut entries = Vec::new();
    let mut chunk_lists = Vec::new();
    for (end_step, entry_text) in &schedule {
        let pieces = if opts.emphasis == EmphasisMode::None {
            crate::chunks::pieces_for(entry_text, opts.dialect, opts.emphasis)
        } else {
            let a = crate::attention::parse_attention(entry_text, opts.dialect);
            for w in a.warnings {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            a.pieces
        };
        let chunk_input = crate::chunks::pieces_for(entry_text, opts.dialect, opts.emphasis);
        let chunked = chunk_pieces(&chunk_input, ids, tokenize, embedding_at);
        entries.push(ExplainedEntry {
            end_step: *end_step,
            text: entry_text.clone(),
            pieces: pieces.into_iter().map(|p| (p.text, p.weight)).collect(),
            token_count: chunked.token_count,
            chunks: Vec::new(),
        });
        chunk_lists.push(chunked.chunks);
    }
    {
        let mut refs: Vec<&mut Vec<Chunk>> = chunk_lists.iter_mut().collect();
        equalize_chunk_counts(&mut refs, ids);
    }
    (
        ExplainedPrompt {
            text: text.to_string(),
            weight,
            schedule,
            entries,
        },
        chunk_lists,
    )
}

fn fill_chunks(
    p: &mut ExplainedPrompt,
    lists: Vec<Vec<Chunk>>,
    ids: &SpecialIds,
    token_string: &dyn Fn(u32) -> Option<String>,
) {
    for (entry, chunks) in p.entries.iter_mut().zip(lists) {
        entry.chunks = chunks
            .iter()
            .map(|c| {
                let encoder_ids = c.encoder_ids(ids);
                let mut tokens: Vec<String> = encoder_ids
                    .iter()
                    .map(|&id| token_string(id).unwrap_or_else(|| format!("<id {id}>")))
                    .collect();
                for fix in &c.embeddings {
                    for t in tokens.iter_mut().skip(fix.offset).take(fix.vectors) {
                        *t = format!("<embedding:{}>", fix.name);
                    }
                }
                ExplainedChunk {
                    ids: encoder_ids,
                    tokens,
                    weights: c.weights.clone(),
                }
            })
            .collect();
    }
}

/// Explains `prompt` (and `negative`): `tokenize` gives a text's ids without BOS/EOS,
/// `token_string` an id's spelling.
pub fn explain(
    prompt: &str,
    negative: Option<&str>,
    opts: &ExplainOptions,
    ids: &SpecialIds,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    token_string: &dyn Fn(u32) -> Option<String>,
) -> Explained {
    explain_with_embeddings(
        prompt,
        negative,
        opts,
        ids,
        tokenize,
        token_string,
        &mut |_, _| None,
    )
}

/// [`explain`] with textual-inversion embeddings: `embedding_at` finds an embedding starting
/// at a position of a piece's ids (as [`chunk_pieces`]); its slots show as
/// `<embedding:name>` tokens.
pub fn explain_with_embeddings(
    prompt: &str,
    negative: Option<&str>,
    opts: &ExplainOptions,
    ids: &SpecialIds,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    token_string: &dyn Fn(u32) -> Option<String>,
    embedding_at: &mut dyn FnMut(&[u32], usize) -> Option<EmbeddingMatch>,
) -> Explained {
    let mut warnings = Vec::new();
    let (text, extra) = extract_extra_networks(prompt);
    if !crate::schedule::parses(&text) && text.contains(['[', '|']) {
        warnings.push(
            "the prompt does not match A1111's prompt-editing grammar (an unbalanced `|`, or a \
             backslash at the end): no [a:b:n] edit or [a|b] alternation applies"
                .to_string(),
        );
    }
    let mut parts = Vec::new();
    let mut lists = Vec::new();
    for part in and_parts(&text) {
        let (p, l) = explain_one(
            &part.text,
            part.weight,
            opts,
            ids,
            tokenize,
            embedding_at,
            &mut warnings,
        );
        parts.push(p);
        lists.push(l);
    }
    let mut neg =
        negative.map(|n| explain_one(n, 1.0, opts, ids, tokenize, embedding_at, &mut warnings));
    // Positive and negative to the same chunk count (every AND part's entries against the
    // negative's).
    if let Some((_, neg_lists)) = neg.as_mut() {
        let mut all: Vec<&mut Vec<Chunk>> = lists.iter_mut().flatten().collect();
        all.extend(neg_lists.iter_mut());
        equalize_chunk_counts(&mut all, ids);
    }
    for (p, l) in parts.iter_mut().zip(lists) {
        fill_chunks(p, l, ids, token_string);
    }
    let negative = neg.map(|(mut p, l)| {
        fill_chunks(&mut p, l, ids, token_string);
        p
    });
    Explained {
        prompt: prompt.to_string(),
        dialect: opts.dialect.name(),
        emphasis: opts.emphasis.name(),
        steps: opts.schedule.steps,
        hires_steps: opts.schedule.hires_steps,
        old_scheduling: opts.schedule.old_scheduling,
        text,
        extra_networks: extra,
        and: parts,
        negative,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_every_stage() {
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
        let opts = ExplainOptions {
            schedule: ScheduleOptions::new(4),
            dialect: Dialect::A1111,
            emphasis: EmphasisMode::Original,
        };
        let long_negative = "x".repeat(80);
        let e = explain(
            "a [b:c:2] (d) <lora:L:0.5> AND e :0.7",
            Some(&long_negative),
            &opts,
            &ids,
            &mut tok,
            &|id| char::from_u32(id).map(|c| c.to_string()),
        );
        assert_eq!(e.text, "a [b:c:2] (d)  AND e :0.7");
        assert_eq!(e.extra_networks.loras[0].name, "L");
        assert_eq!(e.and.len(), 2);
        assert_eq!(e.and[1].weight, 0.7);
        assert_eq!(
            e.and[0].schedule,
            vec![(2, "a b (d)".to_string()), (4, "a c (d)".to_string())]
        );
        assert_eq!(e.and[0].entries[0].pieces[1], ("d".to_string(), 1.1));
        // The negative needs two chunks, so every positive entry is padded to two.
        assert_eq!(e.negative.as_ref().unwrap().entries[0].chunks.len(), 2);
        assert!(e
            .and
            .iter()
            .all(|p| p.entries.iter().all(|x| x.chunks.len() == 2)));
        let c = &e.and[0].entries[0].chunks[0];
        assert_eq!((c.ids.len(), c.tokens.len(), c.weights.len()), (77, 77, 77));
        assert_eq!(c.tokens[1], "a");
    }
}
