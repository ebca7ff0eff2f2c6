//! Cutting a schedule for img2img's denoising strength.
//!
//! Two conventions are in use for `steps` requested steps and strength `s`:
//! - **diffusers** (`StableDiffusionImg2ImgPipeline.get_timesteps`):
//!   `init_timestep = min(int(steps * s), steps)`, `t_start = steps - init_timestep`; the
//!   run uses `timesteps[t_start..]` and `sigmas[t_start..]`, i.e. `int(steps * s)` model
//!   steps (20 steps at 0.6 -> 12, starting at t = 551 with SD 1.5's leading spacing).
//! - **A1111** (`setup_img2img_steps`, "img2img_fix_steps" off):
//!   `t_enc = int(min(s, 0.999) * steps)`, then `sigmas[steps - t_enc - 1..]`: `t_enc + 1`
//!   steps (20 at 0.6 -> 13). With "img2img_fix_steps" on, A1111 instead builds a schedule
//!   of `int(steps / min(s, 0.999))` steps and runs its last `steps` (pass that longer
//!   schedule and strength 1.0 - not modelled here).
//!
//! Both then start from `init + noise * sigmas[start]`
//! ([`SigmaSchedule::img2img_latents`]).

use super::SigmaSchedule;
use crate::error::{Error, Result};

/// Which tool's strength arithmetic to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Img2ImgConvention {
    /// `int(steps * strength)` steps.
    Diffusers,
    /// `int(min(strength, 0.999) * steps) + 1` steps.
    A1111,
}

/// The index of the first sigma an img2img run at `strength` uses in a schedule of
/// `steps` steps.
pub fn img2img_start(steps: usize, strength: f64, convention: Img2ImgConvention) -> Result<usize> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(Error::InvalidSchedule(format!(
            "denoising strength must lie in [0, 1], got {strength}"
        )));
    }
    let start = match convention {
        Img2ImgConvention::Diffusers => {
            // Python's int() truncates the float64 product.
            let init_timestep = ((steps as f64 * strength) as usize).min(steps);
            steps - init_timestep
        }
        Img2ImgConvention::A1111 => {
            let t_enc = (strength.min(0.999) * steps as f64) as usize;
            steps.saturating_sub(t_enc + 1)
        }
    };
    if start >= steps {
        return Err(Error::InvalidSchedule(format!(
            "strength {strength} with {steps} steps leaves no step to run; raise the strength or the steps"
        )));
    }
    Ok(start)
}

impl SigmaSchedule {
    /// The tail of this schedule that an img2img run at `strength` uses (sigmas,
    /// timesteps and DDIM step targets from the start index on). `init_noise_scale` is
    /// not used by img2img (see [`SigmaSchedule::img2img_latents`]).
    pub fn for_img2img(
        &self,
        strength: f64,
        convention: Img2ImgConvention,
    ) -> Result<SigmaSchedule> {
        self.validate()?;
        let start = img2img_start(self.steps(), strength, convention)?;
        Ok(self.starting_at(start))
    }

    /// The schedule from step `start` on.
    pub fn starting_at(&self, start: usize) -> SigmaSchedule {
        let start = start.min(self.steps());
        SigmaSchedule {
            sigmas: self.sigmas[start..].to_vec(),
            timesteps: self.timesteps[start..].to_vec(),
            step_targets: self.step_targets.as_ref().map(|t| t[start..].to_vec()),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete_schedule::DiscreteSchedule;
    use crate::schedule::k_diffusion;

    #[test]
    fn diffusers_and_a1111_step_counts() {
        assert_eq!(
            img2img_start(20, 0.6, Img2ImgConvention::Diffusers).unwrap(),
            8
        );
        assert_eq!(img2img_start(20, 0.6, Img2ImgConvention::A1111).unwrap(), 7);
        assert_eq!(
            img2img_start(20, 1.0, Img2ImgConvention::Diffusers).unwrap(),
            0
        );
        // A1111 caps at 0.999: 19 + 1 steps from index 0.
        assert_eq!(img2img_start(20, 1.0, Img2ImgConvention::A1111).unwrap(), 0);
        assert_eq!(
            img2img_start(20, 0.0, Img2ImgConvention::A1111).unwrap(),
            19
        );
        assert!(img2img_start(20, 0.0, Img2ImgConvention::Diffusers).is_err());
        assert!(img2img_start(20, 0.04, Img2ImgConvention::Diffusers).is_err());
        assert!(img2img_start(20, 1.5, Img2ImgConvention::Diffusers).is_err());
    }

    #[test]
    fn cut_schedule_keeps_its_tail() {
        let table = DiscreteSchedule::ldm(0.00085, 0.012, 1000).unwrap();
        let full = k_diffusion::normal(&table, 20).unwrap();
        let cut = full.for_img2img(0.6, Img2ImgConvention::Diffusers).unwrap();
        assert_eq!(cut.steps(), 12);
        assert_eq!(cut.sigmas, full.sigmas[8..]);
        assert_eq!(cut.timesteps, full.timesteps[8..]);
        cut.validate().unwrap();
    }
}
