//! Textual-inversion embeddings in prompts, as A1111's `EmbeddingDatabase`: each embedding's
//! name is tokenized; where a prompt piece's tokens start with a name's tokens (the longest
//! name first), those tokens are replaced by the embedding's vectors at the text encoder's
//! input (its token embeddings, before the position embeddings are added). A name that matches
//! no embedding is plain text; a name whose file was refused (a pickle, a wrong width) is plain
//! text with a warning saying why.

use candle_core::{DType, Tensor};
use kakusan_models::clip::{ClipTextModel, Tokenizer};
use kakusan_models::weights::EmbeddingLibrary;
use kakusan_prompt::chunks::{Chunk, EmbeddingMatch};

use crate::error::{PipelineError, Result};

/// One name the prompt can use.
#[derive(Debug, Clone)]
struct Entry {
    ids: Vec<u32>,
    name: String,
    /// The number of vectors, or `None` for a refused file.
    vectors: Option<usize>,
}

/// The embeddings a model's prompts can use.
#[derive(Debug, Clone, Default)]
pub struct PromptEmbeddings {
    library: EmbeddingLibrary,
    /// Longest token sequence first (A1111's lookup order).
    entries: Vec<Entry>,
}

impl PromptEmbeddings {
    pub fn new(library: EmbeddingLibrary, tokenizer: &Tokenizer) -> Self {
        let mut entries: Vec<Entry> = library
            .embeddings
            .values()
            .map(|e| Entry {
                ids: tokenizer.encode(&e.name),
                name: e.name.clone(),
                vectors: Some(e.len()),
            })
            .chain(library.refused.keys().map(|name| Entry {
                ids: tokenizer.encode(name),
                name: name.clone(),
                vectors: None,
            }))
            .filter(|e| !e.ids.is_empty())
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.ids.len()));
        PromptEmbeddings { library, entries }
    }

    pub fn library(&self) -> &EmbeddingLibrary {
        &self.library
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The embedding whose name starts at `toks[pos]`, if any; a refused one adds a warning
    /// (once) and is `None`.
    pub fn find_at(
        &self,
        toks: &[u32],
        pos: usize,
        warnings: &mut Vec<String>,
    ) -> Option<EmbeddingMatch> {
        let rest = toks.get(pos..)?;
        let entry = self.entries.iter().find(|e| rest.starts_with(&e.ids))?;
        match entry.vectors {
            Some(vectors) => Some(EmbeddingMatch {
                name: entry.name.clone(),
                vectors,
                tokens: entry.ids.len(),
            }),
            None => {
                let why = self
                    .library
                    .refused
                    .get(&entry.name)
                    .cloned()
                    .unwrap_or_default();
                let w = format!(
                    "embedding {:?} is not used (read as plain text): {why}",
                    entry.name
                );
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                None
            }
        }
    }

    /// The text encoder's output for `ids` (`[n, 77]`, one row per chunk) with the chunks'
    /// embedding slots filled with their vectors.
    pub fn encode(
        &self,
        model: &ClipTextModel,
        ids: &Tensor,
        chunks: &[&Chunk],
        clip_skip: usize,
    ) -> Result<Tensor> {
        let enc = |e: kakusan_models::clip::TextModelError| {
            PipelineError::Config(format!("text encoder: {e}"))
        };
        if chunks.iter().all(|c| c.embeddings.is_empty()) {
            return model.forward(ids, clip_skip).map_err(enc);
        }
        let tokens = model.token_embeddings(ids).map_err(enc)?;
        let (_, seq, _) = tokens.dims3()?;
        let dtype: DType = tokens.dtype();
        let device = tokens.device().clone();
        let mut rows = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let row = tokens.get(i)?;
            if chunk.embeddings.is_empty() {
                rows.push(row);
                continue;
            }
            let mut pieces = Vec::new();
            let mut at = 0;
            let mut fixes: Vec<_> = chunk.embeddings.iter().collect();
            fixes.sort_by_key(|f| f.offset);
            for fix in fixes {
                let Some(emb) = self.library.get(&fix.name) else {
                    continue;
                };
                // A1111 truncates vectors that would run past the chunk's end.
                let n = fix
                    .vectors
                    .min(emb.len())
                    .min(seq.saturating_sub(fix.offset));
                if n == 0 || fix.offset < at {
                    continue;
                }
                if fix.offset > at {
                    pieces.push(row.narrow(0, at, fix.offset - at)?);
                }
                pieces.push(
                    emb.vectors
                        .narrow(0, 0, n)?
                        .to_dtype(dtype)?
                        .to_device(&device)?,
                );
                at = fix.offset + n;
            }
            if at < seq {
                pieces.push(row.narrow(0, at, seq - at)?);
            }
            rows.push(Tensor::cat(&pieces, 0)?);
        }
        let edited = Tensor::stack(&rows, 0)?;
        model
            .forward_token_embeddings(&edited, clip_skip)
            .map_err(enc)
    }
}
