//! Command-line arguments, as clap parses them. Turning them into a `Job` happens in the
//! command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kakusan",
    version,
    about = "Stable Diffusion in Rust: prompts become pictures"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Generate images from a prompt (txt2img, or img2img with --init-image).
    Generate(GenerateArgs),
    /// Print the generation parameters stored in a PNG.
    Info(InfoArgs),
    /// Time each stage of a generation and report peak memory.
    Bench(BenchArgs),
    /// Train kakusan-mini's components on the procedural data set.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Look at the procedural training data.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Measure prompt adherence: generate held-out prompts with fixed seeds and let the
    /// evaluator read what was drawn.
    Eval(EvalArgs),
    /// Look at what a prompt becomes (A1111's prompt language).
    #[command(subcommand)]
    Prompt(PromptCommand),
    /// List the samplers and schedules, one line each.
    Samplers,
    /// The prompt laboratory: Taguchi parameter design of prompts, measured by the evaluator.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Draw and measure every picture of an experiment file (resumable: a killed run
    /// continues and never draws a picture twice), then analyse it: SN ratios, response
    /// tables, effect plots, ANOVA, predicted optimum, report.html.
    Run(LabArgs),
    /// Draw the predicted optimum over the same noise conditions and set its observed SN
    /// ratio against the prediction (run `lab run` first).
    Confirm(LabArgs),
    /// Search the template's factor levels with the response as the reward: Thompson
    /// sampling against random search and the orthogonal array at the same number of
    /// pictures; optimize.csv and the reward-per-picture plot optimize.png.
    Optimize(LabOptimizeArgs),
    /// T-method unit spaces: reference pictures that are "as intended", read by the
    /// evaluator.
    #[command(subcommand)]
    Unitspace(UnitspaceCommand),
}

#[derive(Debug, Args)]
pub struct LabOptimizeArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// Pictures each strategy may draw [default: the orthogonal array's rows x noise
    /// conditions].
    #[arg(long)]
    pub budget: Option<usize>,
    /// Repeats of the randomised strategies (each with its own random stream).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// How close to the best combination found counts as having found it [default: the
    /// standard error of a combination's value, measured from the pictures drawn: closer
    /// than that, the noise conditions cannot tell two combinations apart].
    #[arg(long)]
    pub tolerance: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum UnitspaceCommand {
    /// Build a unit space from a folder of reference pictures (PNG, JPEG, WebP, BMP) and
    /// write it as JSON.
    Build(UnitspaceBuildArgs),
    /// Score pictures against a unit space: sensitivity Y1 = beta, noise Y2, SN ratio and
    /// Mahalanobis distance D, one line each.
    Score(UnitspaceScoreArgs),
}

#[derive(Debug, Args)]
pub struct UnitspaceBuildArgs {
    /// The folder of reference pictures (at least 3).
    pub folder: PathBuf,
    /// Where to write the unit space.
    #[arg(long, short = 'o', default_value = "unitspace.json")]
    pub out: PathBuf,
    /// The evaluator folder (default: the shipped models/kakusan-eval).
    #[arg(long)]
    pub evaluator: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnitspaceScoreArgs {
    /// A unit space written by `lab unitspace build`.
    pub unitspace: PathBuf,
    /// Pictures, or folders of pictures, to score.
    #[arg(required = true)]
    pub pictures: Vec<PathBuf>,
    /// The evaluator folder (default: the shipped models/kakusan-eval).
    #[arg(long)]
    pub evaluator: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// The experiment file (TOML; see examples/lab/).
    pub experiment: PathBuf,
    /// The run folder [default: lab/<experiment file name>].
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The evaluator folder (default: the shipped models/kakusan-eval).
    #[arg(long)]
    pub evaluator: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PromptCommand {
    /// Print, as JSON, the LoRA calls, AND parts, schedule, emphasis pieces and 77-token
    /// chunks (ids, token strings, weights) of a prompt.
    Explain(PromptExplainArgs),
}

#[derive(Debug, Args)]
pub struct PromptExplainArgs {
    pub prompt: String,
    /// The negative prompt (same language, no AND, no extra networks).
    #[arg(long)]
    pub negative: Option<String>,
    /// Sampling steps the schedule covers.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    /// The sampler (A1111 or ComfyUI name): A1111's second-order samplers (Heun, DPM2,
    /// DPM2 a, DPM++ 2S a, DPM++ SDE, Restart) build the schedule over twice the steps,
    /// counted in model calls, and so does `generate`.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Steps of a hires pass: the schedule for that pass (fractions count from 1.0, step
    /// numbers from --steps).
    #[arg(long)]
    pub hires_steps: Option<u32>,
    /// A1111's "old prompt editing timelines": numbers below 1 are fractions.
    #[arg(long)]
    pub old_scheduling: bool,
    /// a1111, or novelai ({a} multiplies by 1.05).
    #[arg(long, default_value = "a1111")]
    pub dialect: String,
    /// original (mean-restoring), no-norm, ignore or none (brackets are text).
    #[arg(long, default_value = "original")]
    pub emphasis: String,
    /// Textual-inversion embeddings folder whose names are shown as `<embedding:name>` slots
    /// [default: `embeddings/` next to --model, when given].
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// The model whose tokenizer to use (a diffusers folder, a single file, or a tokenizer
    /// folder); default: the built-in model's, else the bundled CLIP vocabulary.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The evaluator folder (default: the shipped models/kakusan-eval).
    #[arg(long)]
    pub evaluator: Option<PathBuf>,
    /// Number of prompts (a quarter of them two-object).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Seed of the prompt set; prompt i is generated with seed `seed * 1000 + i`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance scale [default: the model's own (its
    /// generation_defaults.json; kakusan-mini: 2.5), else 7].
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Sampler [default: the model's own (its generation_defaults.json), else Euler a].
    #[arg(long)]
    pub sampler: Option<String>,
    /// The grid of generated pictures with their prompts and misses.
    #[arg(long, default_value = "eval-grid.png")]
    pub grid: PathBuf,
    /// Instead of generating: judge a VAE folder (config.json + weights, what `kakusan
    /// train vae` exports) by how well the evaluator reads its reconstructions of held-out
    /// one-object pictures.
    #[arg(long)]
    pub reconstruct: Option<PathBuf>,
    /// Draw every object of the prompt set as this glyph (a shape word or a digit), e.g.
    /// `moon`, the novel shape the base model never saw, to measure a fine-tune.
    #[arg(long)]
    pub glyph: Option<String>,
    /// Exit with an error when one-object adherence misses kakusan-mini's targets
    /// (colour 90 %, shape/digit 85 %, position 85 %, background 90 %).
    #[arg(long)]
    pub check_targets: bool,
    /// Which prompts: held-out (glyph x colour pairs training never showed; the targets'
    /// set) or train (pairs the model was trained on: tells missing composition from
    /// missing drawing).
    #[arg(long, default_value = "held-out")]
    pub split: String,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Stage 1: the autoencoder. Exports the EMA weights to OUT/vae when done.
    Vae(TrainArgs),
    /// Stage 2: text encoder + UNet over a trained VAE. Exports a diffusers folder to
    /// OUT/model when done.
    Unet(TrainArgs),
    /// The evaluator's attribute classifier. Exports it to OUT/model.
    Classifier(TrainArgs),
    /// Write a run's newest checkpoint in a compact form small enough to commit (weights
    /// f16, second moments bf16, no first moments or EMA) with its loss log. Copy the
    /// folder back to a run folder and `--resume` to continue.
    Compact(CompactArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The run folder (the `--out` of the run).
    pub run: PathBuf,
    /// Where the compact run folder goes.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML file (see training/kakusan-mini/*.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Folder for checkpoints, loss.csv, loss.png and the export.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many more steps (checkpointing first) instead of the configured total.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Start from trained weights instead of a fresh initialisation (fine-tuning, or
    /// continuing from an exported intermediate): a VAE folder for `vae`, a classifier folder
    /// for `classifier` (its heads may have fewer classes: new glyphs start fresh), a diffusers model
    /// folder for `unet` (also `--from`; its own `vae/` and `tokenizer/` are then used).
    /// Ignored when --resume finds a checkpoint.
    #[arg(long, visible_alias = "from")]
    pub init: Option<PathBuf>,
    /// `unet` only: train on a folder of pictures with `.txt` captions (kohya's layout,
    /// `N_concept` subfolders repeated N times) instead of the procedural data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `unet --data` only: share of each batch (0 to below 1) drawn from prior pictures, like
    /// the ones the model already knows, so that fine-tuning does not make it forget them
    /// (DreamBooth's prior preservation): the procedural data of the config's `[data]`, or
    /// the pictures of --prior-data.
    #[arg(long, requires = "data", default_value_t = 0.0)]
    pub prior_fraction: f64,
    /// `unet --data` only: a folder of regularisation pictures with `.txt` captions (kohya's
    /// `reg_data_dir`) as the prior pictures instead of the procedural data.
    #[arg(long, requires = "data")]
    pub prior_data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Write a grid of procedural pictures with their captions.
    Preview(DatasetPreviewArgs),
    /// Write procedural pictures with `.txt` captions into a folder (the layout `kakusan
    /// train unet --data` and kohya read): e.g. the novel shape for a fine-tuning demo.
    Folder(DatasetFolderArgs),
}

/// What procedural data to draw.
#[derive(Debug, Args)]
pub struct DataChoiceArgs {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Draw the held-out attribute combinations instead of the training ones.
    #[arg(long)]
    pub held_out: bool,
    /// Share of objects drawn as a novel glyph (the crescent `moon`, which the built-in
    /// model's training data never had); 1 draws only novel glyphs.
    #[arg(long, default_value_t = 0.0)]
    pub novel_glyphs: f32,
    /// Share of two-object scenes.
    #[arg(long, default_value_t = 0.25)]
    pub two_object_fraction: f32,
}

#[derive(Debug, Args)]
pub struct DatasetFolderArgs {
    /// The folder to write (created if missing; existing files are never replaced).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    #[command(flatten)]
    pub data: DataChoiceArgs,
}

#[derive(Debug, Args)]
pub struct DatasetPreviewArgs {
    /// The PNG to write.
    #[arg(long, short = 'o', default_value = "dataset-preview.png")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 24)]
    pub count: usize,
    #[arg(long, default_value_t = 6)]
    pub columns: usize,
    #[command(flatten)]
    pub data: DataChoiceArgs,
}

/// Where the model comes from and how it runs.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A diffusers folder or a single-file .safetensors checkpoint.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16. On the CPU, bf16 stores the UNet's and the VAE's weights in bf16
    /// (half the memory) and multiplies at bf16 precision with f32 sums (on the CPU's bf16
    /// dot-product instructions, AVX-512 BF16, when it has them); the rest stays f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Override the detected prediction type: eps or v.
    #[arg(long)]
    pub prediction: Option<String>,
    /// For a single-file checkpoint of a non-standard model: a diffusers folder whose
    /// configs (head counts, norm groups, ...) to use with its weights.
    #[arg(long)]
    pub config_from: Option<std::path::PathBuf>,
    /// Folder of textual-inversion embeddings (`.safetensors`), used in prompts by file name
    /// [default: `embeddings/` next to the model].
    #[arg(long)]
    pub embeddings: Option<std::path::PathBuf>,
    /// Folder of LoRA `.safetensors` files, used in prompts as `<lora:name:weight>`
    /// [default: `loras/` next to the model].
    #[arg(long)]
    pub lora_dir: Option<std::path::PathBuf>,
    /// VAE in tiles (512-pixel tiles with shared group-norm statistics and cross-faded
    /// seams): auto (when the whole picture would not fit in memory), always or never.
    #[arg(long, default_value = "auto")]
    pub vae_tiling: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt (may be empty).
    pub prompt: String,
    #[arg(long, short = 'n', default_value = "")]
    pub negative: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance scale [default: the model's own (its
    /// generation_defaults.json; kakusan-mini: 2.5), else 7].
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Seed of the first image; -1 picks a random one (and prints it).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub seed: i64,
    /// Width in pixels (multiple of 8); default: the model's native size.
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels (multiple of 8); default: the model's native size.
    #[arg(long)]
    pub height: Option<usize>,
    /// Number of images; image i uses seed + i.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sampler, A1111 or ComfyUI name ("DPM++ 2M Karras", "Euler a", dpmpp_2m); see
    /// `kakusan samplers`. A comma-separated list ("Euler a,DPM++ 2M,DDIM") renders one
    /// labelled grid PNG, same seed, one cell per sampler (and per schedule of a list).
    /// [default: the model's own (its generation_defaults.json), else Euler a]
    #[arg(long)]
    pub sampler: Option<String>,
    /// Schedule (normal, karras, exponential, polyexponential, sgm_uniform, simple,
    /// ddim_uniform, beta, or model: the folder's diffusers scheduler config); default
    /// normal, or the one named in the sampler.
    #[arg(long)]
    pub schedule: Option<String>,
    #[command(flatten)]
    pub sampler_options: SamplerOptionArgs,
    /// img2img: start from this picture (resized to the output size, A1111's "Just resize").
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// img2img denoising strength in (0, 1].
    #[arg(long, default_value_t = 0.75)]
    pub strength: f64,
    /// A1111's "Clip skip" (1 = last layer).
    #[arg(long, default_value_t = 1)]
    pub clip_skip: usize,
    /// Prompt syntax: a1111, or novelai ({a} multiplies by 1.05).
    #[arg(long, default_value = "a1111")]
    pub dialect: String,
    /// Emphasis: original (mean-restoring, A1111's default), no-norm, ignore or none.
    #[arg(long, default_value = "original")]
    pub emphasis: String,
    #[arg(long, short = 'o', default_value = "outputs")]
    pub output_dir: PathBuf,
    /// Also write the final latents as safetensors.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Write the "sandstorm": the noisy sample and the model's guess every few steps, as a
    /// PNG strip (`steps.png`) or an animation (`steps.gif`), for the first image.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// How many steps the preview shows.
    #[arg(long, default_value_t = 8)]
    pub preview_frames: usize,
}

/// The samplers' knobs (k-diffusion's names).
#[derive(Debug, Args)]
pub struct SamplerOptionArgs {
    /// Ancestral / SDE noise amount (default: the sampler's own, 1 for ancestral and SDE
    /// samplers, 0 for DDIM and DPM fast/adaptive).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Scale of the added noise.
    #[arg(long, default_value_t = 1.0)]
    pub s_noise: f64,
    /// Churn (Euler, Heun, DPM2): noise added before each step, 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub s_churn: f64,
    /// Churn only for sigma >= s_tmin.
    #[arg(long, default_value_t = 0.0)]
    pub s_tmin: f64,
    /// Churn only for sigma <= s_tmax (default: no limit).
    #[arg(long)]
    pub s_tmax: Option<f64>,
    /// SDE samplers: draw from the per-image noise streams instead of a Brownian tree.
    #[arg(long)]
    pub no_brownian: bool,
    /// karras / exponential / polyexponential: the smallest noise level (default: the
    /// model's).
    #[arg(long)]
    pub sigma_min: Option<f64>,
    /// karras / exponential / polyexponential: the largest noise level (default: the
    /// model's).
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// karras / polyexponential: rho (default 7 / 1).
    #[arg(long)]
    pub rho: Option<f64>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    pub image: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    /// UNet steps to time (each a CFG batch of 2).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
}
