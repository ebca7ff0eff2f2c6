//! The latent distribution the VAE encoder predicts (diffusers'
//! `DiagonalGaussianDistribution`): a mean and a log variance per latent element, the log
//! variance clamped to [-30, 20]. Sampling takes its noise from the caller so seeds stay in
//! the caller's hands.

use super::error::At;
use super::VaeError;
use candle_core::Tensor;

/// Lower clamp of the log variance (diffusers).
const LOGVAR_MIN: f64 = -30.0;
/// Upper clamp of the log variance (diffusers).
const LOGVAR_MAX: f64 = 20.0;

/// A diagonal Gaussian over latents `[B, C, h, w]`.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// Mean.
    pub mean: Tensor,
    /// Log variance, already clamped.
    pub logvar: Tensor,
}

impl DiagonalGaussian {
    /// Splits encoder moments `[B, 2C, h, w]` into mean (first C channels) and log variance.
    pub fn from_moments(moments: &Tensor) -> Result<Self, VaeError> {
        let dims = moments.dims();
        if dims.len() != 4 || !dims[1].is_multiple_of(2) {
            return Err(VaeError::Input {
                name: "moments",
                expected: "[batch, 2 * latent_channels, h, w]".into(),
                got: dims.to_vec(),
            });
        }
        let c = dims[1] / 2;
        let mean = moments.narrow(1, 0, c).running("posterior")?;
        let logvar = moments
            .narrow(1, c, c)
            .and_then(|t| t.clamp(LOGVAR_MIN, LOGVAR_MAX))
            .running("posterior")?;
        Ok(Self { mean, logvar })
    }

    /// The most likely latent: the mean.
    pub fn mode(&self) -> &Tensor {
        &self.mean
    }

    /// Standard deviation `exp(0.5 * logvar)`.
    pub fn std(&self) -> Result<Tensor, VaeError> {
        (&self.logvar * 0.5)
            .and_then(|t| t.exp())
            .running("posterior std")
    }

    /// `mean + std * noise` for standard-normal `noise` of the latent's shape.
    pub fn sample_with(&self, noise: &Tensor) -> Result<Tensor, VaeError> {
        if noise.dims() != self.mean.dims() {
            return Err(VaeError::Input {
                name: "noise",
                expected: format!("{:?} (the latent's shape)", self.mean.dims()),
                got: noise.dims().to_vec(),
            });
        }
        let scaled = (self.std()? * noise).running("posterior sample")?;
        (&self.mean + scaled).running("posterior sample")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn splits_clamps_and_samples() {
        let dev = Device::Cpu;
        // mean channel = [1, 2], logvar channel = [-40 (clamped to -30), ln 4].
        let m = Tensor::new(&[1.0f32, 2.0, -40.0, 4f32.ln()], &dev)
            .unwrap()
            .reshape((1, 2, 1, 2))
            .unwrap();
        let g = DiagonalGaussian::from_moments(&m).unwrap();
        let lv: Vec<f32> = g.logvar.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(lv[0], -30.0);
        let noise = Tensor::new(&[1.0f32, -1.0], &dev)
            .unwrap()
            .reshape((1, 1, 1, 2))
            .unwrap();
        let s: Vec<f32> = g
            .sample_with(&noise)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((s[0] - (1.0 + (-15f32).exp())).abs() < 1e-6);
        assert!((s[1] - 0.0).abs() < 1e-6, "2 - 2 * 1 = {}", s[1]);
        let bad = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
        assert!(g.sample_with(&bad).is_err());
    }
}
