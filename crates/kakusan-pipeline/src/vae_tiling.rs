//! When the VAE works in tiles: never, always, or (the default) when decoding the whole
//! picture at once would not fit in the memory available.

use std::str::FromStr;

use kakusan_models::vae::{DEFAULT_OVERLAP, DEFAULT_TILE};

use crate::memory_estimate::{vae_whole_bytes, ModelFootprint};

/// The user's choice (`kakusan generate --vae-tiling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VaeTiling {
    /// Tiles when the whole picture's VAE activations would exceed the available memory.
    #[default]
    Auto,
    /// Always tiles (a picture no larger than one tile is still decoded whole).
    Always,
    /// Never tiles; a picture too large for memory is refused before generating.
    Never,
}

impl FromStr for VaeTiling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "always" | "on" => Ok(Self::Always),
            "never" | "off" => Ok(Self::Never),
            other => Err(format!(
                "unknown VAE tiling {other:?}: expected auto, always or never"
            )),
        }
    }
}

/// How one encode or decode runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeMode {
    /// The whole picture at once.
    Whole,
    /// Tiles of `tile` latent pixels overlapping by `overlap`.
    Tiled {
        /// Tile side in latent pixels.
        tile: usize,
        /// Overlap in latent pixels.
        overlap: usize,
    },
}

/// The default tiles: 64 latent pixels (512 picture pixels at SD's factor 8), overlapping
/// by 16.
pub const DEFAULT_TILES: VaeMode = VaeMode::Tiled {
    tile: DEFAULT_TILE,
    overlap: DEFAULT_OVERLAP,
};

impl VaeTiling {
    /// The mode for a `width` x `height` picture with `available` bytes free (unknown:
    /// whole) beyond the loaded weights.
    pub fn mode(
        self,
        fp: &ModelFootprint,
        width: usize,
        height: usize,
        available: Option<u64>,
    ) -> VaeMode {
        match self {
            Self::Never => VaeMode::Whole,
            Self::Always => DEFAULT_TILES,
            Self::Auto => match available {
                Some(free) if vae_whole_bytes(fp, width, height) > free => DEFAULT_TILES,
                _ => VaeMode::Whole,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_estimate::tests::sd15;

    #[test]
    fn auto_tiles_only_what_does_not_fit() {
        let fp = sd15();
        let gib = 1u64 << 30;
        // 2048x2048 whole needs ~16 GiB of VAE activations.
        assert_eq!(
            VaeTiling::Auto.mode(&fp, 2048, 2048, Some(8 * gib)),
            DEFAULT_TILES
        );
        assert_eq!(
            VaeTiling::Auto.mode(&fp, 2048, 2048, Some(64 * gib)),
            VaeMode::Whole
        );
        assert_eq!(
            VaeTiling::Auto.mode(&fp, 512, 512, Some(8 * gib)),
            VaeMode::Whole
        );
        assert_eq!(VaeTiling::Auto.mode(&fp, 2048, 2048, None), VaeMode::Whole);
        assert_eq!(VaeTiling::Always.mode(&fp, 64, 64, None), DEFAULT_TILES);
        assert_eq!(
            VaeTiling::Never.mode(&fp, 8192, 8192, Some(gib)),
            VaeMode::Whole
        );
        assert_eq!("ON".parse::<VaeTiling>(), Ok(VaeTiling::Always));
        assert!("sometimes".parse::<VaeTiling>().is_err());
    }
}
