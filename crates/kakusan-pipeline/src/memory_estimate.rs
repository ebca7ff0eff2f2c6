//! Estimates the memory a generation needs before anything large is allocated, so an absurd
//! size is refused with a number instead of crashing the machine.
//!
//! The estimate is deliberately simple and errs high: the weights, plus the largest of
//! (a) the UNet's attention scores and activations at full latent resolution for the CFG
//! batch, and (b) the VAE decoder's activations at full image resolution, or its mid-block
//! attention over all latent pixels. Attention never holds more than
//! [`MAX_SCORES_AT_ONCE`] scores (and as many probabilities): it runs in slices, or, on the
//! CPU in f32, in blocks of queries; so activations, not scores, dominate at large sizes.

use kakusan_models::nn::MAX_SCORES_AT_ONCE;

/// What the estimate needs to know about a model.
#[derive(Debug, Clone)]
pub struct ModelFootprint {
    /// Bytes of all weights once loaded in the working dtype.
    pub weight_bytes: u64,
    /// UNet channels at the full latent resolution (block_out_channels[0]).
    pub unet_top_channels: u64,
    /// Attention heads at the full latent resolution (0 when that level has no attention).
    pub unet_top_heads: u64,
    /// Largest VAE decoder channel count at full image resolution (block_out_channels[0]).
    pub vae_top_channels: u64,
    /// Largest VAE channel count overall (used at the latent resolution).
    pub vae_max_channels: u64,
    /// Bytes per element of activations.
    pub activation_bytes: u64,
    /// Downsampling factor from image to latent (8 for Stable Diffusion).
    pub vae_scale: u64,
}

/// Estimated peak bytes for one generation at `width`x`height` with `batch` images
/// (and classifier-free guidance doubling the UNet batch).
pub fn estimate_bytes(fp: &ModelFootprint, width: usize, height: usize, batch: usize) -> u64 {
    let (w, h, b) = (width as u64, height as u64, batch as u64);
    let latent_pixels = (w / fp.vae_scale.max(1)) * (h / fp.vae_scale.max(1));
    let unet_batch = 2 * b;
    let e = fp.activation_bytes;
    let held_scores = |all: u64| all.min(MAX_SCORES_AT_ONCE as u64);
    // Scores and their softmax, [2B, heads, hw, hw] at most, sliced.
    let unet_attention =
        2 * held_scores(unet_batch * fp.unet_top_heads * latent_pixels * latent_pixels) * e;
    // A generous count of live activations of the top level (skip connections included).
    let unet_activations = 24 * unet_batch * fp.unet_top_channels * latent_pixels * e;
    let unet_peak = unet_attention + unet_activations;
    // VAE decode runs one image at a time in our pipeline.
    let image_pixels = w * h;
    // Input, normalised input, convolution output and its bands, the residual: about 8
    // tensors of the top level's size live at once.
    let vae_activations = 8 * fp.vae_top_channels * image_pixels * e;
    let vae_attention = 2 * held_scores(latent_pixels * latent_pixels) * e
        + 4 * fp.vae_max_channels * latent_pixels * e;
    let vae_peak = vae_activations.max(vae_attention);
    fp.weight_bytes + unet_peak.max(vae_peak)
}

/// Bytes of memory available to this process now (Linux `MemAvailable`), if known.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> ModelFootprint {
        ModelFootprint {
            weight_bytes: 4_000_000_000,
            unet_top_channels: 320,
            unet_top_heads: 8,
            vae_top_channels: 128,
            vae_max_channels: 512,
            activation_bytes: 4,
            vae_scale: 8,
        }
    }

    fn gib(bytes: u64) -> f64 {
        bytes as f64 / (1u64 << 30) as f64
    }

    #[test]
    fn sd15_at_512_fits_in_a_few_gib() {
        // 4 GB weights + the VAE's 512x512 activations (8 x 128 channels, 1 GiB) or the
        // UNet's sliced scores (256 MiB) and top-level activations (240 MiB).
        let g = gib(estimate_bytes(&sd15(), 512, 512, 1));
        assert!(g > 4.5 && g < 6.0, "{g}");
    }

    /// SD 1.5 at 1024x1024 fits a 24 GiB machine (its VAE activations dominate: 4 GiB).
    #[test]
    fn sd15_at_1024_fits_in_24_gib() {
        let g = gib(estimate_bytes(&sd15(), 1024, 1024, 1));
        assert!(g > 7.0 && g < 12.0, "{g}");
    }

    #[test]
    fn memory_grows_with_the_pixels_and_scores_stay_bounded() {
        let a = estimate_bytes(&sd15(), 1024, 1024, 1) - 4_000_000_000;
        let b = estimate_bytes(&sd15(), 2048, 2048, 1) - 4_000_000_000;
        assert!(b > 3 * a && b < 5 * a, "{a} {b}");
    }

    #[test]
    fn absurd_sizes_are_refused_by_any_machine() {
        // 8192x8192: 8 x 128 channels x 67 M pixels x 4 bytes = 256 GiB for the VAE alone.
        let g = gib(estimate_bytes(&sd15(), 8192, 8192, 1));
        assert!(g > 200.0, "{g}");
    }
}
