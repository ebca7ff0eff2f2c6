//! The CLIP text transformer (transformers' `CLIPTextModel`, without pooling): token ids to
//! the per-token embeddings Stable Diffusion conditions on.
//!
//! Weights are read through a `VarBuilder` with transformers' names under `text_model.`
//! (`text_model.embeddings.token_embedding.weight`, `text_model.encoder.layers.{i}.…`,
//! `text_model.final_layer_norm.…`); other namings are the weights module's business.
//! Computation follows the builder's dtype, with layer norms, attention scores and softmax
//! in f32.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::attention::causal_mask;
use super::config::ClipTextConfig;
use super::embeddings::ClipTextEmbeddings;
use super::encoder_layer::ClipEncoderLayer;
use super::error::TextModelError;
use crate::nn::LayerNorm;

/// A CLIP text encoder.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    embeddings: ClipTextEmbeddings,
    layers: Vec<ClipEncoderLayer>,
    final_layer_norm: LayerNorm,
    config: ClipTextConfig,
}

impl ClipTextModel {
    /// Builds the model from `vb` (names relative to the text-encoder component, i.e.
    /// starting with `text_model.`). Fails on a missing or misshaped weight.
    pub fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<Self, TextModelError> {
        cfg.validate()?;
        let vb = vb.pp("text_model");
        let embeddings = ClipTextEmbeddings::new(vb.pp("embeddings"), cfg)?;
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::new(layers_vb.pp(i), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_layer_norm = LayerNorm::new(
            cfg.hidden_size,
            cfg.layer_norm_eps,
            vb.pp("final_layer_norm"),
        )?;
        Ok(Self {
            embeddings,
            layers,
            final_layer_norm,
            config: cfg.clone(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Checks `ids` is [batch, seq] of integers with seq within the position table, and
    /// returns seq.
    fn check_ids(&self, ids: &Tensor) -> Result<usize, TextModelError> {
        let dims = ids.dims().to_vec();
        let integer = matches!(ids.dtype(), DType::U32 | DType::I64 | DType::U8);
        let [_, seq] = dims.as_slice() else {
            return Err(TextModelError::BadInputShape(dims));
        };
        if !integer || *seq == 0 {
            return Err(TextModelError::BadInputShape(dims));
        }
        let max = self.config.max_position_embeddings;
        if *seq > max {
            return Err(TextModelError::SequenceTooLong { len: *seq, max });
        }
        Ok(*seq)
    }

    /// Runs the embeddings and the first `layers` layers; returns every hidden state
    /// (embeddings output first) when `keep_all`, else only the last one.
    fn run(
        &self,
        ids: &Tensor,
        layers: usize,
        keep_all: bool,
    ) -> Result<Vec<Tensor>, TextModelError> {
        self.check_ids(ids)?;
        let hidden = self.embeddings.forward(ids)?;
        self.run_from(hidden, layers, keep_all)
    }

    /// Runs the first `layers` layers from the embeddings output `hidden` [batch, seq, width].
    fn run_from(
        &self,
        mut hidden: Tensor,
        layers: usize,
        keep_all: bool,
    ) -> Result<Vec<Tensor>, TextModelError> {
        let seq = hidden.dim(1)?;
        let mask = causal_mask(seq, hidden.device())?;
        let mut states = Vec::with_capacity(if keep_all { layers + 1 } else { 1 });
        for layer in &self.layers[..layers] {
            let next = layer.forward(&hidden, &mask)?;
            if keep_all {
                states.push(hidden);
            }
            hidden = next;
        }
        states.push(hidden);
        Ok(states)
    }

    /// The text embeddings SD conditions on: `final_layer_norm` of the output of layer
    /// `num_layers - clip_skip + 1` (A1111's "CLIP skip"). `clip_skip` 1 is the last layer
    /// (transformers' `last_hidden_state`), 2 the penultimate (diffusers' `clip_skip=1`).
    /// `ids`: [batch, seq] u32 → [batch, seq, hidden]. Layers past the chosen one are not
    /// computed.
    pub fn forward(&self, ids: &Tensor, clip_skip: usize) -> Result<Tensor, TextModelError> {
        let num_layers = self.layers.len();
        if clip_skip == 0 || clip_skip > num_layers {
            return Err(TextModelError::ClipSkipOutOfRange {
                clip_skip,
                num_layers,
            });
        }
        let states = self.run(ids, num_layers + 1 - clip_skip, false)?;
        let last = states.last().ok_or(TextModelError::ClipSkipOutOfRange {
            clip_skip,
            num_layers,
        })?;
        Ok(self.final_layer_norm.forward(last)?)
    }

    /// The token embeddings of `ids` ([batch, seq] → [batch, seq, hidden], before position
    /// embeddings): what textual inversion edits before [`Self::forward_token_embeddings`].
    pub fn token_embeddings(&self, ids: &Tensor) -> Result<Tensor, TextModelError> {
        self.check_ids(ids)?;
        Ok(self.embeddings.tokens(ids)?)
    }

    /// [`Self::forward`] from token embeddings [batch, seq, hidden] instead of ids (position
    /// embeddings are added here): `forward_token_embeddings(token_embeddings(ids))` equals
    /// `forward(ids)`.
    pub fn forward_token_embeddings(
        &self,
        tokens: &Tensor,
        clip_skip: usize,
    ) -> Result<Tensor, TextModelError> {
        let num_layers = self.layers.len();
        if clip_skip == 0 || clip_skip > num_layers {
            return Err(TextModelError::ClipSkipOutOfRange {
                clip_skip,
                num_layers,
            });
        }
        let dims = tokens.dims().to_vec();
        let [_, seq, width] = dims.as_slice() else {
            return Err(TextModelError::BadInputShape(dims));
        };
        if *width != self.config.hidden_size || *seq == 0 {
            return Err(TextModelError::BadInputShape(dims));
        }
        let max = self.config.max_position_embeddings;
        if *seq > max {
            return Err(TextModelError::SequenceTooLong { len: *seq, max });
        }
        let hidden = self.embeddings.add_positions(tokens)?;
        let states = self.run_from(hidden, num_layers + 1 - clip_skip, false)?;
        let last = states.last().ok_or(TextModelError::ClipSkipOutOfRange {
            clip_skip,
            num_layers,
        })?;
        Ok(self.final_layer_norm.forward(last)?)
    }

    /// All hidden states without the final layer norm: index 0 is the embeddings output,
    /// index i the output of layer i (transformers' `hidden_states`). Apply
    /// [`Self::final_layer_norm`] to the one you use.
    pub fn forward_hidden_states(&self, ids: &Tensor) -> Result<Vec<Tensor>, TextModelError> {
        self.run(ids, self.layers.len(), true)
    }

    /// Applies the encoder's final layer norm to a hidden state.
    pub fn final_layer_norm(&self, hidden: &Tensor) -> Result<Tensor, TextModelError> {
        Ok(self.final_layer_norm.forward(hidden)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny() -> (ClipTextModel, VarMap) {
        let cfg = ClipTextConfig {
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            max_position_embeddings: 6,
            ..Default::default()
        };
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let model = ClipTextModel::new(vb, &cfg).unwrap();
        (model, map)
    }

    #[test]
    fn clip_skip_selects_layers_and_is_validated() {
        let (model, _map) = tiny();
        let ids = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8]], &Device::Cpu).unwrap();
        let states = model.forward_hidden_states(&ids).unwrap();
        assert_eq!(states.len(), 4);
        for skip in 1..=3 {
            let got = model.forward(&ids, skip).unwrap();
            assert_eq!(got.dims(), [2, 4, 8]);
            let want = model.final_layer_norm(&states[4 - skip]).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
        assert!(matches!(
            model.forward(&ids, 0),
            Err(TextModelError::ClipSkipOutOfRange { .. })
        ));
        assert!(matches!(
            model.forward(&ids, 4),
            Err(TextModelError::ClipSkipOutOfRange {
                clip_skip: 4,
                num_layers: 3
            })
        ));
    }

    #[test]
    fn rejects_bad_inputs() {
        let (model, _map) = tiny();
        let long = Tensor::zeros((1, 7), DType::U32, &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward(&long, 1),
            Err(TextModelError::SequenceTooLong { len: 7, max: 6 })
        ));
        let flat = Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward(&flat, 1),
            Err(TextModelError::BadInputShape(_))
        ));
        let float = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward(&float, 1),
            Err(TextModelError::BadInputShape(_))
        ));
        let out_of_vocab = Tensor::new(&[[3u32, 10]], &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward(&out_of_vocab, 1),
            Err(TextModelError::Candle(_))
        ));
    }

    #[test]
    fn token_embeddings_entry_point_equals_ids_and_takes_overrides() {
        let (model, _map) = tiny();
        let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
        let tok = model.token_embeddings(&ids).unwrap();
        assert_eq!(tok.dims(), [1, 4, 8]);
        for skip in 1..=3 {
            let a = model.forward(&ids, skip).unwrap();
            let b = model.forward_token_embeddings(&tok, skip).unwrap();
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
        // Replacing token 2's vector by token 5's embedding is the same as the id 5.
        let five = model
            .token_embeddings(&Tensor::new(&[[5u32]], &Device::Cpu).unwrap())
            .unwrap();
        let edited = Tensor::cat(
            &[
                tok.narrow(1, 0, 2).unwrap(),
                five,
                tok.narrow(1, 3, 1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let want = model
            .forward(&Tensor::new(&[[1u32, 2, 5, 4]], &Device::Cpu).unwrap(), 1)
            .unwrap();
        let got = model.forward_token_embeddings(&edited, 1).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let wrong = Tensor::zeros((1, 4, 7), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward_token_embeddings(&wrong, 1),
            Err(TextModelError::BadInputShape(_))
        ));
    }

    #[test]
    fn causal_tokens_do_not_see_later_ones() {
        let (model, _map) = tiny();
        let a = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1u32, 2, 9, 0]], &Device::Cpu).unwrap();
        let ya = model.forward(&a, 1).unwrap().narrow(1, 0, 2).unwrap();
        let yb = model.forward(&b, 1).unwrap().narrow(1, 0, 2).unwrap();
        let diff = (ya - yb).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
