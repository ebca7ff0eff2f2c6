//! `kakusan prompt explain`: prints, as JSON, everything the model gets from a prompt: the
//! extra networks (LoRA calls), the AND parts with their weights, each part's schedule, and
//! per scheduled text its emphasis pieces and 77-token chunks (ids, token strings, weights).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kakusan_models::clip::Tokenizer;
use kakusan_models::weights::{ModelSource, OpenOptions};
use kakusan_pipeline::stable_diffusion::{bundled_tokenizer_dir, default_model_path};
use kakusan_prompt::{
    explain_with_embeddings, Dialect, EmphasisMode, ExplainOptions, ScheduleOptions, SpecialIds,
};

use crate::cli::{PromptCommand, PromptExplainArgs};

/// The most steps `explain` accepts (an alternation makes one entry per step).
const MAX_STEPS: u32 = 10_000;

pub fn run(cmd: PromptCommand) -> Result<()> {
    match cmd {
        PromptCommand::Explain(args) => run_explain(args),
    }
}

/// The tokenizer folder for `--model`: a model folder's `tokenizer/`, a tokenizer folder
/// itself, a single file's (the bundled CLIP vocabulary), or, without `--model`, the built-in
/// model's or the bundled one.
fn tokenizer_dir(model: Option<&Path>) -> Result<PathBuf> {
    let Some(model) = model else {
        return Ok(default_model_path()
            .map(|m| m.join("tokenizer"))
            .filter(|t| t.is_dir())
            .unwrap_or_else(bundled_tokenizer_dir));
    };
    if model.is_dir() && !model.join("model_index.json").is_file() && !model.join("unet").is_dir() {
        // A tokenizer folder given directly.
        return Ok(model.to_path_buf());
    }
    let open = OpenOptions {
        tokenizer_fallback: Some(bundled_tokenizer_dir()),
        ..OpenOptions::default()
    };
    let source = ModelSource::open_with(model, &open)
        .with_context(|| format!("opening {}", model.display()))?;
    Ok(source
        .tokenizer_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(bundled_tokenizer_dir))
}

fn run_explain(args: PromptExplainArgs) -> Result<()> {
    if args.steps == 0 || args.steps > MAX_STEPS {
        bail!("--steps must be between 1 and {MAX_STEPS}");
    }
    if let Some(h) = args.hires_steps {
        if h == 0 || h > MAX_STEPS {
            bail!("--hires-steps must be between 1 and {MAX_STEPS}");
        }
    }
    let dialect = Dialect::from_name(&args.dialect)
        .with_context(|| format!("unknown --dialect {:?} (a1111 or novelai)", args.dialect))?;
    let emphasis = EmphasisMode::from_name(&args.emphasis).with_context(|| {
        format!(
            "unknown --emphasis {:?} (original, no-norm, ignore or none)",
            args.emphasis
        )
    })?;
    let dir = tokenizer_dir(args.model.as_deref())?;
    let tokenizer = Tokenizer::from_folder(&dir)
        .with_context(|| format!("loading the tokenizer in {}", dir.display()))?;
    let ids = SpecialIds {
        bos: tokenizer.bos_id(),
        eos: tokenizer.eos_id(),
        pad: tokenizer.pad_id(),
        comma: tokenizer.token_id(",</w>"),
    };
    // The schedule spans what `generate` gives it: model calls for second-order samplers.
    let steps = match &args.sampler {
        Some(name) => {
            let (sampler, _) = kakusan_sampling::names::parse_sampler_name(name)?;
            let doubled = sampler.prompt_schedule_steps(args.steps as usize);
            u32::try_from(doubled).unwrap_or(u32::MAX)
        }
        None => args.steps,
    };
    let opts = ExplainOptions {
        schedule: ScheduleOptions {
            steps,
            hires_steps: args.hires_steps,
            old_scheduling: args.old_scheduling,
        },
        dialect,
        emphasis,
    };
    let emb_dir = args.embeddings.clone().or_else(|| {
        args.model
            .as_deref()
            .map(kakusan_pipeline::stable_diffusion::default_embeddings_dir)
    });
    let library = match &emb_dir {
        Some(d) => kakusan_models::weights::EmbeddingLibrary::load_dir_any_width(d)
            .with_context(|| format!("reading embeddings in {}", d.display()))?,
        None => Default::default(),
    };
    let embeddings = kakusan_pipeline::embeddings::PromptEmbeddings::new(library, &tokenizer);
    let mut emb_warnings = Vec::new();
    let mut explained = explain_with_embeddings(
        &args.prompt,
        args.negative.as_deref(),
        &opts,
        &ids,
        &mut |t| tokenizer.encode(t),
        &|id| tokenizer.decode_token(id).map(str::to_string),
        &mut |toks, pos| embeddings.find_at(toks, pos, &mut emb_warnings),
    );
    explained.warnings.extend(emb_warnings);
    #[derive(serde::Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        explained: &'a kakusan_prompt::Explained,
        sampler: Option<&'a str>,
        sampling_steps: u32,
        tokenizer: String,
    }
    let out = Out {
        explained: &explained,
        sampler: args.sampler.as_deref(),
        sampling_steps: args.steps,
        tokenizer: dir.canonicalize().unwrap_or(dir).display().to_string(),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
