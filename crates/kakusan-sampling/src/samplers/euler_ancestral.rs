//! Euler ancestral: an Euler step down to sigma_down, then fresh noise of size sigma_up, with
//! sigma_down^2 + sigma_up^2 = sigma_next^2 (eta scales sigma_up). Noise is drawn at every
//! step, also the last one (diffusers does; it does not change the picture, but keeps each
//! image's generator where diffusers leaves it).

use candle_core::Tensor;

use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::sampler::StepInfo;

/// (sigma_down, sigma_up) for a step from `from` to `to`.
pub fn ancestral_step(from: f64, to: f64, eta: f64) -> (f64, f64) {
    if to == 0.0 || eta == 0.0 {
        return (to, 0.0);
    }
    let up = (eta * (to * to * (from * from - to * to) / (from * from)).sqrt()).min(to);
    let down = (to * to - up * up).sqrt();
    (down, up)
}

pub fn sample_euler_ancestral(
    denoiser: &dyn Denoiser,
    mut x: Tensor,
    sigmas: &[f64],
    noise: &mut dyn NoiseSource,
    eta: f64,
    callback: &mut dyn FnMut(&StepInfo),
) -> Result<Tensor> {
    let total = sigmas.len().saturating_sub(1);
    for i in 0..total {
        let (sigma, next) = (sigmas[i], sigmas[i + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let (down, up) = ancestral_step(sigma, next, eta);
        let d = ((&x - &denoised)? / sigma)?;
        x = (&x + (d * (down - sigma))?)?;
        let n = noise.noise_like(&x)?;
        if up > 0.0 {
            x = (&x + (n * up)?)?;
        }
        callback(&StepInfo {
            step: i,
            total,
            sigma,
            sigma_next: next,
            x: &x,
            denoised: &denoised,
        });
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestral_split_preserves_the_variance() {
        let (down, up) = ancestral_step(3.0, 2.0, 1.0);
        assert!((down * down + up * up - 4.0).abs() < 1e-12);
        assert_eq!(ancestral_step(3.0, 0.0, 1.0), (0.0, 0.0));
    }
}
