//! Running a `Job`: conditioning, initial latents (txt2img noise or img2img's noised init
//! image), sampling with classifier-free guidance, and decoding.

use candle_core::{DType, Tensor};
use image::RgbImage;
use kakusan_sampling::{
    build_schedule_with, parse_sampler_name, DiscreteDenoiser, Img2ImgConvention, ScheduleKind,
    TorchBatchNoise,
};

use crate::conditioning::{PromptOptions, ScheduledGuidedUNet};
use crate::error::{PipelineError, Result};
use crate::job::Job;
use crate::memory_estimate::{available_bytes, estimate_bytes, estimate_tiled_bytes};
use crate::stable_diffusion::{vae_scale, StableDiffusion};
use crate::vae_tiling::{VaeMode, VaeTiling};
use kakusan_models::vae::DEFAULT_TILE;

/// What the pipeline reports after each step.
pub struct Progress<'a> {
    /// 0-based step index.
    pub step: usize,
    pub total: usize,
    /// The noise level of the sample the model just saw.
    pub sigma: f64,
    /// That sample, `[B, C, h, w]` in k-diffusion scaling (`x0 + sigma * eps`).
    pub x: &'a Tensor,
    /// The model's current guess of the final latents (x0), same shape.
    pub denoised: &'a Tensor,
}

/// The result of a job.
pub struct Generation {
    /// Final latents `[B, C, h, w]` as diffusers returns them (before 1 / scaling_factor).
    pub latents: Tensor,
    pub images: Vec<RgbImage>,
    pub seeds: Vec<u64>,
    /// The textual-inversion embeddings the prompts used (see [`Conditioning::embeddings`]).
    ///
    /// [`Conditioning::embeddings`]: crate::conditioning::Conditioning::embeddings
    pub embeddings: Vec<String>,
}

/// Checks that a sampler name is known, before any model is loaded.
/// A1111 ("DPM++ 2M Karras") and ComfyUI ("dpmpp_2m") names are accepted.
pub fn check_sampler(name: &str) -> Result<()> {
    parse_sampler_name(name).map(|_| ()).map_err(Into::into)
}

impl StableDiffusion {
    /// Checks a job against this model without allocating anything: the job's own checks,
    /// sizes that the VAE can encode, and the memory estimate (an absurd size or batch is
    /// refused with the estimate in GiB). `generate` runs it first.
    pub fn check_job(&self, job: &Job) -> Result<()> {
        job.validate()?;
        let scale = vae_scale(&self.vae_config);
        if !job.width.is_multiple_of(scale) || !job.height.is_multiple_of(scale) {
            return Err(PipelineError::InvalidJob(format!(
                "width and height must be multiples of {scale}"
            )));
        }
        let need = match self.vae_tiling {
            VaeTiling::Never => {
                estimate_bytes(&self.footprint, job.width, job.height, job.batch_size)
            }
            VaeTiling::Auto | VaeTiling::Always => estimate_tiled_bytes(
                &self.footprint,
                job.width,
                job.height,
                job.batch_size,
                DEFAULT_TILE,
            ),
        };
        if let Some(avail) = available_bytes() {
            if need > avail {
                let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
                return Err(PipelineError::TooLarge {
                    width: job.width,
                    height: job.height,
                    batch: job.batch_size,
                    estimate_gib: gib(need),
                    available_gib: gib(avail),
                });
            }
        }
        Ok(())
    }

    /// Merges the LoRAs `job`'s prompt calls into the networks, unapplying any others (see
    /// `crate::lora`); returns warnings (LoRAs not found or refused). Call it before
    /// [`Self::generate`] whenever the prompt may differ from the last prepared one.
    pub fn prepare_job(&mut self, job: &Job) -> Result<Vec<String>> {
        let (_, extra) = kakusan_prompt::extract_extra_networks(&job.prompt);
        let warnings = self.apply_loras(&extra.loras)?;
        for w in &warnings {
            tracing::warn!("prompt: {w}");
        }
        Ok(warnings)
    }

    /// Runs `job`. Fails if the LoRAs its prompt calls are not the ones applied by the last
    /// [`Self::prepare_job`] (a job without LoRAs needs no preparing while none is applied).
    pub fn generate(&self, job: &Job, progress: &mut dyn FnMut(&Progress)) -> Result<Generation> {
        self.check_job(job)?;
        let (_, extra) = kakusan_prompt::extract_extra_networks(&job.prompt);
        self.check_loras_prepared(&extra.loras)?;
        let (sampler, implied) = parse_sampler_name(&job.sampler)?;
        let kind = implied.unwrap_or(job.schedule);
        let scale = vae_scale(&self.vae_config);
        let b = job.batch_size;
        let seeds: Vec<u64> = (0..b).map(|i| job.image_seed(i)).collect();
        // A1111 spans the prompt schedule over twice the steps for second-order samplers
        // and advances it per model call.
        let conditioning = self.encode_conditioning(
            &job.prompt,
            &job.negative_prompt,
            sampler.prompt_schedule_steps(job.steps),
            job.clip_skip,
            &PromptOptions {
                dialect: job.dialect,
                emphasis: job.emphasis,
            },
        )?;

        let schedule = build_schedule_with(
            kind,
            sampler,
            job.steps,
            &self.scheduler,
            None,
            &job.schedule_options,
        )?;
        let mut noise = TorchBatchNoise::from_seeds(&seeds);
        let latent_shape = [
            b,
            self.vae_config.latent_channels,
            job.height / scale,
            job.width / scale,
        ];
        let sf = self.vae_config.scaling_factor;
        let mut options = job.sampler_options;
        let (x, schedule) = match &job.init_image {
            None => {
                let n = noise.randn(&latent_shape)?.to_device(&self.device)?;
                (schedule.initial_latents(&n)?, schedule)
            }
            Some(path) => {
                let img = kakusan_core::image_io::load_image(path).map_err(|source| {
                    PipelineError::InitImage {
                        path: path.clone(),
                        source: Box::new(source),
                    }
                })?;
                let img =
                    kakusan_core::image_io::resize_just(&img, job.width as u32, job.height as u32);
                let pixels = kakusan_core::image_io::image_to_tensor(&img)?
                    .to_device(&self.device)?
                    .to_dtype(self.dtype)?;
                let posterior = match self.vae_mode(job.width, job.height) {
                    VaeMode::Whole => self.vae.encode(&pixels),
                    VaeMode::Tiled { tile, overlap } => {
                        self.vae.encode_tiled(&pixels, tile, overlap)
                    }
                }
                .map_err(|e| PipelineError::Config(format!("vae: {e}")))?;
                // diffusers samples the posterior with each image's generator, then draws the
                // noise from the same generators.
                let post_noise = noise.randn(&latent_shape)?.to_device(&self.device)?;
                let mut x0s = Vec::with_capacity(b);
                for i in 0..b {
                    let n = post_noise.narrow(0, i, 1)?.to_dtype(self.dtype)?;
                    let z = posterior
                        .sample_with(&n)
                        .map_err(|e| PipelineError::Config(format!("vae: {e}")))?;
                    x0s.push((z.to_dtype(DType::F32)? * sf)?);
                }
                let x0 = Tensor::cat(&x0s, 0)?;
                // The `model` schedule reproduces diffusers' strength arithmetic; the
                // k-diffusion schedules A1111's.
                let convention = match kind {
                    ScheduleKind::Model => Img2ImgConvention::Diffusers,
                    _ => Img2ImgConvention::A1111,
                };
                let cut = schedule.for_img2img(job.strength, convention)?;
                // A1111 spans the SDE samplers' Brownian tree over the whole schedule.
                let positive = schedule.sigmas.iter().copied().filter(|s| *s > 0.0);
                options.brownian_range = options.brownian_range.or(Some((
                    positive.clone().fold(f64::INFINITY, f64::min),
                    positive.fold(0.0, f64::max),
                )));
                let n = noise.randn(&latent_shape)?.to_device(&self.device)?;
                (cut.img2img_latents(&x0, &n)?, cut)
            }
        };
        let guided = ScheduledGuidedUNet {
            unet: &self.unet,
            conditioning: &conditioning,
            batch: b,
            cfg_scale: job.cfg_scale,
            dtype: self.dtype,
            calls: std::cell::Cell::new(0),
        };
        let model_fn = |x_in: &Tensor, t: f64| {
            guided
                .predict(x_in, t)
                .map_err(|e| kakusan_sampling::Error::Model(Box::new(e)))
        };
        let denoiser = DiscreteDenoiser::for_schedule(model_fn, &schedule, self.prediction);
        let total = schedule.steps();
        let x = sampler.sample(&denoiser, x, &schedule, &mut noise, &options, &mut |info| {
            progress(&Progress {
                step: info.step,
                // Restart walks more steps than the schedule has; DPM adaptive reports 0
                // (unknown in advance).
                total: if info.total > 0 { info.total } else { total },
                sigma: info.sigma,
                x: info.x,
                denoised: info.denoised,
            })
        })?;
        let latents = schedule.final_latents(&x)?;
        let images = self.decode_latents(&latents)?;
        Ok(Generation {
            latents,
            images,
            seeds,
            embeddings: conditioning.embeddings.clone(),
        })
    }

    /// Whole or tiled for a `width` x `height` picture, by the model's [`VaeTiling`]
    /// and the memory available now.
    fn vae_mode(&self, width: usize, height: usize) -> VaeMode {
        let mode = self
            .vae_tiling
            .mode(&self.footprint, width, height, available_bytes());
        if let VaeMode::Tiled { tile, .. } = mode {
            let scale = vae_scale(&self.vae_config);
            if width > tile * scale || height > tile * scale {
                tracing::info!(width, height, tile, "VAE in tiles");
            }
        }
        mode
    }

    /// Decodes latents as diffusers returns them (`[B, C, h, w]`, before 1 / scaling_factor)
    /// to pictures, one image at a time.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Vec<RgbImage>> {
        let sf = self.vae_config.scaling_factor;
        let scale = vae_scale(&self.vae_config);
        let b = latents.dim(0)?;
        let mut images = Vec::with_capacity(b);
        for i in 0..b {
            let z = (latents.narrow(0, i, 1)?.to_dtype(DType::F32)? / sf)?
                .to_device(&self.device)?
                .to_dtype(self.dtype)?;
            let (h, w) = (z.dim(2)? * scale, z.dim(3)? * scale);
            let decoded = match self.vae_mode(w, h) {
                VaeMode::Whole => self.vae.decode(&z),
                VaeMode::Tiled { tile, overlap } => self.vae.decode_tiled(&z, tile, overlap),
            }
            .map_err(|e| PipelineError::Config(format!("vae: {e}")))?;
            images.extend(kakusan_core::image_io::tensor_to_images(
                &decoded
                    .to_dtype(DType::F32)?
                    .to_device(&candle_core::Device::Cpu)?,
            )?);
        }
        Ok(images)
    }
}
