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
/// (and classifier-free guidance doubling the UNet batch), with the VAE decoding the whole
/// picture at once.
pub fn estimate_bytes(fp: &ModelFootprint, width: usize, height: usize, batch: usize) -> u64 {
    fp.weight_bytes + unet_bytes(fp, width, height, batch).max(vae_whole_bytes(fp, width, height))
}

/// [`estimate_bytes`] with the VAE working in tiles of `tile` latent pixels a side.
pub fn estimate_tiled_bytes(
    fp: &ModelFootprint,
    width: usize,
    height: usize,
    batch: usize,
    tile: usize,
) -> u64 {
    fp.weight_bytes
        + unet_bytes(fp, width, height, batch).max(vae_tiled_bytes(fp, width, height, tile))
}

fn held_scores(all: u64) -> u64 {
    all.min(MAX_SCORES_AT_ONCE as u64)
}

fn latent_pixels(fp: &ModelFootprint, width: usize, height: usize) -> u64 {
    let scale = fp.vae_scale.max(1);
    (width as u64 / scale) * (height as u64 / scale)
}

/// The UNet's working memory: attention scores and top-level activations.
fn unet_bytes(fp: &ModelFootprint, width: usize, height: usize, batch: usize) -> u64 {
    let latent_pixels = latent_pixels(fp, width, height);
    let unet_batch = 2 * batch as u64;
    let e = fp.activation_bytes;
    // Scores and their softmax, [2B, heads, hw, hw] at most, sliced.
    let unet_attention =
        2 * held_scores(unet_batch * fp.unet_top_heads * latent_pixels * latent_pixels) * e;
    // A generous count of live activations of the top level (skip connections included).
    let unet_activations = 24 * unet_batch * fp.unet_top_channels * latent_pixels * e;
    unet_attention + unet_activations
}

/// The VAE's part at the latent's resolution: the mid block's attention and activations.
fn vae_latent_stage_bytes(fp: &ModelFootprint, width: usize, height: usize) -> u64 {
    let latent_pixels = latent_pixels(fp, width, height);
    let e = fp.activation_bytes;
    2 * held_scores(latent_pixels * latent_pixels) * e + 4 * fp.vae_max_channels * latent_pixels * e
}

/// The VAE decoding one picture whole (our pipeline decodes one image at a time): input,
/// normalised input, convolution output and its bands, the residual: about 8 tensors of
/// the top level's size live at once, or the latent stage if larger.
pub fn vae_whole_bytes(fp: &ModelFootprint, width: usize, height: usize) -> u64 {
    let vae_activations = 8 * fp.vae_top_channels * (width * height) as u64 * fp.activation_bytes;
    vae_activations.max(vae_latent_stage_bytes(fp, width, height))
}

/// The VAE decoding one picture in tiles of `tile` latent pixels (`kakusan_models::vae`'s
/// tiled decode): the latent stage whole, then one tile's activations at a time, plus the
/// picture's f32 accumulators and the latent stage's output that the tiles are cut from.
pub fn vae_tiled_bytes(fp: &ModelFootprint, width: usize, height: usize, tile: usize) -> u64 {
    let side = (tile as u64) * fp.vae_scale.max(1);
    let tile_pixels = side.min(width as u64) * side.min(height as u64);
    let e = fp.activation_bytes;
    let tile_activations = 8 * fp.vae_top_channels * tile_pixels * e;
    let accumulators = 4 * 4 * (width * height) as u64;
    let latent_out = fp.vae_max_channels * latent_pixels(fp, width, height) * e;
    tile_activations.max(vae_latent_stage_bytes(fp, width, height)) + accumulators + latent_out
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
pub(crate) mod tests {
    use super::*;

    /// SD 1.5's footprint in f32.
    pub(crate) fn sd15() -> ModelFootprint {
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

    /// Tiles take the VAE's full-resolution activations out of the peak: SD 1.5 at
    /// 2048x2048 needs ~20 GiB decoding whole, well under 12 GiB in tiles of 64 latent
    /// pixels; at 512x512 one tile is the whole picture and costs the same.
    #[test]
    fn tiles_bound_the_vae_at_large_sizes() {
        let whole = gib(estimate_bytes(&sd15(), 2048, 2048, 1));
        let tiled = gib(estimate_tiled_bytes(&sd15(), 2048, 2048, 1, 64));
        assert!(whole > 19.0 && tiled < 12.0, "{whole} {tiled}");
        let fp = sd15();
        assert!(vae_tiled_bytes(&fp, 4096, 4096, 64) < vae_whole_bytes(&fp, 4096, 4096) / 8);
        let small = vae_tiled_bytes(&fp, 512, 512, 64);
        assert!(small >= vae_whole_bytes(&fp, 512, 512));
    }

    #[test]
    fn absurd_sizes_are_refused_by_any_machine() {
        // 8192x8192: 8 x 128 channels x 67 M pixels x 4 bytes = 256 GiB for the VAE alone.
        let g = gib(estimate_bytes(&sd15(), 8192, 8192, 1));
        assert!(g > 200.0, "{g}");
        // Tiles do not rescue it: the UNet's activations at 1024x1024 latents are ~60 GiB.
        let g = gib(estimate_tiled_bytes(&sd15(), 8192, 8192, 1, 64));
        assert!(g > 50.0, "{g}");
    }
}
