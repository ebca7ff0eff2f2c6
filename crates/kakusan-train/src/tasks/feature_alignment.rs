//! Feature alignment (after Yu et al. 2024, "Representation Alignment for Generation:
//! Training Diffusion Transformers Is Easier Than You Think", REPA): a training-only
//! objective that asks an inner representation of the UNet, computed from the *noisy*
//! latent, to predict (through a small projector) the features a frozen *teacher* network
//! computes from the *clean* picture, position by position; the loss is one minus the mean
//! cosine similarity.
//!
//! Why: a denoiser has to learn what is in a picture before it can draw it, and learns that
//! slowly from the pixel loss alone. kakusan-mini's UNet from scratch learns colour, place
//! and size of an object within ~3,000 steps but draws blobs for a long time after: the
//! strokes that tell a 6 from an 8 weigh little in the squared error. The teacher (the
//! procedural-data classifier, trained by kakusan in minutes) already separates glyphs; its
//! feature map is a dense target that says "this is the upper bowl of an 8" where the
//! pixel loss only says "this pixel is a bit too dark". The projector lives under its own
//! prefix ([`ALIGNMENT_PREFIX`]): checkpoints carry it, the exported model does not.

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};

use crate::error::{Result, TrainError};

/// Prefix of the projector's variables in checkpoints.
pub const ALIGNMENT_PREFIX: &str = "feature_alignment.";

/// A frozen network whose feature map of the clean pictures the UNet learns to predict.
pub trait FeatureTeacher: Send {
    /// Channels of [`Self::features`].
    fn channels(&self) -> usize;

    /// The feature map `[B, C, h, w]` of `pictures` `[B, 3, H, W]` in [-1, 1].
    fn features(&self, pictures: &Tensor) -> Result<Tensor>;
}

/// The projector (an MLP applied at every position: the UNet's channels -> `hidden` ->
/// `hidden` -> the teacher's channels, SiLU between) and its teacher.
pub struct FeatureAlignment {
    layers: [Linear; 3],
    teacher: Box<dyn FeatureTeacher>,
}

impl FeatureAlignment {
    pub fn new(
        vb: VarBuilder,
        unet_channels: usize,
        hidden: usize,
        teacher: Box<dyn FeatureTeacher>,
    ) -> Result<Self> {
        let err = |e: candle_core::Error| TrainError::Config(format!("feature alignment: {e}"));
        let out = teacher.channels();
        let layers = [
            candle_nn::linear(unet_channels, hidden, vb.pp("proj.0")).map_err(err)?,
            candle_nn::linear(hidden, hidden, vb.pp("proj.1")).map_err(err)?,
            candle_nn::linear(hidden, out, vb.pp("proj.2")).map_err(err)?,
        ];
        Ok(Self { layers, teacher })
    }

    /// The teacher's features of the clean `pictures`, without gradient.
    pub fn targets(&self, pictures: &Tensor) -> Result<Tensor> {
        Ok(self.teacher.features(pictures)?.detach())
    }

    /// One minus the mean cosine similarity between the projected `inner` `[B, C, h, w]`
    /// and the teacher's `targets` `[B, C', h', w']`; the teacher's map is average-pooled
    /// down to `h x w` when it is an integer multiple of it.
    pub fn loss(&self, inner: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = inner.dims4()?;
        let (tb, tc, th, tw) = targets.dims4()?;
        if tb != b || th < h || tw < w || th % h != 0 || tw % w != 0 || th / h != tw / w {
            return Err(TrainError::Config(format!(
                "feature alignment: the teacher's map {:?} does not pool to the UNet's {h}x{w}",
                targets.dims()
            )));
        }
        let targets = if th == h {
            targets.clone()
        } else {
            targets.avg_pool2d(th / h)?
        };
        // [B, C, h, w] -> [B * h * w, C]: one row per position.
        let rows = |t: &Tensor, channels: usize| -> Result<Tensor> {
            Ok(t.permute((0, 2, 3, 1))?
                .contiguous()?
                .reshape((b * h * w, channels))?)
        };
        let mut x = rows(inner, c)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 < self.layers.len() {
                x = x.silu()?;
            }
        }
        let y = rows(&targets, tc)?;
        Ok((1.0 - cosine_rows(&x, &y)?.mean_all()?)?)
    }
}

/// The cosine similarity of each row pair of `a` and `b` (`[N, C]`), `[N]`.
fn cosine_rows(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let norm = |t: &Tensor| -> Result<Tensor> { Ok((t.sqr()?.sum(D::Minus1)? + 1e-8)?.sqrt()?) };
    let dot = (a * b)?.sum(D::Minus1)?;
    Ok(dot.div(&(norm(a)? * norm(b)?)?)?)
}

/// A stand-in teacher for tests: the RGB pictures average-pooled by its factor.
#[cfg(test)]
pub(crate) struct PooledPictures(pub usize);

#[cfg(test)]
impl FeatureTeacher for PooledPictures {
    fn channels(&self) -> usize {
        3
    }
    fn features(&self, pictures: &Tensor) -> Result<Tensor> {
        Ok(pictures.avg_pool2d(self.0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Optimizer, VarMap};

    /// A fresh projector from `unet_channels` through `hidden` to the pictures pooled by 2.
    fn projector(map: &VarMap, unet_channels: usize, hidden: usize) -> FeatureAlignment {
        let vb = VarBuilder::from_varmap(map, DType::F32, &Device::Cpu);
        FeatureAlignment::new(vb, unet_channels, hidden, Box::new(PooledPictures(2))).unwrap()
    }

    #[test]
    fn cosine_matches_a_hand_computation() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f32, 0.0], [3.0, 4.0]], &dev).unwrap();
        let b = Tensor::new(&[[0f32, 2.0], [6.0, 8.0]], &dev).unwrap();
        let c = cosine_rows(&a, &b).unwrap().to_vec1::<f32>().unwrap();
        assert!(c[0].abs() < 1e-6 && (c[1] - 1.0).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn maps_that_do_not_pool_to_the_unet_level_are_refused() {
        let dev = Device::Cpu;
        let align = projector(&VarMap::new(), 4, 8);
        let inner = Tensor::zeros((2, 4, 4, 4), DType::F32, &dev).unwrap();
        for bad in [(2, 3, 6, 6), (2, 3, 2, 2), (1, 3, 8, 8), (2, 3, 8, 4)] {
            let t = Tensor::zeros(bad, DType::F32, &dev).unwrap();
            let err = align.loss(&inner, &t).unwrap_err();
            assert!(err.to_string().contains("does not pool"), "{bad:?}: {err}");
        }
        let ok = Tensor::ones((2, 3, 8, 8), DType::F32, &dev).unwrap();
        assert!(align.loss(&inner, &ok).is_ok());
    }

    /// Training the projector alone on an inner map that carries the teacher's information
    /// (here: the same pictures, pooled by 4) drives the loss from about 1 (random
    /// directions) towards 0: the gradient reaches every layer through the pooling and
    /// the per-position rows.
    #[test]
    fn the_projector_learns_to_predict_the_teacher() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let align = projector(&map, 3, 16);
        let pictures = Tensor::randn(0f32, 1.0, (4, 3, 16, 16), &dev).unwrap();
        let inner = pictures.avg_pool2d(4).unwrap();
        let targets = align.targets(&pictures).unwrap();
        assert_eq!(targets.dims(), &[4, 3, 8, 8]);
        let loss = |a: &FeatureAlignment| {
            a.loss(&inner, &targets)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let first = loss(&align);
        assert!(first > 0.5 && first < 1.5, "{first}");
        let mut opt = candle_nn::AdamW::new_lr(map.all_vars(), 0.01).unwrap();
        for _ in 0..300 {
            opt.backward_step(&align.loss(&inner, &targets).unwrap())
                .unwrap();
        }
        let last = loss(&align);
        assert!(last < 0.05, "{first} -> {last}");
    }
}
