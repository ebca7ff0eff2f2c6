//! Training the text encoder and the UNet together with the standard noise-prediction
//! objective (DDPM / LDM): encode the picture with the frozen VAE, draw a timestep and
//! noise, and regress the noise the UNet sees in `sqrt(ac) z + sqrt(1 - ac) eps`, or, for a
//! v-prediction model (the scheduler config's `prediction_type`, as SD 2.x 768), the
//! velocity `sqrt(ac) eps - sqrt(1 - ac) z`.
//! A share of captions is replaced by the empty prompt so the model also learns the
//! unconditional prediction that classifier-free guidance needs.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use kakusan_core::rng::TorchCpuGenerator;
use kakusan_models::clip::{ClipTextConfig, ClipTextModel, Tokenizer};
use kakusan_models::unet::{UNet2DConditionModel, UNetConfig};
use kakusan_models::vae::AutoencoderKL;
use kakusan_sampling::Prediction;
use serde::{Deserialize, Serialize};

use super::caption_probe::{CaptionLabels, CaptionProbe, PROBE_PREFIX};
use super::captioned_images::{batch_for_step, CaptionedImages};
use super::feature_alignment::{FeatureAlignment, FeatureTeacher, ALIGNMENT_PREFIX};
use super::timestep_sampling::{uniform, TimestepSampling};
use crate::error::{Result, TrainError};
use crate::named_vars::NamedVars;
use crate::trainer::TrainTask;

/// Settings of the diffusion objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffusionTaskConfig {
    pub batch_size: usize,
    /// Probability that a caption is replaced by "" (classifier-free guidance).
    pub caption_dropout: f64,
    /// Seed of timesteps, noise and caption dropout (the data has its own seed).
    pub seed: u64,
    /// "Offset noise": this much of one more Gaussian per picture and latent channel,
    /// constant over the picture, is added to the noise (0: none). The mean of a small
    /// latent is otherwise hardly hidden by the noise even at the last timestep, and the
    /// model learns to keep the mean colour of its starting noise instead of the prompt's.
    pub offset_noise: f64,
    /// "Pyramid" (multi-resolution) noise: Gaussian noise drawn at half, a quarter, ... of
    /// the latent size down to 1x1, upsampled (nearest) and added with weight `d^k` at
    /// level k, the sum rescaled to unit variance (0: none). Like offset noise for every
    /// scale: on 16x16 latents the layout (where the object is) survives plain noise at the
    /// last timestep, and the model learns to put the object where its starting noise
    /// suggests instead of where the prompt says.
    pub pyramid_noise: f64,
    /// Weight of the caption probe's cross-entropy (see [`super::caption_probe`]) added to
    /// the diffusion loss (0: no probe). Only sources that know their captions' labels
    /// (the procedural data set) feed it.
    pub caption_probe_weight: f64,
    /// Min-SNR-gamma loss weighting (after Hang et al. 2023, "Efficient Diffusion Training
    /// via Min-SNR Weighting Strategy"): each picture's squared error is weighted so that,
    /// in terms of the clean latent, it counts at most `gamma` instead of SNR (eps) or
    /// SNR + 1 (v): the nearly clean timesteps, which only polish, stop dominating the
    /// gradient (0: off, the plain mean squared error; the paper uses gamma 5). For eps the
    /// paper's `min(SNR, gamma)`; for v `min(SNR + 1, gamma)`, not the paper's
    /// `min(SNR, gamma)`, which would also take the very noisy timesteps (SNR -> 0) out of
    /// the loss: those are where the prompt places the object, why v was chosen.
    pub min_snr_gamma: f64,
    /// Object-weighted loss (0: off): the squared error of a latent pixel that an object
    /// touches (an object pixel in its cell, or in a neighbouring cell: the glyph's strokes
    /// and the background right around them) counts `1 + object_loss_weight` times,
    /// the rest once; the weighted mean is divided by the mean weight, so the loss keeps its
    /// scale. A glyph covers a few percent of the picture, and in the plain mean its strokes
    /// (what tells a 6 from an 8) weigh as little as that; the VAE's training does the same
    /// in pixels. Object pixels are those away from the picture's background colour (its
    /// median): on photos (a fine-tune's folder) nearly every cell, so nearly uniform.
    pub object_loss_weight: f64,
    /// How the object weight follows an object's size (0: off, every object cell gets
    /// `object_loss_weight`): with power p a picture whose objects touch n latent cells gets
    /// `object_loss_weight * (n_mean / n)^p` on each, n_mean the batch's mean over the
    /// pictures that have objects. At 1 every picture's objects add the same total weight,
    /// whatever their size; at 0.5 a small object's cells weigh ~1.8x the mean and a large
    /// one's ~0.75x. A small glyph covers a few latent cells, so at p = 0 its strokes weigh
    /// a fraction of a large glyph's, and small glyphs are most of what kakusan-mini draws
    /// wrong.
    pub object_area_power: f64,
    /// Weight of the feature alignment objective (see [`super::feature_alignment`]; 0:
    /// off): the UNet's skip connection [`Self::feature_alignment_skip`], through a
    /// projector, predicts a frozen teacher's features of the clean picture (REPA uses 0.5).
    /// The teacher comes from the run's `[model] feature_teacher`.
    pub feature_alignment_weight: f64,
    /// Which skip connection of the UNet's down path is aligned
    /// ([`UNet2DConditionModel::skip_channels`] order; kakusan-mini's wide UNet: 3 is the
    /// first layer of the 8x8 level, 128 channels).
    pub feature_alignment_skip: usize,
    /// After which of the teacher's stages its features are taken (the classifier's
    /// stage 2 ends at 8x8 on 64x64 pictures, 64 channels).
    pub feature_teacher_stage: usize,
    /// Width of the projector's hidden layers.
    pub feature_alignment_hidden: usize,
    /// The distribution of training timesteps (see [`super::timestep_sampling`]).
    pub timesteps: TimestepSampling,
}

impl Default for DiffusionTaskConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            caption_dropout: 0.1,
            seed: 0,
            offset_noise: 0.0,
            pyramid_noise: 0.0,
            caption_probe_weight: 0.0,
            min_snr_gamma: 0.0,
            object_loss_weight: 0.0,
            object_area_power: 0.0,
            feature_alignment_weight: 0.0,
            feature_alignment_skip: 3,
            feature_teacher_stage: 2,
            feature_alignment_hidden: 256,
            timesteps: TimestepSampling::Uniform,
        }
    }
}

/// The latent weights `[B, 1, h, w]` (row-major) of [`DiffusionTaskConfig::object_loss_weight`]
/// for `pictures` whose latents are `latent` = (h, w): 1 plus `weight` on every latent pixel
/// whose cell, or a neighbouring cell, holds an object pixel (one that differs from the
/// picture's background colour: [`super::vae_task::object_pixels`]), 1 elsewhere. With
/// `area_power` p > 0 a picture's `weight` is scaled by `(n_mean / n)^p` (see
/// [`DiffusionTaskConfig::object_area_power`]).
pub fn latent_object_weights(
    pictures: &[image::RgbImage],
    latent: (usize, usize),
    weight: f64,
    area_power: f64,
) -> Vec<f32> {
    let (h, w) = latent;
    let near: Vec<Vec<bool>> = pictures
        .iter()
        .map(|picture| object_cells(picture, latent))
        .collect();
    let counts: Vec<usize> = near
        .iter()
        .map(|cells| cells.iter().filter(|&&c| c).count())
        .collect();
    let with_objects: Vec<f64> = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| n as f64)
        .collect();
    let mean_count = with_objects.iter().sum::<f64>() / with_objects.len().max(1) as f64;
    let mut out = Vec::with_capacity(pictures.len() * h * w);
    for (cells, &n) in near.iter().zip(&counts) {
        let extra = if area_power > 0.0 && n > 0 {
            weight * (mean_count / n as f64).powf(area_power)
        } else {
            weight
        };
        out.extend(
            cells
                .iter()
                .map(|&c| if c { 1.0 + extra as f32 } else { 1.0 }),
        );
    }
    out
}

/// Which latent cells (`latent` = (h, w), row-major) an object touches: an object pixel in
/// the cell or in a neighbouring one.
fn object_cells(picture: &image::RgbImage, latent: (usize, usize)) -> Vec<bool> {
    let (h, w) = latent;
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    // Which latent cells hold object pixels.
    let mut touched = vec![false; h * w];
    for (i, object) in super::vae_task::object_pixels(picture)
        .into_iter()
        .enumerate()
    {
        if object {
            let (row, column) = ((i / width) * h / height, (i % width) * w / width);
            touched[row.min(h - 1) * w + column.min(w - 1)] = true;
        }
    }
    let mut out = Vec::with_capacity(h * w);
    for row in 0..h {
        for column in 0..w {
            out.push((row.saturating_sub(1)..(row + 2).min(h)).any(|r| {
                (column.saturating_sub(1)..(column + 2).min(w)).any(|c| touched[r * w + c])
            }));
        }
    }
    out
}

/// Unit-variance noise of `shape` (`[B, C, H, W]`) with extra energy at coarse scales: see
/// [`DiffusionTaskConfig::pyramid_noise`] (`discount` d).
pub fn pyramid_noise(shape: &[usize], gen: &mut TorchCpuGenerator, discount: f64) -> Vec<f32> {
    let mut out = gen.randn(shape);
    let [b, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let (mut lh, mut lw) = ((h / 2).max(1), (w / 2).max(1));
    let (mut weight, mut variance) = (1.0f64, 1.0f64);
    loop {
        weight *= discount;
        variance += weight * weight;
        let coarse = gen.randn(&[b, c, lh, lw]);
        for plane in 0..b * c {
            for y in 0..h {
                for x in 0..w {
                    let v = coarse[(plane * lh + y * lh / h) * lw + x * lw / w];
                    out[(plane * h + y) * w + x] += (weight * f64::from(v)) as f32;
                }
            }
        }
        if lh == 1 && lw == 1 {
            break;
        }
        (lh, lw) = ((lh / 2).max(1), (lw / 2).max(1));
    }
    let scale = (1.0 / variance.sqrt()) as f32;
    out.iter_mut().for_each(|v| *v *= scale);
    out
}

pub struct DiffusionTask {
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    scaling_factor: f64,
    tokenizer: Tokenizer,
    alphas_cumprod: Vec<f64>,
    vars: NamedVars,
    config: DiffusionTaskConfig,
    data: Box<dyn CaptionedImages>,
    device: Device,
    prediction: Prediction,
    probe: Option<CaptionProbe>,
    alignment: Option<FeatureAlignment>,
}

/// What the UNet regresses: the noise `eps`, or the velocity `a eps - s z` (`a`, `s`: the
/// per-picture `sqrt(ac)` and `sqrt(1 - ac)`, broadcast over the latent `z`). In terms of
/// the picture, an eps error weighs `ac / (1 - ac)` (the SNR) times an error of the implied
/// `z`, a v error `1 / (1 - ac)` = SNR + 1 times: the velocity keeps the high-noise
/// timesteps, where only the prompt can say where an object goes, in the loss.
pub fn regression_target(
    prediction: Prediction,
    z: &Tensor,
    eps: &Tensor,
    a: &Tensor,
    s: &Tensor,
) -> Result<Tensor> {
    Ok(match prediction {
        Prediction::Epsilon => eps.clone(),
        Prediction::VPrediction => (eps.broadcast_mul(a)? - z.broadcast_mul(s)?)?,
    })
}

/// The min-SNR-gamma weight of a picture's squared error at `alphas_cumprod` `ac` (see
/// [`DiffusionTaskConfig::min_snr_gamma`]); 1 when `gamma` is 0.
pub fn min_snr_weight(prediction: Prediction, ac: f64, gamma: f64) -> f64 {
    if gamma <= 0.0 {
        return 1.0;
    }
    let snr = ac / (1.0 - ac).max(1e-12);
    match prediction {
        Prediction::Epsilon => snr.min(gamma) / snr.max(1e-12),
        Prediction::VPrediction => (snr + 1.0).min(gamma) / (snr + 1.0),
    }
}

/// Prefix of the text encoder's variables in checkpoints.
pub const TEXT_PREFIX: &str = "text_encoder.";
/// Prefix of the UNet's variables in checkpoints.
pub const UNET_PREFIX: &str = "unet.";

impl DiffusionTask {
    /// Fresh text encoder and UNet over a trained, frozen `vae`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        text_config: &ClipTextConfig,
        unet_config: &UNetConfig,
        vae: AutoencoderKL,
        tokenizer: Tokenizer,
        alphas_cumprod: Vec<f64>,
        config: DiffusionTaskConfig,
        data: Box<dyn CaptionedImages>,
        device: &Device,
    ) -> Result<Self> {
        // Fresh variables from the task's seed (`seeded_init.rs`): reproducible runs.
        let seed = config.seed;
        let builder = |map: &VarMap| crate::seeded_init::seeded_var_builder(map, seed, device);
        let text_varmap = VarMap::new();
        let unet_varmap = VarMap::new();
        let text_encoder = ClipTextModel::new(builder(&text_varmap), text_config)
            .map_err(|e| TrainError::Config(format!("text encoder config: {e}")))?;
        let unet = UNet2DConditionModel::new(builder(&unet_varmap), unet_config)
            .map_err(|e| TrainError::Config(format!("unet config: {e}")))?;
        let probe_varmap = VarMap::new();
        let probe = (config.caption_probe_weight > 0.0)
            .then(|| CaptionProbe::new(builder(&probe_varmap), text_config.hidden_size))
            .transpose()?;
        let vars = NamedVars::prefixed(&[
            (TEXT_PREFIX, &text_varmap),
            (UNET_PREFIX, &unet_varmap),
            (PROBE_PREFIX, &probe_varmap),
        ]);
        crate::init::initialise(&vars, seed)?;
        let scaling_factor = vae.config().scaling_factor;
        Ok(Self {
            text_encoder,
            unet,
            vae,
            scaling_factor,
            tokenizer,
            alphas_cumprod,
            vars,
            config,
            data,
            device: device.clone(),
            prediction: Prediction::Epsilon,
            probe,
            alignment: None,
        })
    }

    /// Adds the feature alignment objective with `teacher` (needed when the config's
    /// `feature_alignment_weight` is above 0): its projector's fresh variables join the
    /// trained ones under [`ALIGNMENT_PREFIX`].
    pub fn with_feature_teacher(mut self, teacher: Box<dyn FeatureTeacher>) -> Result<Self> {
        let channels = self
            .unet
            .skip_channels()
            .map_err(|e| TrainError::Config(format!("unet config: {e}")))?;
        let skip = self.config.feature_alignment_skip;
        let unet_channels = *channels.get(skip).ok_or_else(|| {
            TrainError::Config(format!(
                "feature_alignment_skip {skip}: the UNet has {} skip connections",
                channels.len()
            ))
        })?;
        let map = VarMap::new();
        let vb = crate::seeded_init::seeded_var_builder(&map, self.config.seed, &self.device);
        let alignment = FeatureAlignment::new(
            vb,
            unet_channels,
            self.config.feature_alignment_hidden,
            teacher,
        )?;
        self.vars = self
            .vars
            .joined(&NamedVars::prefixed(&[(ALIGNMENT_PREFIX, &map)]));
        self.alignment = Some(alignment);
        Ok(self)
    }

    /// The same task regressing `prediction` (default: the noise).
    pub fn with_prediction(mut self, prediction: Prediction) -> Self {
        self.prediction = prediction;
        self
    }

    /// The variables of the model itself (text encoder and UNet), without the training-only
    /// caption probe and alignment projector: what an exported model holds and `--init`
    /// sets.
    pub fn model_vars(&self) -> NamedVars {
        self.vars
            .filtered(|name| !name.starts_with(PROBE_PREFIX) && !name.starts_with(ALIGNMENT_PREFIX))
    }

    /// Text embeddings `[B, 77, D]` of `captions`.
    pub fn encode_text(&self, captions: &[String]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(captions.len() * 77);
        for c in captions {
            ids.extend(self.tokenizer.encode_padded(c, 77));
        }
        let ids = Tensor::from_vec(ids, (captions.len(), 77), &self.device)?;
        self.text_encoder
            .forward(&ids, 1)
            .map_err(|e| TrainError::Config(format!("text encoder: {e}")))
    }
}

impl TrainTask for DiffusionTask {
    fn vars(&self) -> &NamedVars {
        &self.vars
    }

    fn loss(&mut self, step: u64) -> Result<Tensor> {
        let b = self.config.batch_size;
        let batch = batch_for_step(self.data.as_ref(), step, b);
        let mut gen = TorchCpuGenerator::new(self.config.seed.wrapping_add(step));
        let (images, captions): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let first = step * b as u64;
        let mut labels: Vec<Option<CaptionLabels>> = Vec::with_capacity(b);
        let captions: Vec<String> = captions
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let dropped = uniform(&mut gen) < self.config.caption_dropout;
                // An empty caption says nothing: the probe skips it.
                labels.push(match (&self.probe, dropped) {
                    (Some(_), false) => self.data.labels(first + i as u64),
                    _ => None,
                });
                if dropped {
                    String::new()
                } else {
                    c
                }
            })
            .collect();
        let x = kakusan_core::image_io::images_to_tensor(&images)
            .map_err(|e| TrainError::Config(e.to_string()))?
            .to_device(&self.device)?;
        let vae_err = |e: kakusan_models::vae::VaeError| TrainError::Config(e.to_string());
        let posterior = self.vae.encode(&x).map_err(vae_err)?;
        let shape = posterior.mean.dims().to_vec();
        let post_eps = Tensor::from_vec(gen.randn(&shape), shape.as_slice(), &self.device)?;
        let z =
            (posterior.sample_with(&post_eps).map_err(vae_err)? * self.scaling_factor)?.detach();
        let n = self.alphas_cumprod.len();
        let t = self.config.timesteps.draw(&mut gen, b, n);
        let per = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = t
                .iter()
                .map(|&i| f(self.alphas_cumprod[i]) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (b, 1, 1, 1), &self.device)?)
        };
        let a = per(&|ac| ac.sqrt())?;
        let s = per(&|ac| (1.0 - ac).sqrt())?;
        let eps = if self.config.pyramid_noise > 0.0 && shape.len() == 4 {
            pyramid_noise(&shape, &mut gen, self.config.pyramid_noise)
        } else {
            gen.randn(&shape)
        };
        let mut eps = Tensor::from_vec(eps, shape.as_slice(), &self.device)?;
        if self.config.offset_noise > 0.0 {
            let per_channel = [shape[0], shape[1], 1, 1];
            let offset = Tensor::from_vec(
                gen.randn(&per_channel),
                per_channel.as_slice(),
                &self.device,
            )?;
            eps = eps.broadcast_add(&(offset * self.config.offset_noise)?)?;
        }
        let noisy = (z.broadcast_mul(&a)? + eps.broadcast_mul(&s)?)?;
        let timesteps = Tensor::from_vec(
            t.iter().map(|&i| i as f32).collect::<Vec<f32>>(),
            b,
            &self.device,
        )?;
        let context = self.encode_text(&captions)?;
        let unet_err =
            |e: kakusan_models::unet::UNetError| TrainError::Config(format!("unet: {e}"));
        let (pred, alignment_loss) = match &self.alignment {
            Some(alignment) if self.config.feature_alignment_weight > 0.0 => {
                let (pred, inner) = self
                    .unet
                    .forward_with_skip(
                        &noisy,
                        &timesteps,
                        &context,
                        self.config.feature_alignment_skip,
                    )
                    .map_err(unet_err)?;
                let targets = alignment.targets(&x)?;
                (pred, Some(alignment.loss(&inner, &targets)?))
            }
            None if self.config.feature_alignment_weight > 0.0 => {
                return Err(TrainError::Config(
                    "feature_alignment_weight needs a teacher: [model] feature_teacher".into(),
                ))
            }
            _ => (
                self.unet
                    .forward(&noisy, &timesteps, &context)
                    .map_err(unet_err)?,
                None,
            ),
        };
        let target = regression_target(self.prediction, &z, &eps, &a, &s)?;
        let mut squared = (pred - target)?.sqr()?;
        if self.config.min_snr_gamma > 0.0 {
            let w = per(&|ac| min_snr_weight(self.prediction, ac, self.config.min_snr_gamma))?;
            squared = squared.broadcast_mul(&w)?;
        }
        let loss = if self.config.object_loss_weight > 0.0 {
            let (h, w) = (shape[2], shape[3]);
            let weights = latent_object_weights(
                &images,
                (h, w),
                self.config.object_loss_weight,
                self.config.object_area_power,
            );
            let mean_weight = weights.iter().map(|&v| v as f64).sum::<f64>() / weights.len() as f64;
            let weights = Tensor::from_vec(weights, (b, 1, h, w), &self.device)?;
            (squared.broadcast_mul(&weights)?.mean_all()? / mean_weight)?
        } else {
            squared.mean_all()?
        };
        let loss = match alignment_loss {
            Some(a) => {
                tracing::debug!(
                    step,
                    alignment_loss = a.to_scalar::<f32>()?,
                    "feature alignment"
                );
                (loss + (a * self.config.feature_alignment_weight)?)?
            }
            None => loss,
        };
        let probe_loss = match &self.probe {
            Some(probe) => probe.loss(&context, &labels)?,
            None => None,
        };
        Ok(match probe_loss {
            Some(p) => {
                tracing::debug!(step, probe_loss = p.to_scalar::<f32>()?, "caption probe");
                (loss + (p * self.config.caption_probe_weight)?)?
            }
            None => loss,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::feature_alignment::PooledPictures;
    use candle_core::DType;
    use candle_nn::VarBuilder;
    use std::path::PathBuf;

    fn repo_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path)
    }

    fn json(path: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(repo_file(path)).unwrap()).unwrap()
    }

    #[test]
    fn velocity_target() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[[[[2f32]]], [[[-1.0]]]], &dev).unwrap();
        let eps = Tensor::new(&[[[[0.5f32]]], [[[3.0]]]], &dev).unwrap();
        let a = Tensor::new(&[[[[0.8f32]]], [[[0.0]]]], &dev).unwrap();
        let s = Tensor::new(&[[[[0.6f32]]], [[[1.0]]]], &dev).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let e = regression_target(Prediction::Epsilon, &z, &eps, &a, &s).unwrap();
        assert_eq!(flat(e), vec![0.5, 3.0]);
        let v = flat(regression_target(Prediction::VPrediction, &z, &eps, &a, &s).unwrap());
        // 0.8 * 0.5 - 0.6 * 2 = -0.8; at pure noise (a = 0) v = -z.
        assert!((v[0] + 0.8).abs() < 1e-6 && v[1] == 1.0, "{v:?}");
    }

    /// Latent object weights: the cells holding object pixels and their neighbours weigh
    /// 1 + weight, slightly tinted background and far cells 1.
    #[test]
    fn latent_object_weights_cover_the_object_and_its_neighbours() {
        // An 8x8 grey picture, 4x4 latents (cells of 2x2 pixels); a red pixel at (row 2,
        // column 3) -> cell (1, 1); a barely tinted pixel at (7, 7) is background.
        let mut picture = image::RgbImage::from_pixel(8, 8, image::Rgb([100, 100, 100]));
        picture.put_pixel(3, 2, image::Rgb([220, 30, 30]));
        picture.put_pixel(7, 7, image::Rgb([110, 100, 100]));
        let flat = image::RgbImage::from_pixel(8, 8, image::Rgb([100, 100, 100]));
        let w = latent_object_weights(&[picture, flat], (4, 4), 9.0, 0.0);
        assert_eq!(w.len(), 32);
        for row in 0..4 {
            for column in 0..4 {
                let expected = if row <= 2 && column <= 2 { 10.0 } else { 1.0 };
                assert_eq!(w[row * 4 + column], expected, "cell ({row}, {column})");
            }
        }
        assert!(w[16..].iter().all(|&v| v == 1.0));
    }

    /// With an area power, a small object's cells weigh more than a large one's: at power
    /// 1 both pictures' objects add the same total weight; at 0 every object cell gets the
    /// plain weight; a picture without objects stays at 1 either way.
    #[test]
    fn latent_object_weights_follow_the_object_size_with_an_area_power() {
        // 16x16 pictures, 8x8 latents (cells of 2x2 pixels). A one-pixel object at (row 6,
        // column 6) -> cell (3, 3) and its 8 neighbours: 9 cells; an 8x8-pixel block at
        // rows and columns 4..12 -> cells 2..=5 and their neighbours 1..=6: 36 cells.
        let grey = image::Rgb([100, 100, 100]);
        let red = image::Rgb([220, 30, 30]);
        let mut small = image::RgbImage::from_pixel(16, 16, grey);
        small.put_pixel(6, 6, red);
        let mut large = image::RgbImage::from_pixel(16, 16, grey);
        for y in 4..12 {
            for x in 4..12 {
                large.put_pixel(x, y, red);
            }
        }
        let flat = image::RgbImage::from_pixel(16, 16, grey);
        let pictures = [small, large, flat];
        let extra = |w: &[f32], p: usize| -> (usize, f64) {
            let cells: Vec<f32> = w[p * 64..(p + 1) * 64]
                .iter()
                .copied()
                .filter(|&v| v != 1.0)
                .collect();
            let sum = cells.iter().map(|&v| (v - 1.0) as f64).sum();
            (cells.len(), sum)
        };
        let plain = latent_object_weights(&pictures, (8, 8), 4.0, 0.0);
        assert_eq!(plain, latent_object_weights(&pictures, (8, 8), 4.0, -1.0));
        assert_eq!(extra(&plain, 0), (9, 36.0));
        assert_eq!(extra(&plain, 1), (36, 144.0));
        let even = latent_object_weights(&pictures, (8, 8), 4.0, 1.0);
        // n_mean = (9 + 36) / 2 = 22.5: each picture's objects add 4 * 22.5 = 90.
        for p in 0..2 {
            let (n, sum) = extra(&even, p);
            assert!((sum - 90.0).abs() < 1e-3, "picture {p}: {n} cells, {sum}");
        }
        assert_eq!(extra(&even, 0).0, 9);
        assert_eq!(extra(&even, 1).0, 36);
        assert!(even[128..].iter().all(|&v| v == 1.0));
        let half = latent_object_weights(&pictures, (8, 8), 4.0, 0.5);
        // (22.5 / 9)^0.5 = 1.581..., (22.5 / 36)^0.5 = 0.790...
        let cell = |w: &[f32], p: usize| w[p * 64 + 3 * 8 + 3] - 1.0;
        assert!((cell(&half, 0) - 4.0 * 2.5f32.sqrt()).abs() < 1e-5);
        assert!((cell(&half, 1) - 4.0 * 0.625f32.sqrt()).abs() < 1e-5);
    }

    /// Min-SNR weights: an error then counts min(SNR, gamma) (eps) or min(SNR + 1, gamma)
    /// (v) times the implied clean latent's error.
    #[test]
    fn min_snr_weights_cap_the_clean_timesteps() {
        for &ac in &[0.001, 0.2, 0.5, 0.9, 0.999] {
            let snr: f64 = ac / (1.0 - ac);
            let eps = min_snr_weight(Prediction::Epsilon, ac, 5.0) * snr;
            let v = min_snr_weight(Prediction::VPrediction, ac, 5.0) * (snr + 1.0);
            assert!((eps - snr.min(5.0)).abs() < 1e-9);
            assert!((v - (snr + 1.0).min(5.0)).abs() < 1e-9);
            assert_eq!(min_snr_weight(Prediction::VPrediction, ac, 0.0), 1.0);
        }
        // Noisy timesteps keep their weight, clean ones are cut.
        assert!((min_snr_weight(Prediction::VPrediction, 0.001, 5.0) - 1.0).abs() < 1e-12);
        assert!((min_snr_weight(Prediction::Epsilon, 0.2, 5.0) - 1.0).abs() < 1e-12);
        assert!(min_snr_weight(Prediction::Epsilon, 0.999, 5.0) < 0.01);
    }

    /// Every variable of the text encoder and the UNet of kakusan-mini's configs receives a
    /// gradient from the loss. A layer whose op has no backward pass (as candle's fused
    /// softmax) silently leaves its inputs' variables untrained; this finds it.
    /// Pyramid noise keeps unit variance but moves energy to coarse scales: the variance of
    /// 4x4-block means (what decides where an object sits on a 16x16 latent) is several
    /// times that of plain noise (1/16), and zero discount is plain noise.
    #[test]
    fn pyramid_noise_has_unit_variance_and_coarse_energy() {
        let shape = [64usize, 2, 16, 16];
        let block_mean_var = |v: &[f32]| {
            let mut means = Vec::new();
            for plane in v.chunks(256) {
                for by in 0..4 {
                    for bx in 0..4 {
                        let mut sum = 0f64;
                        for y in 0..4 {
                            for x in 0..4 {
                                sum += f64::from(plane[(by * 4 + y) * 16 + bx * 4 + x]);
                            }
                        }
                        means.push(sum / 16.0);
                    }
                }
            }
            means.iter().map(|m| m * m).sum::<f64>() / means.len() as f64
        };
        let variance =
            |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64;
        let plain = pyramid_noise(&shape, &mut TorchCpuGenerator::new(5), 0.0);
        let pyramid = pyramid_noise(&shape, &mut TorchCpuGenerator::new(5), 0.8);
        assert!((variance(&plain) - 1.0).abs() < 0.05);
        assert!(
            (variance(&pyramid) - 1.0).abs() < 0.08,
            "{}",
            variance(&pyramid)
        );
        let (p, q) = (block_mean_var(&plain), block_mean_var(&pyramid));
        assert!((p - 1.0 / 16.0).abs() < 0.015, "plain block means {p}");
        assert!(q > 4.0 * p, "pyramid block means {q} vs plain {p}");
    }

    /// Asking for feature alignment without a teacher is an error, not a silent no-op.
    #[test]
    fn feature_alignment_without_a_teacher_is_refused() {
        let mut task = tiny_task(DiffusionTaskConfig {
            batch_size: 1,
            feature_alignment_weight: 0.5,
            ..Default::default()
        });
        let err = task.loss(0).unwrap_err();
        assert!(err.to_string().contains("feature_teacher"), "{err}");
    }

    fn tiny_task(config: DiffusionTaskConfig) -> DiffusionTask {
        let dev = Device::Cpu;
        let text: ClipTextConfig =
            serde_json::from_value(json("training/kakusan-mini/text_encoder_config.json")).unwrap();
        let unet: UNetConfig =
            serde_json::from_value(json("training/kakusan-mini/unet_config.json")).unwrap();
        let vae_config: kakusan_models::vae::VaeConfig =
            serde_json::from_value(json("training/kakusan-mini/vae_config.json")).unwrap();
        let vae_map = VarMap::new();
        let vae = AutoencoderKL::new(
            VarBuilder::from_varmap(&vae_map, DType::F32, &dev),
            &vae_config,
        )
        .unwrap();
        let tokenizer = Tokenizer::from_folder(repo_file("tests/fixtures/tokenizer")).unwrap();
        let alphas: Vec<f64> = (0..1000).map(|i| 1.0 - (i as f64 + 1.0) / 1001.0).collect();
        let data = crate::tasks::ProceduralImages::new(&Default::default()).unwrap();
        DiffusionTask::new(
            &text,
            &unet,
            vae,
            tokenizer,
            alphas,
            config,
            Box::new(data),
            &dev,
        )
        .unwrap()
    }

    #[test]
    fn every_variable_receives_a_gradient() {
        let dev = Device::Cpu;
        let config = DiffusionTaskConfig {
            batch_size: 2,
            caption_dropout: 0.0,
            seed: 3,
            offset_noise: 0.1,
            pyramid_noise: 0.0,
            caption_probe_weight: 0.5,
            min_snr_gamma: 5.0,
            object_loss_weight: 4.0,
            object_area_power: 0.5,
            feature_alignment_weight: 0.5,
            ..Default::default()
        };
        let mut task = tiny_task(config)
            // 64x64 pictures pooled to 8x8, the level of skip connection 3.
            .with_feature_teacher(Box::new(PooledPictures(8)))
            .unwrap();
        assert!(task
            .vars()
            .iter()
            .any(|(n, _)| n.starts_with(ALIGNMENT_PREFIX)));
        assert!(!task
            .model_vars()
            .iter()
            .any(|(n, _)| n.starts_with(ALIGNMENT_PREFIX)));
        // conv_out starts at zero, which zeroes every upstream gradient; give it values.
        for (name, var) in task.vars().iter() {
            if name == "unet.conv_out.weight" {
                let t = var.as_tensor();
                var.set(&Tensor::randn(0f32, 0.1, t.shape(), &dev).unwrap())
                    .unwrap();
            }
        }
        let grads = task.loss(0).unwrap().backward().unwrap();
        let missing: Vec<&str> = task
            .vars()
            .iter()
            .filter(|(_, v)| {
                grads
                    .get(v.as_tensor())
                    .map(|g| {
                        g.abs()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f32>()
                            .unwrap()
                    })
                    .unwrap_or(0.0)
                    == 0.0
            })
            .map(|(n, _)| n)
            .collect();
        // The key projection's bias shifts every score of a row equally: softmax ignores it,
        // so its true gradient is zero (up to rounding). Nothing else may be missing.
        let unexpected: Vec<&&str> = missing
            .iter()
            .filter(|n| !n.ends_with("to_k.bias") && !n.ends_with("k_proj.bias"))
            .collect();
        assert!(unexpected.is_empty(), "no gradient for {unexpected:?}");
    }
}
