//! Text conditioning in A1111's prompt language (kakusan-prompt): emphasis weights, `BREAK`,
//! prompts longer than 75 tokens (77-token chunks concatenated along the sequence axis),
//! prompt editing and alternation (a conditioning per schedule entry, switched per sampling
//! step), and `AND` parts with weights.
//!
//! What A1111 does, and so we do:
//! - each `AND` part (and the negative prompt) has its own schedule; its distinct texts are
//!   chunked, padded with empty chunks to the same chunk count, and encoded chunk by chunk;
//! - emphasis ("Original"): a chunk's hidden states are multiplied by the token weights, then
//!   rescaled so the mean over the batch of that part's scheduled texts (A1111 encodes them as
//!   one batch, duplicates included) equals the mean before weighting;
//! - `AND` parts of different lengths are padded by repeating their last vector (A1111's
//!   `stack_conds`); positive and negative of different lengths are padded with the encoded
//!   empty prompt (A1111's "pad prompt/negative prompt to be same length");
//! - at sampling step `i` (0-based count of model calls), each schedule uses its first entry
//!   with `i <= end_step`.
//!
//! Textual-inversion embeddings (`crate::embeddings`) take their names' places in the chunks
//! and are put into the text encoder's input.
//!
//! `<lora:...>` calls are taken out of the text here and applied by `StableDiffusion::generate`
//! (`crate::lora`) before the conditioning is encoded.
//!
//! For A1111's "second_order" samplers the schedule spans twice the steps (see
//! `Sampler::prompt_schedule_steps`), still indexed by model calls.
//!
//! Not yet: hires schedules.

use std::cell::Cell;
use std::collections::HashMap;

use candle_core::{DType, Tensor};
use kakusan_prompt::chunks::{
    chunk_pieces, equalize_chunk_counts, pieces_for, Chunk, EmphasisMode, SpecialIds,
};
use kakusan_prompt::{
    and_parts, apply_emphasis, extract_extra_networks, prompt_schedule, Dialect, LoraCall,
    ScheduleOptions,
};

use crate::error::Result;
use crate::guidance::guided_predict;
use crate::stable_diffusion::StableDiffusion;
use kakusan_models::unet::UNet2DConditionModel;

/// How prompts are read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptOptions {
    pub dialect: Dialect,
    pub emphasis: EmphasisMode,
}

impl Default for PromptOptions {
    fn default() -> Self {
        PromptOptions {
            dialect: Dialect::A1111,
            emphasis: EmphasisMode::Original,
        }
    }
}

/// A schedule of `[1, L, D]` text embeddings.
pub type TensorSchedule = Vec<(u32, Tensor)>;

/// The conditioning of one generation.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// The negative prompt's schedule.
    pub uncond: TensorSchedule,
    /// The `AND` parts: weight and schedule. All tensors (these and `uncond`) have the same
    /// sequence length.
    pub parts: Vec<(f64, TensorSchedule)>,
    /// `<lora:...>` calls found in the prompt (`generate` applies them).
    pub loras: Vec<LoraCall>,
    /// What was noticed while reading the prompts.
    pub warnings: Vec<String>,
    /// The textual-inversion embeddings the prompts used, by name: the prompt's in order of
    /// first use, then the negative prompt's (each name once).
    pub embeddings: Vec<String>,
}

/// What reading the prompts noticed: warnings and the embeddings used.
#[derive(Default)]
struct Notes {
    warnings: Vec<String>,
    embeddings: Vec<String>,
}

/// The entry in force at sampling step `step`: the first with `step <= end_step`, else the
/// first (A1111's `reconstruct_cond_batch`).
fn at(schedule: &TensorSchedule, step: usize) -> &Tensor {
    let i = schedule
        .iter()
        .position(|(end, _)| step <= *end as usize)
        .unwrap_or(0);
    &schedule[i].1
}

impl Conditioning {
    /// The context `[uncond x b; part_1 x b; ...]` at `step` and the parts' weights.
    pub fn context_at(&self, step: usize, b: usize) -> candle_core::Result<(Tensor, Vec<f64>)> {
        let mut pieces = vec![at(&self.uncond, step).repeat((b, 1, 1))?];
        for (_, s) in &self.parts {
            pieces.push(at(s, step).repeat((b, 1, 1))?);
        }
        let weights = self.parts.iter().map(|(w, _)| *w).collect();
        Ok((Tensor::cat(&pieces, 0)?, weights))
    }
}

/// Pads `t` (`[1, L, D]`) to `len` tokens by repeating its last vector.
fn pad_with_last(t: &Tensor, len: usize) -> candle_core::Result<Tensor> {
    let l = t.dim(1)?;
    if l >= len {
        return Ok(t.clone());
    }
    let last = t.narrow(1, l - 1, 1)?.repeat((1, len - l, 1))?;
    Tensor::cat(&[t, &last], 1)
}

/// Pads `t` (`[1, L, D]`) to `len` tokens with copies of `empty` (`[1, 77, D]`).
fn pad_with_empty(t: &Tensor, len: usize, empty: &Tensor) -> candle_core::Result<Tensor> {
    let l = t.dim(1)?;
    let e = empty.dim(1)?;
    if l >= len || e == 0 {
        return Ok(t.clone());
    }
    let repeats = (len - l) / e;
    if repeats == 0 {
        return Ok(t.clone());
    }
    Tensor::cat(&[t, &empty.repeat((1, repeats, 1))?], 1)
}

impl StableDiffusion {
    fn special_ids(&self) -> SpecialIds {
        SpecialIds {
            bos: self.tokenizer.bos_id(),
            eos: self.tokenizer.eos_id(),
            pad: self.tokenizer.pad_id(),
            comma: self.tokenizer.token_id(",</w>"),
        }
    }

    /// Encodes a batch of chunks `[n, 77]` to `[n, 77, D]` f32.
    fn encode_chunks(&self, chunks: &[&Chunk], clip_skip: usize) -> Result<Tensor> {
        let ids = self.special_ids();
        let rows: Vec<u32> = chunks.iter().flat_map(|c| c.encoder_ids(&ids)).collect();
        let ids = Tensor::from_vec(rows, (chunks.len(), 77), &self.device)?;
        let skip = clip_skip + self.base_clip_skip - 1;
        let emb = self
            .embeddings
            .encode(&self.text_model, &ids, chunks, skip)?;
        Ok(emb.to_dtype(DType::F32)?)
    }

    /// The embeddings of every entry of `schedule`, each text encoded once.
    fn encode_schedule(
        &self,
        schedule: &[(u32, String)],
        clip_skip: usize,
        opts: &PromptOptions,
        notes: &mut Notes,
    ) -> Result<TensorSchedule> {
        let ids = self.special_ids();
        let mut distinct: Vec<&str> = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let entry_index: Vec<usize> = schedule
            .iter()
            .map(|(_, t)| {
                *index_of.entry(t.as_str()).or_insert_with(|| {
                    distinct.push(t.as_str());
                    distinct.len() - 1
                })
            })
            .collect();
        let mut tokenize = |t: &str| self.tokenizer.encode(t);
        let mut chunked: Vec<Vec<Chunk>> = Vec::with_capacity(distinct.len());
        for text in &distinct {
            if opts.emphasis != EmphasisMode::None {
                for w in kakusan_prompt::parse_attention(text, opts.dialect).warnings {
                    if !notes.warnings.contains(&w) {
                        notes.warnings.push(w);
                    }
                }
            }
            let pieces = pieces_for(text, opts.dialect, opts.emphasis);
            let mut found = |toks: &[u32], pos: usize| {
                if self.embeddings.is_empty() {
                    return None;
                }
                let found = self.embeddings.find_at(toks, pos, &mut notes.warnings);
                if let Some(m) = &found {
                    if !notes.embeddings.contains(&m.name) {
                        notes.embeddings.push(m.name.clone());
                    }
                }
                found
            };
            chunked.push(chunk_pieces(&pieces, &ids, &mut tokenize, &mut found).chunks);
        }
        {
            let mut refs: Vec<&mut Vec<Chunk>> = chunked.iter_mut().collect();
            equalize_chunk_counts(&mut refs, &ids);
        }
        let n_chunks = chunked.first().map_or(0, Vec::len);
        let mut per_text: Vec<Vec<Tensor>> = vec![Vec::with_capacity(n_chunks); distinct.len()];
        for k in 0..n_chunks {
            let batch: Vec<&Chunk> = chunked.iter().map(|c| &c[k]).collect();
            let z = self.encode_chunks(&batch, clip_skip)?;
            let weighted = matches!(opts.emphasis, EmphasisMode::Original | EmphasisMode::NoNorm)
                && batch.iter().any(|c| c.weights.iter().any(|&w| w != 1.0));
            let z = if weighted {
                // A1111's batch: one row per schedule entry, duplicates included.
                let (n, len, dim) = z.dims3()?;
                let rows: Vec<Vec<f32>> = (0..n)
                    .map(|i| z.get(i).and_then(|r| r.flatten_all()?.to_vec1::<f32>()))
                    .collect::<candle_core::Result<_>>()?;
                let mut data: Vec<f32> = Vec::with_capacity(entry_index.len() * len * dim);
                let mut weights: Vec<f64> = Vec::with_capacity(entry_index.len() * len);
                for &i in &entry_index {
                    data.extend_from_slice(&rows[i]);
                    weights.extend_from_slice(&batch[i].weights);
                }
                apply_emphasis(&mut data, dim, &weights, opts.emphasis);
                // Back to one row per distinct text: its first entry's row.
                let mut out = vec![0f32; n * len * dim];
                let mut done = vec![false; n];
                for (e, &i) in entry_index.iter().enumerate() {
                    if !done[i] {
                        let src = &data[e * len * dim..(e + 1) * len * dim];
                        out[i * len * dim..(i + 1) * len * dim].copy_from_slice(src);
                        done[i] = true;
                    }
                }
                Tensor::from_vec(out, (n, len, dim), &self.device)?
            } else {
                z
            };
            for (i, t) in per_text.iter_mut().enumerate() {
                t.push(z.narrow(0, i, 1)?);
            }
        }
        let texts: Vec<Tensor> = per_text
            .iter()
            .map(|chunks| Tensor::cat(chunks, 1))
            .collect::<candle_core::Result<_>>()?;
        Ok(schedule
            .iter()
            .zip(&entry_index)
            .map(|((end, _), &i)| (*end, texts[i].clone()))
            .collect())
    }

    /// The conditioning of `prompt` and `negative` over `steps` sampling steps (f32 on the
    /// model's device).
    pub fn encode_conditioning(
        &self,
        prompt: &str,
        negative: &str,
        steps: usize,
        clip_skip: usize,
        opts: &PromptOptions,
    ) -> Result<Conditioning> {
        let mut notes = Notes::default();
        let sched_opts = ScheduleOptions::new(u32::try_from(steps).unwrap_or(u32::MAX));
        let (text, extra) = extract_extra_networks(prompt);
        notes.warnings.extend(extra.problems.iter().cloned());
        let mut parts = Vec::new();
        for part in and_parts(&text) {
            let schedule = prompt_schedule(&part.text, &sched_opts);
            parts.push((
                part.weight,
                self.encode_schedule(&schedule, clip_skip, opts, &mut notes)?,
            ));
        }
        let neg_schedule = prompt_schedule(negative, &sched_opts);
        let mut uncond = self.encode_schedule(&neg_schedule, clip_skip, opts, &mut notes)?;

        // AND parts to one length by repeating the last vector.
        let len_of = |s: &TensorSchedule| s.first().map_or(Ok(0), |(_, t)| t.dim(1));
        let mut cond_len = 0;
        for (_, s) in &parts {
            cond_len = cond_len.max(len_of(s)?);
        }
        for (_, s) in &mut parts {
            for (_, t) in s.iter_mut() {
                *t = pad_with_last(t, cond_len)?;
            }
        }
        // Positive and negative to one length with the empty prompt's encoding.
        let uncond_len = len_of(&uncond)?;
        if cond_len != uncond_len {
            let empty = self.encode_schedule(
                &[(0, String::new())],
                clip_skip,
                &PromptOptions::default(),
                &mut Notes::default(),
            )?;
            let empty = &empty[0].1;
            let len = cond_len.max(uncond_len);
            for (_, t) in uncond.iter_mut() {
                *t = pad_with_empty(t, len, empty)?;
            }
            for (_, s) in &mut parts {
                for (_, t) in s.iter_mut() {
                    *t = pad_with_empty(t, len, empty)?;
                }
            }
        }
        for w in &notes.warnings {
            tracing::warn!("prompt: {w}");
        }
        Ok(Conditioning {
            uncond,
            parts,
            loras: extra.loras,
            warnings: notes.warnings,
            embeddings: notes.embeddings,
        })
    }
}

/// The UNet guided by a [`Conditioning`] that changes with the sampling step: each call is one
/// step (the samplers kakusan has call the model once per step, as A1111 counts).
pub struct ScheduledGuidedUNet<'a> {
    pub unet: &'a UNet2DConditionModel,
    pub conditioning: &'a Conditioning,
    /// Images in the batch.
    pub batch: usize,
    pub cfg_scale: f64,
    pub dtype: DType,
    /// Model calls so far.
    pub calls: Cell<usize>,
}

impl ScheduledGuidedUNet<'_> {
    pub fn predict(&self, x_in: &Tensor, t: f64) -> candle_core::Result<Tensor> {
        let step = self.calls.get();
        self.calls.set(step + 1);
        let (context, weights) = self.conditioning.context_at(step, self.batch)?;
        let context = context.to_dtype(self.dtype)?;
        guided_predict(
            self.unet,
            x_in,
            t,
            &context,
            &weights,
            self.cfg_scale,
            self.dtype,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn filled(v: f32, len: usize) -> Tensor {
        Tensor::full(v, (1, len, 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn context_switches_at_a1111s_steps() {
        // Part: "a" to step 2, "b" to step 5; negative: one entry.
        let c = Conditioning {
            uncond: vec![(5, filled(0.0, 3))],
            parts: vec![(0.7, vec![(2, filled(1.0, 3)), (5, filled(2.0, 3))])],
            loras: Vec::new(),
            warnings: Vec::new(),
            embeddings: Vec::new(),
        };
        let value_at = |step| {
            let (ctx, w) = c.context_at(step, 2).unwrap();
            assert_eq!(ctx.dims(), &[4, 3, 2]);
            assert_eq!(w, vec![0.7]);
            let v: Vec<f32> = ctx.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v[..12].iter().all(|&x| x == 0.0));
            v[12]
        };
        // Model call i (0-based) uses the first entry with i <= end: calls 0, 1, 2 -> "a".
        let seen: Vec<f32> = (0..7).map(value_at).collect();
        assert_eq!(seen, vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0]);
    }

    #[test]
    fn padding_repeats_the_last_vector_or_appends_empty_chunks() {
        let t = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 2))
            .unwrap();
        let p = pad_with_last(&t, 5).unwrap();
        let v: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![0., 1., 2., 3., 4., 5., 4., 5., 4., 5.]);
        let e = filled(9.0, 3);
        let p = pad_with_empty(&t, 9, &e).unwrap();
        assert_eq!(p.dims(), &[1, 9, 2]);
    }
}
