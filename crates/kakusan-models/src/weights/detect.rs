//! Detection: what model a single-file (LDM/A1111) checkpoint holds, read from its key names
//! and shapes only: the family (SD 1.x / 2.x, or a clear "not supported yet"), the UNet layout
//! (levels, channels, resnets per level, attention, linear projections, context width), the
//! autoencoder and text-encoder sizes, and the prediction type.
//!
//! What the weights cannot tell is taken from the family's conventions, as ComfyUI and
//! diffusers do:
//! - Attention heads: SD 1.x uses 8 heads at every level; SD 2.x uses heads of 64 channels
//!   (`heads = channels / 64`). Text encoders use heads of 64 channels.
//! - Text-encoder depth: a single-file SD 2.x checkpoint holds all layers of OpenCLIP
//!   (24 for ViT-H); SD 2.x conditions on the penultimate one. The detected text-encoder
//!   configuration therefore has one layer fewer than the file ([`TextDetected::layers_used`]),
//!   exactly like diffusers' SD 2.x folders, which hold the 23 layers: build the text model
//!   from that configuration and use its last layer, never "penultimate" again. (A 23-layer
//!   1024-wide OpenCLIP file was cut already, e.g. converted back from diffusers: it is used
//!   as stored.) [`TextDetected::layers_in_file`] says how many the file has.
//! - Prediction type: see [`Prediction`] and [`detect`].

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device};

use super::error::{Result, WeightsError};
use super::names::{LdmClipNaming, LdmUnetNaming, LdmVaeNaming, OpenClipNaming, UNetLayout};
use super::store::SafetensorsStore;

/// What a denoiser's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prediction {
    /// The noise (SD 1.x, SD 2.x base 512).
    Epsilon,
    /// The velocity v = alpha * eps - sigma * x0 (SD 2.x 768).
    VPrediction,
}

impl Prediction {
    /// diffusers' name (`prediction_type` in scheduler configs).
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::VPrediction => "v_prediction",
        }
    }

    /// Parses diffusers' and common short names: `epsilon`/`eps`, `v_prediction`/`v`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "epsilon" | "eps" => Some(Prediction::Epsilon),
            "v_prediction" | "v-prediction" | "v" | "vpred" | "v_pred" => {
                Some(Prediction::VPrediction)
            }
            _ => None,
        }
    }
}

/// How the prediction type was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PredictionEvidence {
    /// The caller said so.
    Override,
    /// The checkpoint holds a `v_pred` marker key (as written by A1111/ComfyUI tools).
    VPredKey,
    /// The file's `__metadata__` says so (`modelspec.prediction_type`).
    Metadata,
    /// A family that is always epsilon (SD 1.x), or an SD 2.x inpainting model.
    FamilyRule,
    /// ComfyUI's heuristic: the population standard deviation of
    /// `output_blocks.11.1.transformer_blocks.0.norm1.bias` is above 0.09 for v models.
    WeightStatistic { std: f64 },
    /// SD 2.x without usable evidence: v (the 768 models). Tiny test models land here; pass
    /// an override when that is wrong.
    FamilyDefault,
}

/// The model family of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Stable Diffusion 1.x: CLIP ViT-L text encoder, 768-wide context.
    Sd1,
    /// Stable Diffusion 2.x: OpenCLIP ViT-H text encoder, 1024-wide context.
    Sd2,
}

/// Which text encoder naming the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoderKind {
    /// transformers' CLIP names (`cond_stage_model.transformer.*`), SD 1.x.
    Clip,
    /// OpenCLIP names (`cond_stage_model.model.*`), SD 2.x.
    OpenClip,
}

/// The UNet as detected.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetDetected {
    pub prefix: String,
    pub layout: UNetLayout,
    pub in_channels: usize,
    pub out_channels: usize,
    pub cross_attention_dim: usize,
    pub use_linear_projection: bool,
    /// Attention heads per level (diffusers calls this `attention_head_dim`); 0 for levels
    /// without attention.
    pub attention_heads: Vec<usize>,
    /// Transformer blocks per attention, per level (1 for SD 1.x / 2.x).
    pub transformer_layers_per_block: Vec<usize>,
    /// Whether the mid block has cross-attention.
    pub mid_block_has_attention: bool,
}

/// The autoencoder as detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaeDetected {
    pub prefix: String,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

/// The text encoder as detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDetected {
    pub kind: TextEncoderKind,
    pub prefix: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    /// Transformer layers the file holds.
    pub layers_in_file: usize,
    /// Transformer layers the text model is built with (see the module docs).
    pub layers_used: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub projection_dim: usize,
}

/// Everything detection found in a single-file checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub family: Family,
    pub unet: UNetDetected,
    pub vae: VaeDetected,
    pub text: TextDetected,
    pub prediction: Prediction,
    pub prediction_evidence: PredictionEvidence,
    /// Zero-terminal-SNR training marker (`ztsnr` key) present.
    pub zero_terminal_snr: bool,
}

/// What the caller can decide instead of detection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectOptions {
    /// The prediction type, when known (e.g. from a model's documentation or a YAML file).
    pub prediction: Option<Prediction>,
}

/// The threshold of ComfyUI's v-prediction statistic.
const V_STATISTIC_THRESHOLD: f64 = 0.09;
/// The statistic is meaningful only for real-sized models (320 channels at the last level).
const V_STATISTIC_MIN_CHANNELS: usize = 320;
/// The key of that statistic (relative to the UNet prefix).
const V_STATISTIC_KEY: &str = "output_blocks.11.1.transformer_blocks.0.norm1.bias";

/// Reads the store's keys and shapes (and, for SD 2.x without other evidence, one small
/// tensor's values) and says what model it holds. `path` names the checkpoint in errors.
pub fn detect(store: &SafetensorsStore, path: &Path, options: &DetectOptions) -> Result<Detected> {
    let keys = Keys { store, path };
    keys.refuse_unsupported()?;
    let unet = detect_unet(&keys, LdmUnetNaming::PREFIX)?;
    let vae_prefix = [LdmVaeNaming::PREFIX, "vae."]
        .into_iter()
        .find(|p| store.contains(&format!("{p}encoder.conv_in.weight")))
        .ok_or_else(|| {
            keys.not_checkpoint(
                "it holds no autoencoder (first_stage_model.encoder.conv_in.weight)",
            )
        })?;
    let vae = detect_vae(&keys, vae_prefix)?;
    let text = detect_text(&keys)?;
    let family = match text.kind {
        TextEncoderKind::Clip => Family::Sd1,
        TextEncoderKind::OpenClip => Family::Sd2,
    };
    if unet.cross_attention_dim != text.hidden_size {
        return Err(keys.not_checkpoint(&format!(
            "its UNet attends to {}-wide text embeddings but its text encoder makes {}-wide ones",
            unet.cross_attention_dim, text.hidden_size
        )));
    }
    let unet = UNetDetected {
        attention_heads: heads_per_level(family, &unet),
        ..unet
    };
    let (prediction, prediction_evidence) = decide_prediction(&keys, family, &unet, options)?;
    tracing::debug!(
        ?family,
        ?prediction,
        ?prediction_evidence,
        "detected checkpoint"
    );
    Ok(Detected {
        family,
        unet,
        vae,
        text,
        prediction,
        prediction_evidence,
        zero_terminal_snr: store.contains("ztsnr"),
    })
}

/// Key look-ups with the checkpoint's path at hand for messages.
struct Keys<'a> {
    store: &'a SafetensorsStore,
    path: &'a Path,
}

impl Keys<'_> {
    fn has(&self, key: &str) -> bool {
        self.store.contains(key)
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.store.keys().any(|k| k.starts_with(prefix))
    }

    fn shape(&self, key: &str) -> Result<&[usize]> {
        self.store
            .shape(key)
            .ok_or_else(|| self.not_checkpoint(&format!("tensor `{key}` is missing")))
    }

    /// Dimension `dim` of `key`.
    fn dim(&self, key: &str, dim: usize) -> Result<usize> {
        let shape = self.shape(key)?;
        shape.get(dim).copied().ok_or_else(|| {
            self.not_checkpoint(&format!(
                "tensor `{key}` has shape {shape:?}, with no dimension {dim}"
            ))
        })
    }

    /// The distinct indices N of keys `prefix` + `N.` ...
    fn indices_under(&self, prefix: &str) -> BTreeSet<usize> {
        self.store
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter_map(|rest| rest.split('.').next())
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    fn not_checkpoint(&self, detail: &str) -> WeightsError {
        WeightsError::NotACheckpoint {
            path: self.path.to_path_buf(),
            detail: detail.to_string(),
        }
    }

    fn unsupported(&self, family: &str) -> WeightsError {
        WeightsError::UnsupportedModel {
            path: self.path.to_path_buf(),
            family: family.to_string(),
        }
    }

    /// Errors for families we recognise but do not support.
    fn refuse_unsupported(&self) -> Result<()> {
        let unet = LdmUnetNaming::PREFIX;
        if self.has_prefix("conditioner.embedders.") {
            return Err(self.unsupported("a Stable Diffusion XL checkpoint (or another SGM-format model with `conditioner.embedders`)"));
        }
        if self.has_prefix(&format!("{unet}joint_blocks.")) || self.has_prefix("joint_blocks.") {
            return Err(self.unsupported("a Stable Diffusion 3 checkpoint"));
        }
        if self.has_prefix(&format!("{unet}double_blocks.")) || self.has_prefix("double_blocks.") {
            return Err(self.unsupported("a Flux checkpoint"));
        }
        if self.has(&format!("{unet}label_emb.0.0.weight")) {
            return Err(self.unsupported("a Stable unCLIP checkpoint (class-conditioned UNet)"));
        }
        if self.has(&format!("{unet}label_emb.weight")) {
            return Err(self.unsupported("an upscaler checkpoint (noise-level-conditioned UNet)"));
        }
        if self.has_prefix("control_model.") {
            return Err(self.unsupported("a ControlNet"));
        }
        if !self.has(&format!("{unet}input_blocks.0.0.weight")) {
            if self.has("conv_in.weight") && self.has_prefix("down_blocks.") {
                return Err(self.not_checkpoint(
                    "it holds a single diffusers component (keys like `down_blocks.*`), not a whole checkpoint; \
                     open the diffusers folder it belongs to instead",
                ));
            }
            if self.has_prefix("lora_") || self.store.keys().any(|k| k.contains(".lora_")) {
                return Err(self.not_checkpoint("it is a LoRA, not a checkpoint"));
            }
            return Err(self.not_checkpoint(
                "it holds no UNet (model.diffusion_model.input_blocks.0.0.weight)",
            ));
        }
        Ok(())
    }
}

/// One level of the UNet's input blocks, as read.
struct Level {
    channels: usize,
    resnets: usize,
    attention: bool,
    transformer_depth: usize,
}

fn detect_unet(keys: &Keys<'_>, prefix: &str) -> Result<UNetDetected> {
    let k = |rest: &str| format!("{prefix}{rest}");
    let conv_in = keys.shape(&k("input_blocks.0.0.weight"))?;
    let (model_channels, in_channels) = match conv_in {
        [out, inp, _, _] => (*out, *inp),
        other => {
            return Err(keys.not_checkpoint(&format!(
                "UNet conv_in has shape {other:?}, not a 2-D convolution"
            )))
        }
    };
    let out_channels = keys.dim(&k("out.2.weight"), 0)?;

    // Walk the input blocks: resnets (with or without attention) until a downsampler closes a level.
    let mut levels: Vec<Level> = Vec::new();
    let mut current: Option<Level> = None;
    let mut i = 1;
    loop {
        let block = format!("input_blocks.{i}");
        if keys.has(&k(&format!("{block}.0.op.weight"))) {
            let level = current.take().ok_or_else(|| {
                keys.not_checkpoint(&format!("UNet {block} downsamples a level without resnets"))
            })?;
            levels.push(level);
        } else if keys.has(&k(&format!("{block}.0.in_layers.0.weight"))) {
            let channels = keys.dim(&k(&format!("{block}.0.out_layers.3.weight")), 0)?;
            let attention = keys.has_prefix(&k(&format!("{block}.1.")));
            let transformer_depth = if attention {
                keys.indices_under(&k(&format!("{block}.1.transformer_blocks.")))
                    .len()
            } else {
                0
            };
            match current.as_mut() {
                Some(level) => {
                    if level.channels != channels || level.attention != attention {
                        return Err(keys.not_checkpoint(&format!(
                            "UNet {block} differs from the other resnets of its level (channels or attention)"
                        )));
                    }
                    level.resnets += 1;
                }
                None => {
                    current = Some(Level {
                        channels,
                        resnets: 1,
                        attention,
                        transformer_depth,
                    })
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    levels.extend(current.take());
    if levels.is_empty() {
        return Err(keys.not_checkpoint("its UNet has no input blocks"));
    }
    if levels[0].channels != model_channels {
        tracing::warn!(
            model_channels,
            first_level = levels[0].channels,
            "UNet conv_in width differs from the first level's channels"
        );
    }
    let layout = UNetLayout {
        block_out_channels: levels.iter().map(|l| l.channels).collect(),
        layers_per_block: levels.iter().map(|l| l.resnets).collect(),
        down_block_has_attention: levels.iter().map(|l| l.attention).collect(),
    };

    // The output blocks must be those the layout implies.
    let expected_outputs: usize = layout.layers_per_block.iter().map(|l| l + 1).sum();
    let found_outputs = keys.indices_under(&k("output_blocks.")).len();
    if found_outputs != expected_outputs {
        return Err(keys.not_checkpoint(&format!(
            "its UNet has {found_outputs} output blocks where its input blocks imply {expected_outputs}"
        )));
    }

    // The first attention tells projection kind and context width.
    let first_attention =
        (1..i).find(|b| keys.has(&k(&format!("input_blocks.{b}.1.proj_in.weight"))));
    let (use_linear_projection, cross_attention_dim) = match first_attention {
        Some(b) => {
            let proj_in = keys.shape(&k(&format!("input_blocks.{b}.1.proj_in.weight")))?;
            let context = keys.dim(
                &k(&format!(
                    "input_blocks.{b}.1.transformer_blocks.0.attn2.to_k.weight"
                )),
                1,
            )?;
            (proj_in.len() == 2, context)
        }
        None => {
            let context = keys.dim(
                &k("middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
                1,
            )?;
            let proj_in = keys.shape(&k("middle_block.1.proj_in.weight"))?;
            (proj_in.len() == 2, context)
        }
    };
    Ok(UNetDetected {
        prefix: prefix.to_string(),
        in_channels,
        out_channels,
        cross_attention_dim,
        use_linear_projection,
        attention_heads: Vec::new(),
        transformer_layers_per_block: levels.iter().map(|l| l.transformer_depth.max(1)).collect(),
        mid_block_has_attention: keys.has(&k("middle_block.1.proj_in.weight")),
        layout,
    })
}

/// Heads per level by the family's convention (see the module docs).
fn heads_per_level(family: Family, unet: &UNetDetected) -> Vec<usize> {
    unet.layout
        .block_out_channels
        .iter()
        .map(|&channels| match family {
            Family::Sd1 => 8,
            Family::Sd2 => (channels / 64).max(1),
        })
        .collect()
}

fn detect_vae(keys: &Keys<'_>, prefix: &str) -> Result<VaeDetected> {
    let k = |rest: &str| format!("{prefix}{rest}");
    let in_channels = keys.dim(&k("encoder.conv_in.weight"), 1)?;
    let levels = keys.indices_under(&k("encoder.down."));
    if levels.is_empty() || levels.iter().copied().ne(0..levels.len()) {
        return Err(keys.not_checkpoint(
            "its autoencoder's encoder.down.* levels are missing or not numbered 0..n",
        ));
    }
    let block_out_channels = (0..levels.len())
        .map(|l| keys.dim(&k(&format!("encoder.down.{l}.block.0.conv1.weight")), 0))
        .collect::<Result<Vec<_>>>()?;
    let layers_per_block = keys.indices_under(&k("encoder.down.0.block.")).len();
    let latent_channels = keys.dim(&k("decoder.conv_in.weight"), 1)?;
    let out_channels = keys.dim(&k("decoder.conv_out.weight"), 0)?;
    Ok(VaeDetected {
        prefix: prefix.to_string(),
        block_out_channels,
        layers_per_block,
        latent_channels,
        in_channels,
        out_channels,
    })
}

/// The number of heads of a text encoder `hidden` wide (heads of 64 channels).
fn text_heads(hidden: usize) -> usize {
    (hidden / 64).max(1)
}

fn detect_text(keys: &Keys<'_>) -> Result<TextDetected> {
    let open_clip = OpenClipNaming::PREFIX;
    if keys.has(&format!("{open_clip}token_embedding.weight")) {
        let k = |rest: &str| format!("{open_clip}{rest}");
        let token = keys.shape(&k("token_embedding.weight"))?;
        let (vocab_size, hidden_size) = match token {
            [v, h] => (*v, *h),
            other => {
                return Err(
                    keys.not_checkpoint(&format!("OpenCLIP token_embedding has shape {other:?}"))
                )
            }
        };
        let layers_in_file = keys.indices_under(&k("transformer.resblocks.")).len();
        if layers_in_file < 2 {
            return Err(keys.not_checkpoint(&format!(
                "its OpenCLIP text encoder has {layers_in_file} layers; SD 2.x needs the penultimate of at least 2"
            )));
        }
        // ViT-H/14 has 24 layers; a 23-layer one was cut to the penultimate already.
        let layers_used = if hidden_size == 1024 && layers_in_file == 23 {
            23
        } else {
            layers_in_file - 1
        };
        let projection_dim = match keys.store.shape(&k("text_projection")) {
            Some([_, p]) => *p,
            _ => hidden_size,
        };
        return Ok(TextDetected {
            kind: TextEncoderKind::OpenClip,
            prefix: open_clip.to_string(),
            hidden_size,
            intermediate_size: keys.dim(&k("transformer.resblocks.0.mlp.c_fc.weight"), 0)?,
            num_attention_heads: text_heads(hidden_size),
            layers_in_file,
            layers_used,
            vocab_size,
            max_position_embeddings: keys.dim(&k("positional_embedding"), 0)?,
            projection_dim,
        });
    }
    let clip = LdmClipNaming::PREFIX;
    let inner = [format!("{clip}text_model."), clip.to_string()]
        .into_iter()
        .find(|p| keys.has(&format!("{p}embeddings.token_embedding.weight")))
        .ok_or_else(|| {
            keys.not_checkpoint(
                "it holds no text encoder (neither cond_stage_model.transformer.* (SD 1.x) nor cond_stage_model.model.* (SD 2.x))",
            )
        })?;
    let k = |rest: &str| format!("{inner}{rest}");
    let (vocab_size, hidden_size) = match keys.shape(&k("embeddings.token_embedding.weight"))? {
        [v, h] => (*v, *h),
        other => {
            return Err(keys.not_checkpoint(&format!("CLIP token_embedding has shape {other:?}")))
        }
    };
    let layers = keys.indices_under(&k("encoder.layers.")).len();
    Ok(TextDetected {
        kind: TextEncoderKind::Clip,
        prefix: clip.to_string(),
        hidden_size,
        intermediate_size: keys.dim(&k("encoder.layers.0.mlp.fc1.weight"), 0)?,
        num_attention_heads: text_heads(hidden_size),
        layers_in_file: layers,
        layers_used: layers,
        vocab_size,
        max_position_embeddings: keys.dim(&k("embeddings.position_embedding.weight"), 0)?,
        projection_dim: hidden_size,
    })
}

/// Decides the prediction type: override, `v_pred` key, file metadata, family rules,
/// ComfyUI's weight statistic (real-sized SD 2.x only), then the SD 2.x default (v).
fn decide_prediction(
    keys: &Keys<'_>,
    family: Family,
    unet: &UNetDetected,
    options: &DetectOptions,
) -> Result<(Prediction, PredictionEvidence)> {
    if let Some(p) = options.prediction {
        return Ok((p, PredictionEvidence::Override));
    }
    if keys.has("v_pred") {
        return Ok((Prediction::VPrediction, PredictionEvidence::VPredKey));
    }
    if let Some(p) = keys
        .store
        .metadata("modelspec.prediction_type")
        .and_then(Prediction::parse)
    {
        return Ok((p, PredictionEvidence::Metadata));
    }
    if family == Family::Sd1 || unet.in_channels != 4 {
        return Ok((Prediction::Epsilon, PredictionEvidence::FamilyRule));
    }
    let key = format!("{}{V_STATISTIC_KEY}", unet.prefix);
    if let Some([channels]) = keys.store.shape(&key) {
        if *channels >= V_STATISTIC_MIN_CHANNELS {
            let std = population_std(keys, &key)?;
            let prediction = if std > V_STATISTIC_THRESHOLD {
                Prediction::VPrediction
            } else {
                Prediction::Epsilon
            };
            return Ok((prediction, PredictionEvidence::WeightStatistic { std }));
        }
    }
    Ok((Prediction::VPrediction, PredictionEvidence::FamilyDefault))
}

/// The population standard deviation of a tensor's values.
fn population_std(keys: &Keys<'_>, key: &str) -> Result<f64> {
    let values = keys
        .store
        .load(key, DType::F64, &Device::Cpu)?
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| WeightsError::TensorRead {
            path: keys.path.to_path_buf(),
            tensor: key.to_string(),
            detail: e.to_string(),
        })?;
    if values.is_empty() {
        return Ok(0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    Ok(var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_names() {
        assert_eq!(Prediction::parse("v"), Some(Prediction::VPrediction));
        assert_eq!(
            Prediction::parse("V_PREDICTION"),
            Some(Prediction::VPrediction)
        );
        assert_eq!(Prediction::parse("eps"), Some(Prediction::Epsilon));
        assert_eq!(Prediction::parse("epsilon"), Some(Prediction::Epsilon));
        assert_eq!(Prediction::parse("sample"), None);
        assert_eq!(Prediction::VPrediction.diffusers_name(), "v_prediction");
    }
}
