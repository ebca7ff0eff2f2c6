//! Token and position embeddings of the CLIP text encoder.

use candle_core::{Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use super::config::ClipTextConfig;

/// `token_embedding` and `position_embedding`; positions are 0, 1, … along the sequence.
#[derive(Debug, Clone)]
pub(crate) struct ClipTextEmbeddings {
    token_embedding: Embedding,
    position_embedding: Tensor,
}

impl ClipTextEmbeddings {
    pub(crate) fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        let token_embedding = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("token_embedding"))?;
        let position_embedding = vb
            .pp("position_embedding")
            .get((cfg.max_position_embeddings, cfg.hidden_size), "weight")?;
        Ok(Self {
            token_embedding,
            position_embedding,
        })
    }

    /// `ids`: [batch, seq] integer ids (seq within the position table, checked by the
    /// caller) → [batch, seq, hidden].
    pub(crate) fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.add_positions(&self.token_embedding.forward(ids)?)
    }

    /// The token embeddings alone: [batch, seq] ids → [batch, seq, hidden].
    pub(crate) fn tokens(&self, ids: &Tensor) -> Result<Tensor> {
        self.token_embedding.forward(ids)
    }

    /// Adds the position embeddings to token embeddings [batch, seq, hidden].
    pub(crate) fn add_positions(&self, tokens: &Tensor) -> Result<Tensor> {
        let seq = tokens.dim(1)?;
        let positions = self.position_embedding.narrow(0, 0, seq)?.unsqueeze(0)?;
        tokens.broadcast_add(&positions)
    }
}
