//! The classifier: a small CNN on 64×64 RGB pictures in [-1, 1] with one linear head per
//! [`Attribute`].
//!
//! ```text
//! x [B, 3, 64, 64]
//! stage i (i = 0..4): conv3×3 stride 2 → GroupNorm → SiLU, then `convs_per_stage` ×
//!                     (conv3×3 → GroupNorm → SiLU)          64 → 32 → 16 → 8 → 4
//! flatten [B, C·4·4]  (no global pooling: the 4×4 map keeps where the object is)
//! hidden: linear → SiLU
//! heads.<attribute>: linear → logits [B, classes]
//! ```
//!
//! Weight names: `stages.{i}.{j}.conv.*`, `stages.{i}.{j}.norm.*` (j = 0 is the strided
//! conv), `hidden.*`, `heads.{glyph,colour,background,position,size}.*`. Built through a
//! `VarBuilder`, so it trains from a `VarMap` and loads from safetensors alike.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use kakusan_models::nn::{conv2d, Conv2d, GroupNorm};
use serde::{Deserialize, Serialize};

use crate::attribute::Attribute;
use crate::error::{EvalError, Result};

/// The shape of the network (`config.json` next to the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierConfig {
    /// The side of the (square) input picture; pictures of another size are resized.
    pub image_size: usize,
    /// Channels of each stage; each stage halves the side.
    pub channels: Vec<usize>,
    /// Stride-1 convolutions after each stage's strided one.
    pub convs_per_stage: usize,
    /// Groups of every group norm (must divide every stage's channels).
    pub norm_groups: usize,
    /// Width of the shared hidden layer before the heads.
    pub hidden: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            channels: vec![16, 32, 64, 96],
            convs_per_stage: 1,
            norm_groups: 8,
            hidden: 64,
        }
    }
}

impl ClassifierConfig {
    /// The side of the last feature map.
    pub fn final_side(&self) -> usize {
        self.image_size >> self.channels.len()
    }

    /// Checks that the network can be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EvalError::Config(m));
        if self.channels.is_empty() {
            return bad("channels must list at least one stage".into());
        }
        if self.image_size == 0 || !self.image_size.is_multiple_of(1 << self.channels.len()) {
            return bad(format!(
                "image_size {} must be a multiple of 2^{} (one halving per stage)",
                self.image_size,
                self.channels.len()
            ));
        }
        if self.norm_groups == 0 {
            return bad("norm_groups must be at least 1".into());
        }
        if let Some(c) = self
            .channels
            .iter()
            .find(|c| **c == 0 || !c.is_multiple_of(self.norm_groups))
        {
            return bad(format!(
                "{} norm groups do not divide {c} channels",
                self.norm_groups
            ));
        }
        if self.hidden == 0 {
            return bad("hidden must be at least 1".into());
        }
        Ok(())
    }
}

/// conv → group norm → SiLU.
#[derive(Debug, Clone)]
struct ConvBlock {
    conv: Conv2d,
    norm: GroupNorm,
}

impl ConvBlock {
    fn new(cin: usize, cout: usize, stride: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(cin, cout, 3, stride, 1, vb.pp("conv"))?,
            norm: GroupNorm::new(groups, cout, 1e-5, vb.pp("norm"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.norm.forward(&self.conv.forward(x)?)?.silu()?)
    }
}

/// The logits of every head, in [`Attribute::ALL`] order, each `[B, classes]`.
#[derive(Debug, Clone)]
pub struct Logits(pub [Tensor; 5]);

impl Logits {
    /// The logits of one head.
    pub fn get(&self, attribute: Attribute) -> &Tensor {
        &self.0[attribute.index()]
    }
}

/// The attribute classifier.
#[derive(Debug, Clone)]
pub struct Classifier {
    config: ClassifierConfig,
    stages: Vec<Vec<ConvBlock>>,
    hidden: Linear,
    heads: [Linear; 5],
}

impl Classifier {
    /// Builds the network of `config` from `vb` (fresh variables from a `VarMap`, or stored
    /// weights).
    pub fn new(config: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut stages = Vec::with_capacity(config.channels.len());
        let mut cin = 3;
        for (i, &cout) in config.channels.iter().enumerate() {
            let vs = vb.pp(format!("stages.{i}"));
            let mut blocks = vec![ConvBlock::new(
                cin,
                cout,
                2,
                config.norm_groups,
                vs.pp("0"),
            )?];
            for j in 1..=config.convs_per_stage {
                blocks.push(ConvBlock::new(
                    cout,
                    cout,
                    1,
                    config.norm_groups,
                    vs.pp(j.to_string()),
                )?);
            }
            stages.push(blocks);
            cin = cout;
        }
        let side = config.final_side();
        let hidden = candle_nn::linear(cin * side * side, config.hidden, vb.pp("hidden"))?;
        let vh = vb.pp("heads");
        let head = |a: Attribute| candle_nn::linear(config.hidden, a.classes(), vh.pp(a.name()));
        let heads = [
            head(Attribute::Glyph)?,
            head(Attribute::Colour)?,
            head(Attribute::Background)?,
            head(Attribute::Position)?,
            head(Attribute::Size)?,
        ];
        Ok(Self {
            config: config.clone(),
            stages,
            hidden,
            heads,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The feature map after stage `stage` (`[B, channels[stage], S >> (stage + 1), ...]`)
    /// of a batch `x` `[B, 3, S, S]` in [-1, 1]: what a diffusion UNet's feature alignment
    /// learns to predict (`kakusan_train::tasks::feature_alignment`).
    pub fn stage_features(&self, x: &Tensor, stage: usize) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        let s = self.config.image_size;
        if (c, h, w) != (3, s, s) {
            return Err(EvalError::Config(format!(
                "the classifier takes [batch, 3, {s}, {s}] pictures, got {:?}",
                x.dims()
            )));
        }
        let blocks = self.stages.get(..=stage).ok_or_else(|| {
            EvalError::Config(format!(
                "the classifier has {} stages, no stage {stage}",
                self.stages.len()
            ))
        })?;
        let mut x = x.clone();
        for block in blocks.iter().flatten() {
            x = block.forward(&x)?;
        }
        Ok(x)
    }

    /// The logits of a batch `x` `[B, 3, S, S]` in [-1, 1], S = `config.image_size`.
    pub fn forward(&self, x: &Tensor) -> Result<Logits> {
        // `validate` guarantees at least one stage.
        let x = self.stage_features(x, self.stages.len() - 1)?;
        let features = self.hidden.forward(&x.flatten_from(1)?)?.silu()?;
        let logits = [0, 1, 2, 3, 4].map(|i| self.heads[i].forward(&features));
        let [a, b, c, d, e] = logits;
        Ok(Logits([a?, b?, c?, d?, e?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn heads_have_the_class_counts_of_kakusan_data() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let model = Classifier::new(&ClassifierConfig::default(), vb).unwrap();
        let x = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
        let logits = model.forward(&x).unwrap();
        let dims: Vec<Vec<usize>> = logits.0.iter().map(|t| t.dims().to_vec()).collect();
        assert_eq!(
            dims,
            vec![
                vec![2, 18],
                vec![2, 10],
                vec![2, 10],
                vec![2, 9],
                vec![2, 2]
            ]
        );
        // The shipped size bound: ≤ 2 MB of f32 weights.
        let params: usize = map.all_vars().iter().map(|v| v.elem_count()).sum();
        assert!(params * 4 <= 2_000_000, "{params} parameters");
    }

    #[test]
    fn rejects_unbuildable_configs_and_wrong_inputs() {
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let odd = ClassifierConfig {
            image_size: 60,
            ..ClassifierConfig::default()
        };
        assert!(Classifier::new(&odd, vb.clone()).is_err());
        let groups = ClassifierConfig {
            norm_groups: 5,
            ..ClassifierConfig::default()
        };
        assert!(Classifier::new(&groups, vb.clone()).is_err());
        let model = Classifier::new(&ClassifierConfig::default(), vb).unwrap();
        let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let err = model.forward(&x).unwrap_err().to_string();
        assert!(err.contains("[batch, 3, 64, 64]"), "{err}");
    }
}
