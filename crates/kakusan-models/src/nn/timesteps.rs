//! The sinusoidal timestep embedding of diffusers' `get_timestep_embedding` (DDPM style):
//! `freq_i = exp(-ln(10000) * i / (half - downscale_freq_shift))`, `arg = t * freq_i`, then
//! `[sin(arg), cos(arg)]` (or `[cos, sin]` with `flip_sin_to_cos`), zero-padded to an odd
//! width. Computed in f32 with the same operation order as PyTorch so that fractional
//! timesteps near 1000 give the same arguments bit for bit.

use candle_core::{bail, DType, Result, Tensor};

/// The frequencies `exp(-ln(max_period) * i / (half_dim - downscale_freq_shift))` for
/// `i in 0..half_dim`, rounded step by step in f32 as PyTorch evaluates them.
pub fn timestep_frequencies(half_dim: usize, downscale_freq_shift: f64) -> Vec<f32> {
    const MAX_PERIOD: f64 = 10_000.0;
    let neg_log_period = (-MAX_PERIOD.ln()) as f32;
    let denominator = (half_dim as f64 - downscale_freq_shift) as f32;
    (0..half_dim)
        .map(|i| ((neg_log_period * i as f32) / denominator).exp())
        .collect()
}

/// Embeds a `[B]` tensor of (possibly fractional) timesteps as `[B, dim]` f32 sinusoids.
pub fn timestep_sinusoids(
    timesteps: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
) -> Result<Tensor> {
    if timesteps.rank() != 1 {
        bail!(
            "timesteps must be a 1-D tensor [batch], got shape {:?}",
            timesteps.dims()
        );
    }
    let half = dim / 2;
    let freqs = timestep_frequencies(half, downscale_freq_shift);
    let freqs = Tensor::from_vec(freqs, (1, half), timesteps.device())?;
    let args = timesteps
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[&cos, &sin], 1)?
    } else {
        Tensor::cat(&[&sin, &cos], 1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(1, 0, 1)
    } else {
        Ok(emb)
    }
}

/// diffusers' `Timesteps` module: the sinusoidal embedding with fixed options.
#[derive(Debug, Clone, Copy)]
pub struct Timesteps {
    /// Width of the embedding.
    pub dim: usize,
    /// Put the cosines first.
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift` (the UNet config's `freq_shift`).
    pub downscale_freq_shift: f64,
}

impl Timesteps {
    /// Embeds `[B]` timesteps as `[B, dim]` f32.
    pub fn forward(&self, timesteps: &Tensor) -> Result<Tensor> {
        timestep_sinusoids(
            timesteps,
            self.dim,
            self.flip_sin_to_cos,
            self.downscale_freq_shift,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The formula in f64, for comparison.
    fn reference(t: f64, dim: usize, flip: bool, shift: f64) -> Vec<f64> {
        let half = dim / 2;
        let args: Vec<f64> = (0..half)
            .map(|i| t * (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp())
            .collect();
        let sin: Vec<f64> = args.iter().map(|a| a.sin()).collect();
        let cos: Vec<f64> = args.iter().map(|a| a.cos()).collect();
        let mut out = if flip {
            [cos, sin].concat()
        } else {
            [sin, cos].concat()
        };
        if dim % 2 == 1 {
            out.push(0.0);
        }
        out
    }

    #[test]
    fn known_values_small_dimension() {
        // dim 4, shift 1: freqs = [1, 1e-4]; t = 2 -> args [2, 2e-4].
        let t = Tensor::new(&[2.0f32], &Device::Cpu).unwrap();
        let e: Vec<f32> = timestep_sinusoids(&t, 4, false, 1.0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = [2f32.sin(), 2e-4f32.sin(), 2f32.cos(), 2e-4f32.cos()];
        for (g, w) in e.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{e:?} vs {want:?}");
        }
    }

    #[test]
    fn flipped_fractional_and_odd_width_match_the_formula() {
        let ts = [0.0f32, 1.0, 499.5, 999.0, 981.2345];
        let t = Tensor::new(&ts, &Device::Cpu).unwrap();
        for (dim, flip, shift) in [(32, true, 0.0), (33, false, 1.0), (320, true, 0.0)] {
            let e: Vec<Vec<f32>> = timestep_sinusoids(&t, dim, flip, shift)
                .unwrap()
                .to_vec2()
                .unwrap();
            for (row, &tv) in e.iter().zip(&ts) {
                let want = reference(tv as f64, dim, flip, shift);
                assert_eq!(row.len(), dim);
                for (g, w) in row.iter().zip(&want) {
                    // f32 rounding of the argument t*freq (|arg| < 1000) moves sin/cos by up
                    // to ~1e-4; anything structural (order, shift, flip) is off by O(1).
                    assert!((*g as f64 - w).abs() < 2e-4, "dim {dim} t {tv}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn frequencies_follow_pytorch_rounding() {
        let f = timestep_frequencies(4, 0.0);
        assert_eq!(f[0], 1.0);
        // exp(f32(-ln 1e4) * 1 / 4) computed in f32.
        assert_eq!(f[1], ((-(10000f64.ln()) as f32) / 4.0).exp());
    }

    #[test]
    fn rejects_non_vector_timesteps() {
        let t = Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
        assert!(timestep_sinusoids(&t, 8, true, 0.0).is_err());
    }
}
