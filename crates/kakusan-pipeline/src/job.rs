//! The `Job`: every parameter of one generation. The CLI builds it, the pipeline runs it, and
//! the PNG metadata is one serialisation of it (see `Job::to_parameters`).

use std::path::PathBuf;

use kakusan_prompt::{Dialect, EmphasisMode};
use kakusan_sampling::{SamplerOptions, ScheduleKind, ScheduleOptions};

use crate::error::{PipelineError, Result};

/// The largest side we accept before even estimating memory (A1111's UI stops at 2048; we
/// allow more for tiled work later, but a side beyond this is a typo).
pub const MAX_SIDE: usize = 16384;

/// One generation request.
#[derive(Debug, Clone)]
pub struct Job {
    pub prompt: String,
    pub negative_prompt: String,
    /// Seed of the first image; image i of the batch uses `seed + i`.
    pub seed: u64,
    pub steps: usize,
    pub cfg_scale: f64,
    pub width: usize,
    pub height: usize,
    pub batch_size: usize,
    /// Sampler name as the user gave it (A1111 or ComfyUI style).
    pub sampler: String,
    /// Which timestep convention turns the step count into sigmas. A schedule named in
    /// `sampler` (A1111's "DPM++ 2M Karras") takes precedence.
    pub schedule: ScheduleKind,
    /// eta, s_noise, churn (s_churn, s_tmin, s_tmax), Brownian noise for the SDE samplers.
    pub sampler_options: SamplerOptions,
    /// sigma min / max and rho of the karras, exponential and polyexponential schedules.
    pub schedule_options: ScheduleOptions,
    /// img2img: the picture to start from.
    pub init_image: Option<PathBuf>,
    /// img2img denoising strength in (0, 1].
    pub strength: f64,
    /// A1111's "Clip skip": 1 uses the text encoder's last layer.
    pub clip_skip: usize,
    /// Which emphasis syntax the prompts are read in (A1111, or NovelAI's `{}`); recorded in
    /// the PNG metadata as `Prompt dialect` when not A1111.
    pub dialect: Dialect,
    /// A1111's "Emphasis" setting; recorded as A1111 does (`Emphasis: No norm`) when not
    /// `Original`.
    pub emphasis: EmphasisMode,
}

impl Default for Job {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 20,
            cfg_scale: 7.0,
            width: 512,
            height: 512,
            batch_size: 1,
            sampler: "Euler a".into(),
            schedule: ScheduleKind::Normal,
            sampler_options: SamplerOptions::default(),
            schedule_options: ScheduleOptions::default(),
            init_image: None,
            strength: 0.75,
            clip_skip: 1,
            dialect: Dialect::A1111,
            emphasis: EmphasisMode::Original,
        }
    }
}

impl Job {
    /// Checks everything that can be checked without a model.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(PipelineError::InvalidJob(msg));
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 8 != 0 {
                return bad(format!(
                    "{name} {v} is not a positive multiple of 8 (try {})",
                    (v.max(8) / 8) * 8
                ));
            }
            if v > MAX_SIDE {
                return bad(format!(
                    "{name} {v} is larger than {MAX_SIDE}, the largest side kakusan accepts; \
                     choose a smaller size"
                ));
            }
        }
        if self.steps == 0 || self.steps > 10_000 {
            return bad(format!("steps must be 1..=10000, got {}", self.steps));
        }
        if self.batch_size == 0 || self.batch_size > 1024 {
            return bad(format!("batch must be 1..=1024, got {}", self.batch_size));
        }
        if !self.cfg_scale.is_finite() {
            return bad(format!(
                "CFG scale must be a finite number, got {}",
                self.cfg_scale
            ));
        }
        if self.init_image.is_some() && !(self.strength > 0.0 && self.strength <= 1.0) {
            return bad(format!(
                "denoising strength must be in (0, 1], got {}",
                self.strength
            ));
        }
        if self.clip_skip == 0 {
            return bad("clip skip starts at 1 (the last layer)".into());
        }
        Ok(())
    }

    /// The seed of image `i` of the batch (A1111's convention).
    pub fn image_seed(&self, i: usize) -> u64 {
        self.seed.wrapping_add(i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_job_is_valid() {
        Job::default().validate().unwrap();
    }

    #[test]
    fn sizes_must_be_multiples_of_eight() {
        let job = Job {
            width: 500,
            ..Job::default()
        };
        let err = job.validate().unwrap_err().to_string();
        assert!(
            err.contains("width 500") && err.contains("try 496"),
            "{err}"
        );
        let job = Job {
            height: 0,
            ..Job::default()
        };
        assert!(job.validate().is_err());
    }

    #[test]
    fn strength_is_checked_only_for_img2img() {
        let job = Job {
            strength: 1.5,
            ..Job::default()
        };
        job.validate().unwrap();
        let job = Job {
            strength: 1.5,
            init_image: Some("x.png".into()),
            ..Job::default()
        };
        assert!(job.validate().is_err());
    }

    #[test]
    fn batch_images_use_consecutive_seeds() {
        let job = Job {
            seed: u64::MAX,
            ..Job::default()
        };
        assert_eq!(job.image_seed(0), u64::MAX);
        assert_eq!(job.image_seed(1), 0);
    }

    #[test]
    fn schedule_names_parse() {
        assert_eq!(
            "Normal".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::Normal
        );
        assert_eq!(
            "model".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::Model
        );
        assert!("karras?".parse::<ScheduleKind>().is_err());
    }
}
