//! A model's own recommended generation settings: `generation_defaults.json` in a diffusers
//! folder (kakusan's addition; diffusers ignores the file). Settings the user does not give
//! come from it, else from the CLI's usual defaults (A1111's CFG 7). A small model trained
//! on one narrow domain can follow its prompts best at another guidance scale than SD 1.5
//! does (kakusan-mini: CFG 2.5, measured in its model card), as SDXL Turbo wants none; and
//! it can draw cleaner with a deterministic sampler than with the ancestral one A1111
//! starts with (diffusers likewise takes a folder's default sampler from the folder, its
//! `scheduler/` class).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// The file's name inside a diffusers folder.
pub const FILE_NAME: &str = "generation_defaults.json";

/// The guidance scale when neither the user nor the model gives one (A1111's, diffusers').
pub const DEFAULT_CFG: f64 = 7.0;

/// The sampler when neither the user nor the model gives one (A1111's first choice).
pub const DEFAULT_SAMPLER: &str = "Euler a";

/// What `generation_defaults.json` holds; every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationDefaults {
    /// Classifier-free guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// Sampler, as `--sampler` takes it (A1111 or ComfyUI name, optionally with a schedule:
    /// "Euler", "DPM++ 2M Karras").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
}

impl GenerationDefaults {
    /// Reads `model`'s `generation_defaults.json`; a single file, or a folder without the
    /// file, has none (all defaults). A file that is there but unreadable, not this JSON or
    /// out of range is an error that names it.
    pub fn read(model: &Path) -> Result<Self> {
        let path = model.join(FILE_NAME);
        if !model.is_dir() || !path.exists() {
            return Ok(Self::default());
        }
        let bad = |reason: String| {
            PipelineError::Config(format!(
                "{}: {reason}; fix the file or remove it (it only holds recommended settings, \
                 e.g. {{\"guidance_scale\": 4.0, \"sampler\": \"Euler\"}})",
                path.display()
            ))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let defaults: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if let Some(cfg) = defaults.guidance_scale {
            if !(cfg.is_finite() && (0.0..=100.0).contains(&cfg)) {
                return Err(bad(format!(
                    "guidance_scale must be a number from 0 to 100, got {cfg}"
                )));
            }
        }
        if let Some(name) = &defaults.sampler {
            kakusan_sampling::parse_sampler_name(name).map_err(|e| bad(format!("sampler: {e}")))?;
        }
        Ok(defaults)
    }

    /// The guidance scale to use when the user gives none.
    pub fn cfg(&self) -> f64 {
        self.guidance_scale.unwrap_or(DEFAULT_CFG)
    }

    /// The sampler to use when the user gives none.
    pub fn sampler(&self) -> &str {
        self.sampler.as_deref().unwrap_or(DEFAULT_SAMPLER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(content: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            std::fs::write(dir.path().join(FILE_NAME), c).unwrap();
        }
        dir
    }

    #[test]
    fn a_folder_without_the_file_has_the_usual_defaults() {
        let dir = folder_with(None);
        let d = GenerationDefaults::read(dir.path()).unwrap();
        assert_eq!(d, GenerationDefaults::default());
        assert_eq!(d.cfg(), DEFAULT_CFG);
        assert_eq!(d.sampler(), DEFAULT_SAMPLER);
        // A single-file checkpoint (a path that is no folder) neither.
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(GenerationDefaults::read(&file).unwrap().cfg(), DEFAULT_CFG);
    }

    #[test]
    fn the_file_sets_the_guidance_scale() {
        let dir = folder_with(Some(r#"{ "guidance_scale": 4.0 }"#));
        assert_eq!(GenerationDefaults::read(dir.path()).unwrap().cfg(), 4.0);
        let dir = folder_with(Some("{}"));
        assert_eq!(
            GenerationDefaults::read(dir.path()).unwrap().cfg(),
            DEFAULT_CFG
        );
    }

    #[test]
    fn the_file_sets_the_sampler() {
        let dir = folder_with(Some(
            r#"{ "guidance_scale": 4.0, "sampler": "DPM++ 2M Karras" }"#,
        ));
        let d = GenerationDefaults::read(dir.path()).unwrap();
        assert_eq!((d.cfg(), d.sampler()), (4.0, "DPM++ 2M Karras"));
        let dir = folder_with(Some(r#"{ "sampler": "euler" }"#));
        assert_eq!(
            GenerationDefaults::read(dir.path()).unwrap().sampler(),
            "euler"
        );
    }

    #[test]
    fn a_broken_file_is_an_error_that_names_it() {
        for content in [
            "{ guidance_scale: 4 }",
            r#"{ "guidance": 4.0 }"#,
            r#"{ "guidance_scale": "four" }"#,
            r#"{ "guidance_scale": -1.0 }"#,
            r#"{ "guidance_scale": 1000.0 }"#,
            r#"{ "sampler": "Eulr" }"#,
            r#"{ "sampler": 2 }"#,
        ] {
            let dir = folder_with(Some(content));
            let err = GenerationDefaults::read(dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains(FILE_NAME), "{content}: {err}");
        }
    }
}
