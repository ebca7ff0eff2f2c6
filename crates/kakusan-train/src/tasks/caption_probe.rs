//! A training-only helper objective for the text encoder: a linear "probe" on the mean of its
//! last hidden states predicts what a one-object caption says (glyph, colour, size, position,
//! background), with the labels of the procedural scene.
//!
//! Why: the diffusion loss gives the text encoder a gradient only through the words the UNet
//! already uses. kakusan-mini's encoder learnt colours and backgrounds but hardly separated
//! "top left" from "bottom right" (their hidden states 0.1 apart, colours 1.8), and a UNet
//! cannot follow what its conditioning does not distinguish: a deadlock. The probe's
//! cross-entropy forces every attribute to be readable from the encoder's output. The probe
//! lives under its own prefix ([`PROBE_PREFIX`]): checkpoints carry it, the exported model
//! (text encoder and UNet only) does not.

use candle_core::{DType, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use kakusan_data::{Colour, Glyph, Position, Scene, Size};

use crate::error::{Result, TrainError};

/// Prefix of the probe's variables in checkpoints.
pub const PROBE_PREFIX: &str = "caption_probe.";

/// The attribute groups the probe predicts, with their class counts, in label order.
pub const ATTRIBUTE_GROUPS: [(&str, usize); 5] = [
    ("glyph", Glyph::EVALUATED.len()),
    ("colour", Colour::ALL.len()),
    ("size", Size::ALL.len()),
    ("position", Position::ALL.len()),
    ("background", Colour::ALL.len()),
];

/// The class of each of [`ATTRIBUTE_GROUPS`] for one caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionLabels(pub [u32; 5]);

impl CaptionLabels {
    /// The labels of a one-object scene; `None` for pairs and empty scenes (a pair's caption
    /// names two of each attribute and no position class).
    pub fn of_scene(scene: &Scene) -> Option<Self> {
        match scene.objects.as_slice() {
            [object] => Some(Self([
                object.glyph.index() as u32,
                object.colour.index() as u32,
                object.size.index() as u32,
                object.position.index() as u32,
                scene.background.index() as u32,
            ])),
            _ => None,
        }
    }
}

/// The linear probe: `hidden_size` -> one logit per class of every group.
pub struct CaptionProbe {
    head: Linear,
}

impl CaptionProbe {
    pub fn new(vb: VarBuilder, hidden_size: usize) -> Result<Self> {
        let classes = ATTRIBUTE_GROUPS.iter().map(|(_, n)| n).sum();
        let head = candle_nn::linear(hidden_size, classes, vb.pp("head"))
            .map_err(|e| TrainError::Config(format!("caption probe: {e}")))?;
        Ok(Self { head })
    }

    /// The logits `[B, classes]` of the text encoder's hidden states `[B, T, D]` (mean over
    /// the tokens: in a causal encoder the tokens after the caption have seen all of it).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(&hidden.mean(1)?)?)
    }

    /// The mean over groups of the cross-entropy over the rows that have labels (`None`:
    /// a pair, or a caption dropped for guidance). `None` when no row has labels.
    pub fn loss(
        &self,
        hidden: &Tensor,
        labels: &[Option<CaptionLabels>],
    ) -> Result<Option<Tensor>> {
        let rows: Vec<u32> = (0..labels.len() as u32)
            .filter(|&i| labels[i as usize].is_some())
            .collect();
        let labelled: Vec<CaptionLabels> = labels.iter().flatten().copied().collect();
        if labelled.is_empty() {
            return Ok(None);
        }
        let device = hidden.device();
        let rows = Tensor::new(rows.as_slice(), device)?;
        let logits = self.logits(&hidden.index_select(&rows, 0)?)?;
        let mut offset = 0;
        let mut total: Option<Tensor> = None;
        for (g, (_, classes)) in ATTRIBUTE_GROUPS.iter().enumerate() {
            let targets: Vec<u32> = labelled.iter().map(|l| l.0[g]).collect();
            let targets = Tensor::new(targets.as_slice(), device)?;
            let ce = cross_entropy(&logits.narrow(1, offset, *classes)?, &targets)?;
            total = Some(match total {
                Some(t) => (t + ce)?,
                None => ce,
            });
            offset += classes;
        }
        Ok(total
            .map(|t| t / ATTRIBUTE_GROUPS.len() as f64)
            .transpose()?)
    }
}

/// Mean cross-entropy of `logits` `[N, C]` against class indices `targets` `[N]`.
fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_p = shifted.broadcast_sub(&log_z)?;
    let picked = log_p.gather(&targets.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{Optimizer, VarMap};
    use kakusan_data::{Dataset, Split};

    #[test]
    fn labels_come_from_one_object_scenes_only() {
        let data = Dataset::new(2, Split::Train, 32)
            .unwrap()
            .with_two_object_fraction(0.5)
            .unwrap();
        let (mut singles, mut pairs) = (0, 0);
        for i in 0..40 {
            let scene = data.scene(i);
            match (scene.objects.len(), CaptionLabels::of_scene(&scene)) {
                (1, Some(l)) => {
                    singles += 1;
                    let o = scene.objects[0];
                    assert_eq!(l.0[0] as usize, o.glyph.index());
                    assert_eq!(l.0[3] as usize, o.position.index());
                    assert_eq!(l.0[4] as usize, scene.background.index());
                    for (g, (_, n)) in ATTRIBUTE_GROUPS.iter().enumerate() {
                        assert!((l.0[g] as usize) < *n);
                    }
                }
                (2, None) => pairs += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(singles > 5 && pairs > 5, "{singles} {pairs}");
    }

    #[test]
    fn cross_entropy_matches_a_hand_computation() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &dev).unwrap();
        let targets = Tensor::new(&[2u32, 0], &dev).unwrap();
        let ce = cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let lse = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        let want = ((lse - 3.0) + 3f32.ln()) / 2.0;
        assert!((ce - want).abs() < 1e-6, "{ce} vs {want}");
    }

    /// Unlabelled rows are ignored, and training the probe alone on fixed hidden states that
    /// encode the labels drives its loss down: the gradient reaches the head through the
    /// row selection and every group's slice.
    #[test]
    fn the_probe_learns_separable_labels_and_skips_unlabelled_rows() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let probe = CaptionProbe::new(VarBuilder::from_varmap(&map, DType::F32, &dev), 8).unwrap();
        let labels = [
            Some(CaptionLabels([0, 1, 0, 8, 2])),
            None,
            Some(CaptionLabels([17, 9, 1, 0, 3])),
        ];
        // [3, 2, 8]: the labelled rows differ, the unlabelled one is huge (it must not count).
        let mut h = vec![0f32; 3 * 2 * 8];
        for t in 0..2 {
            h[t * 8] = 1.0;
            h[(2 * 2 + t) * 8 + 1] = 1.0;
            h[(2 + t) * 8 + 2] = 1e6;
        }
        let hidden = Tensor::from_vec(h, (3, 2, 8), &dev).unwrap();
        assert!(probe.loss(&hidden, &[None, None, None]).unwrap().is_none());
        let loss = |p: &CaptionProbe| {
            p.loss(&hidden, &labels)
                .unwrap()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let first = loss(&probe);
        assert!(first.is_finite() && first > 0.3, "{first}");
        let mut opt = candle_nn::SGD::new(map.all_vars(), 0.5).unwrap();
        for _ in 0..200 {
            let l = probe.loss(&hidden, &labels).unwrap().unwrap();
            opt.backward_step(&l).unwrap();
        }
        let last = loss(&probe);
        assert!(last < 0.05 * first, "{first} -> {last}");
    }
}
