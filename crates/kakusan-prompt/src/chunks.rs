//! From weighted pieces to the text encoder's input: 77-token chunks (BOS + 75 + EOS) with a
//! weight per token, as A1111's `FrozenCLIPEmbedderWithCustomWords.tokenize_line`, and the
//! emphasis arithmetic on an encoded batch (`sd_emphasis`).
//!
//! The tokenizer is a closure (text to ids, no BOS/EOS), so this module needs no model code:
//! - each piece is tokenized on its own (so `a (b) c` is `a`, `b`, `c` even where BPE would
//!   have merged across the brackets);
//! - a `BREAK` marker closes the current chunk (padded with EOS);
//! - when a chunk is full (75 tokens) and the last comma in it is at most 20 tokens back
//!   (A1111's `comma_padding_backtrack`), the tokens after that comma move to the next chunk;
//! - a textual-inversion embedding found at a position takes its vectors' count of slots and is
//!   never split across chunks;
//! - the last chunk is closed if it holds tokens, or if there is no chunk at all.
//!
//! Emphasis modes (A1111's "Emphasis" option): `Original` multiplies each token's hidden state
//! by its weight, then rescales the whole batch so its mean equals the mean before weighting;
//! `NoNorm` only multiplies; `Ignore` parses the brackets but applies nothing; `None` does not
//! parse the brackets at all (the whole text is one piece of weight 1, `BREAK` included).

use crate::attention::{parse_attention, Dialect, Piece};
use serde::Serialize;

/// Tokens per chunk between BOS and EOS.
pub const CHUNK_LENGTH: usize = 75;
/// How far back (in tokens) a comma may be to move the rest of a full chunk into the next.
pub const COMMA_BACKTRACK: usize = 20;

/// A1111's "Emphasis" setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmphasisMode {
    /// Brackets are text; no weights.
    None,
    /// Brackets are parsed (and removed) but weights are not applied.
    Ignore,
    /// Weights multiply the hidden states, then the batch mean is restored (A1111's default).
    #[default]
    Original,
    /// Weights multiply the hidden states; no mean restoring.
    NoNorm,
}

impl EmphasisMode {
    pub fn name(self) -> &'static str {
        match self {
            EmphasisMode::None => "None",
            EmphasisMode::Ignore => "Ignore",
            EmphasisMode::Original => "Original",
            EmphasisMode::NoNorm => "No norm",
        }
    }

    /// Parses A1111's option names (case-insensitive; `no-norm` / `nonorm` accepted).
    pub fn from_name(name: &str) -> Option<EmphasisMode> {
        match name.to_ascii_lowercase().replace(['-', '_'], " ").as_str() {
            "none" => Some(EmphasisMode::None),
            "ignore" => Some(EmphasisMode::Ignore),
            "original" => Some(EmphasisMode::Original),
            "no norm" | "nonorm" => Some(EmphasisMode::NoNorm),
            _ => None,
        }
    }
}

/// The special ids chunking needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `<|startoftext|>`.
    pub bos: u32,
    /// `<|endoftext|>`: closes and pads chunks.
    pub eos: u32,
    /// What the encoder sees after the first EOS (SD1: the EOS id; SD2: 0).
    pub pad: u32,
    /// The id of `,</w>`, if the vocabulary has it.
    pub comma: Option<u32>,
}

/// A textual-inversion embedding found in the token stream.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingMatch {
    pub name: String,
    /// Vectors it puts into the chunk.
    pub vectors: usize,
    /// Prompt tokens it replaces.
    pub tokens: usize,
}

/// Where an embedding's vectors go in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingFix {
    /// Index in the chunk's 77 tokens.
    pub offset: usize,
    pub name: String,
    pub vectors: usize,
}

/// One 77-token chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    /// BOS, 75 tokens (EOS-padded), EOS. Embedding slots hold 0.
    pub tokens: Vec<u32>,
    /// One weight per token (1 for BOS, EOS and padding).
    pub weights: Vec<f64>,
    pub embeddings: Vec<EmbeddingFix>,
}

impl Chunk {
    /// A chunk with no text: BOS then EOS to the end.
    pub fn empty(ids: &SpecialIds) -> Chunk {
        let mut tokens = vec![ids.bos];
        tokens.resize(CHUNK_LENGTH + 2, ids.eos);
        Chunk {
            tokens,
            weights: vec![1.0; CHUNK_LENGTH + 2],
            embeddings: Vec::new(),
        }
    }

    /// The ids the text encoder gets: after the first EOS, the pad id (A1111's
    /// `process_tokens`; a no-op where pad == EOS, as SD1).
    pub fn encoder_ids(&self, ids: &SpecialIds) -> Vec<u32> {
        let mut out = self.tokens.clone();
        if ids.eos != ids.pad {
            if let Some(first) = out.iter().position(|&t| t == ids.eos) {
                for t in &mut out[first + 1..] {
                    *t = ids.pad;
                }
            }
        }
        out
    }
}

/// The chunks of one text and A1111's token count (what its UI shows as "n/75").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunked {
    pub chunks: Vec<Chunk>,
    pub token_count: usize,
}

/// The weighted pieces chunking works on, as the emphasis mode decides.
pub fn pieces_for(text: &str, dialect: Dialect, mode: EmphasisMode) -> Vec<Piece> {
    if mode == EmphasisMode::None {
        vec![Piece {
            text: text.to_string(),
            weight: 1.0,
        }]
    } else {
        parse_attention(text, dialect).pieces
    }
}

struct Builder<'a> {
    ids: &'a SpecialIds,
    chunks: Vec<Chunk>,
    tokens: Vec<u32>,
    weights: Vec<f64>,
    fixes: Vec<EmbeddingFix>,
    token_count: usize,
    last_comma: Option<usize>,
}

impl Builder<'_> {
    fn next_chunk(&mut self, is_last: bool) {
        self.token_count += if is_last {
            self.tokens.len()
        } else {
            CHUNK_LENGTH
        };
        let mut tokens = Vec::with_capacity(CHUNK_LENGTH + 2);
        tokens.push(self.ids.bos);
        tokens.append(&mut self.tokens);
        let mut weights = Vec::with_capacity(CHUNK_LENGTH + 2);
        weights.push(1.0);
        weights.append(&mut self.weights);
        // Pad to 75 (a chunk can only be longer when an embedding overfilled it, which the
        // caller prevents) then close.
        if tokens.len() < CHUNK_LENGTH + 1 {
            tokens.resize(CHUNK_LENGTH + 1, self.ids.eos);
            weights.resize(CHUNK_LENGTH + 1, 1.0);
        }
        tokens.push(self.ids.eos);
        weights.push(1.0);
        self.chunks.push(Chunk {
            tokens,
            weights,
            embeddings: std::mem::take(&mut self.fixes),
        });
        self.last_comma = None;
    }
}

/// A1111's `tokenize_line` on pieces: `tokenize` gives a text's ids without BOS/EOS,
/// `embedding_at` looks for a textual-inversion embedding starting at a position of a piece's
/// ids (pass `|_, _| None` when there are none).
pub fn chunk_pieces(
    pieces: &[Piece],
    ids: &SpecialIds,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    embedding_at: &mut dyn FnMut(&[u32], usize) -> Option<EmbeddingMatch>,
) -> Chunked {
    let mut b = Builder {
        ids,
        chunks: Vec::new(),
        tokens: Vec::new(),
        weights: Vec::new(),
        fixes: Vec::new(),
        token_count: 0,
        last_comma: None,
    };
    for piece in pieces {
        if piece.is_break() {
            b.next_chunk(false);
            continue;
        }
        let toks = tokenize(&piece.text);
        let weight = piece.weight;
        let mut position = 0;
        while position < toks.len() {
            let token = toks[position];
            if Some(token) == ids.comma {
                b.last_comma = Some(b.tokens.len());
            } else if let Some(comma) = b.last_comma {
                if b.tokens.len() == CHUNK_LENGTH && b.tokens.len() - comma <= COMMA_BACKTRACK {
                    let at = comma + 1;
                    let moved_tokens = b.tokens.split_off(at);
                    let moved_weights = b.weights.split_off(at);
                    b.next_chunk(false);
                    b.tokens = moved_tokens;
                    b.weights = moved_weights;
                }
            }
            if b.tokens.len() == CHUNK_LENGTH {
                b.next_chunk(false);
            }
            match embedding_at(&toks, position) {
                None => {
                    b.tokens.push(token);
                    b.weights.push(weight);
                    position += 1;
                }
                Some(emb) => {
                    if b.tokens.len() + emb.vectors > CHUNK_LENGTH {
                        b.next_chunk(false);
                    }
                    b.fixes.push(EmbeddingFix {
                        offset: b.tokens.len() + 1,
                        name: emb.name.clone(),
                        vectors: emb.vectors,
                    });
                    b.tokens.extend(std::iter::repeat_n(0, emb.vectors));
                    b.weights.extend(std::iter::repeat_n(weight, emb.vectors));
                    // An embedding matching no tokens would loop forever; A1111's never does.
                    position += emb.tokens.max(1);
                }
            }
        }
    }
    if !b.tokens.is_empty() || b.chunks.is_empty() {
        b.next_chunk(true);
    }
    Chunked {
        chunks: b.chunks,
        token_count: b.token_count,
    }
}

/// Chunks of `text` without embeddings: pieces by the emphasis mode, then [`chunk_pieces`].
pub fn chunk_text(
    text: &str,
    dialect: Dialect,
    mode: EmphasisMode,
    ids: &SpecialIds,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
) -> Chunked {
    let pieces = pieces_for(text, dialect, mode);
    chunk_pieces(&pieces, ids, tokenize, &mut |_, _| None)
}

/// Pads every list of chunks with empty chunks to the longest one's count: what A1111 does to
/// the texts encoded in one batch (the schedule's texts), and, with its "pad prompt/negative
/// prompt to the same length" option, to the positive and negative conditioning.
pub fn equalize_chunk_counts(lists: &mut [&mut Vec<Chunk>], ids: &SpecialIds) {
    let n = lists.iter().map(|l| l.len()).max().unwrap_or(0);
    for l in lists.iter_mut() {
        while l.len() < n {
            l.push(Chunk::empty(ids));
        }
    }
}

/// Applies the emphasis `mode` to an encoded batch: `z` holds `weights.len()` tokens of `dim`
/// values each (any batch of chunks, row-major), `weights` one weight per token. `Original`
/// restores the mean of the whole batch, as A1111 (which encodes all of a prompt's scheduled
/// texts, chunk by chunk, in one batch). The means are accumulated in f64.
pub fn apply_emphasis(z: &mut [f32], dim: usize, weights: &[f64], mode: EmphasisMode) {
    if dim == 0 || z.len() != weights.len() * dim {
        return;
    }
    match mode {
        EmphasisMode::None | EmphasisMode::Ignore => {}
        EmphasisMode::NoNorm => multiply_rows(z, dim, weights),
        EmphasisMode::Original => {
            let before = mean(z);
            multiply_rows(z, dim, weights);
            let after = mean(z);
            let scale = (before / after) as f32;
            for v in z.iter_mut() {
                *v *= scale;
            }
        }
    }
}

fn multiply_rows(z: &mut [f32], dim: usize, weights: &[f64]) {
    for (row, &w) in z.chunks_mut(dim).zip(weights) {
        let w = w as f32;
        for v in row {
            *v *= w;
        }
    }
}

fn mean(z: &[f32]) -> f64 {
    if z.is_empty() {
        return 0.0;
    }
    z.iter().map(|&v| f64::from(v)).sum::<f64>() / z.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: SpecialIds = SpecialIds {
        bos: 1000,
        eos: 1001,
        pad: 1001,
        comma: Some(5),
    };

    /// One token per character: 'a'..'z' -> 10.., ',' -> 5.
    fn tok(text: &str) -> Vec<u32> {
        text.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| {
                if c == ',' {
                    5
                } else {
                    10 + (c as u32 - 'a' as u32)
                }
            })
            .collect()
    }

    fn chunk(text: &str) -> Chunked {
        chunk_text(text, Dialect::A1111, EmphasisMode::Original, &IDS, &mut tok)
    }

    #[test]
    fn short_prompt_is_one_padded_chunk() {
        let c = chunk("ab (c)");
        assert_eq!(c.chunks.len(), 1);
        assert_eq!(c.token_count, 3);
        let ch = &c.chunks[0];
        assert_eq!(ch.tokens.len(), 77);
        assert_eq!(&ch.tokens[..5], &[1000, 10, 11, 12, 1001]);
        assert!(ch.tokens[4..].iter().all(|&t| t == 1001));
        assert_eq!(&ch.weights[..5], &[1.0, 1.0, 1.0, 1.1, 1.0]);
    }

    #[test]
    fn empty_prompt_is_one_empty_chunk() {
        let c = chunk("");
        assert_eq!(c.chunks, vec![Chunk::empty(&IDS)]);
        assert_eq!(c.token_count, 0);
    }

    #[test]
    fn comma_backtracking_moves_the_tail() {
        // 70 letters, a comma, 10 letters: the chunk fills at 75 with the comma 5 back, so
        // the 4 letters after the comma move on.
        let text = format!("{},{}", "a".repeat(70), "b".repeat(10));
        let c = chunk(&text);
        assert_eq!(c.chunks.len(), 2);
        assert_eq!(c.chunks[0].tokens[71], 5);
        assert_eq!(c.chunks[0].tokens[72], 1001);
        assert_eq!(&c.chunks[1].tokens[1..11], &[11; 10]);
        // Comma too far back (30 tokens): a hard cut at 75.
        let text = format!("{},{}", "a".repeat(44), "b".repeat(40));
        let c = chunk(&text);
        assert_eq!(c.chunks[0].tokens[75], 11);
        assert_eq!(c.token_count, 75 + 10);
    }

    #[test]
    fn break_pads_the_chunk() {
        let c = chunk("ab BREAK c");
        assert_eq!(c.chunks.len(), 2);
        assert_eq!(c.chunks[1].tokens[1], 12);
        assert_eq!(c.token_count, 75 + 1);
    }

    #[test]
    fn embeddings_do_not_straddle_chunks() {
        let pieces = vec![Piece {
            text: "a".repeat(73) + "z",
            weight: 1.2,
        }];
        let c = chunk_pieces(&pieces, &IDS, &mut tok, &mut |toks, pos| {
            (toks[pos] == 35).then(|| EmbeddingMatch {
                name: "zz".into(),
                vectors: 4,
                tokens: 1,
            })
        });
        assert_eq!(c.chunks.len(), 2);
        assert_eq!(c.chunks[1].embeddings[0].offset, 1);
        assert_eq!(&c.chunks[1].tokens[1..6], &[0, 0, 0, 0, 1001]);
        assert_eq!(c.chunks[1].weights[4], 1.2);
    }

    #[test]
    fn sd2_pad_after_first_eos() {
        let ids = SpecialIds { pad: 0, ..IDS };
        let c = chunk("ab");
        let e = c.chunks[0].encoder_ids(&ids);
        assert_eq!(&e[..5], &[1000, 10, 11, 1001, 0]);
    }

    #[test]
    fn emphasis_original_restores_mean() {
        let mut z = vec![1.0f32, 2.0, 3.0, 4.0];
        apply_emphasis(&mut z, 2, &[1.0, 2.0], EmphasisMode::Original);
        // before: mean 2.5; after weighting: 1,2,6,8 mean 4.25; scale 2.5/4.25.
        let s = 2.5 / 4.25;
        let want = [s, 2.0 * s, 6.0 * s, 8.0 * s];
        for (a, b) in z.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6);
        }
        let mut z = vec![1.0f32, 2.0, 3.0, 4.0];
        apply_emphasis(&mut z, 2, &[1.0, 2.0], EmphasisMode::NoNorm);
        assert_eq!(z, vec![1.0, 2.0, 6.0, 8.0]);
    }
}
