//! The "sandstorm" made visible: at chosen steps of a run, the noisy sample the model saw
//! and the model's current guess of the final picture, decoded side by side, as a PNG strip
//! (noisy row above, guess row below) or an animated GIF.

use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};

use crate::error::{PipelineError, Result};
use crate::generation::Progress;
use crate::stable_diffusion::StableDiffusion;

/// One captured step.
pub struct SandstormFrame {
    pub step: usize,
    pub sigma: f64,
    /// The noisy sample, decoded as it stands (scaled to unit variance first).
    pub noisy: RgbImage,
    /// The decoded x0 estimate.
    pub guess: RgbImage,
}

/// The steps (0-based) at which to capture at most `frames` frames of a `total`-step run:
/// evenly spread, always including the first and the last.
pub fn capture_steps(total: usize, frames: usize) -> Vec<usize> {
    if total == 0 || frames == 0 {
        return Vec::new();
    }
    let n = frames.min(total);
    if n == 1 {
        return vec![total - 1];
    }
    let mut steps: Vec<usize> = (0..n)
        .map(|i| (i as f64 * (total - 1) as f64 / (n - 1) as f64).round() as usize)
        .collect();
    steps.dedup();
    steps
}

impl StableDiffusion {
    /// Decodes image `index` of a step's sample and guess.
    pub fn sandstorm_frame(&self, p: &Progress<'_>, index: usize) -> Result<SandstormFrame> {
        let x = p.x.narrow(0, index, 1)?;
        let unit = (x / (1.0 + p.sigma * p.sigma).sqrt())?;
        let noisy = self.decode_latents(&unit)?.pop();
        let guess = self.decode_latents(&p.denoised.narrow(0, index, 1)?)?.pop();
        match (noisy, guess) {
            (Some(noisy), Some(guess)) => Ok(SandstormFrame {
                step: p.step,
                sigma: p.sigma,
                noisy,
                guess,
            }),
            _ => Err(PipelineError::Config("the VAE decoded no picture".into())),
        }
    }
}

/// The frames as a strip: one column per frame, noisy on top, guess below, 2 px gaps.
pub fn strip(frames: &[SandstormFrame]) -> RgbImage {
    let Some(first) = frames.first() else {
        return RgbImage::new(1, 1);
    };
    let (w, h) = first.noisy.dimensions();
    let gap = 2;
    let cols = frames.len() as u32;
    let mut out = RgbImage::from_pixel(cols * (w + gap) - gap, 2 * h + gap, Rgb([255, 255, 255]));
    for (i, f) in frames.iter().enumerate() {
        let x = i as u32 * (w + gap);
        image::imageops::replace(&mut out, &f.noisy, x as i64, 0);
        image::imageops::replace(&mut out, &f.guess, x as i64, (h + gap) as i64);
    }
    out
}

/// The frames as an endless GIF animation, each showing noisy | guess, the last held longer.
pub fn gif(frames: &[SandstormFrame], frame_ms: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(Cursor::new(&mut bytes), 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| PipelineError::Config(format!("gif: {e}")))?;
        for (i, f) in frames.iter().enumerate() {
            let (w, h) = f.noisy.dimensions();
            let mut pair = RgbaImage::from_pixel(2 * w + 2, h, image::Rgba([255, 255, 255, 255]));
            let to_rgba = |img: &RgbImage| image::DynamicImage::ImageRgb8(img.clone()).to_rgba8();
            image::imageops::replace(&mut pair, &to_rgba(&f.noisy), 0, 0);
            image::imageops::replace(&mut pair, &to_rgba(&f.guess), (w + 2) as i64, 0);
            let ms = if i + 1 == frames.len() {
                frame_ms * 4
            } else {
                frame_ms
            };
            let frame = Frame::from_parts(pair, 0, 0, Delay::from_numer_denom_ms(ms, 1));
            encoder
                .encode_frame(frame)
                .map_err(|e| PipelineError::Config(format!("gif: {e}")))?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_steps_spread_and_end_on_the_last() {
        assert_eq!(capture_steps(20, 5), vec![0, 5, 10, 14, 19]);
        assert_eq!(capture_steps(3, 8), vec![0, 1, 2]);
        assert_eq!(capture_steps(10, 1), vec![9]);
        assert!(capture_steps(0, 4).is_empty());
    }

    fn frame(v: u8) -> SandstormFrame {
        SandstormFrame {
            step: v as usize,
            sigma: 1.0,
            noisy: RgbImage::from_pixel(4, 3, Rgb([v, 0, 0])),
            guess: RgbImage::from_pixel(4, 3, Rgb([0, v, 0])),
        }
    }

    #[test]
    fn strip_places_noise_above_guess() {
        let s = strip(&[frame(10), frame(200)]);
        assert_eq!(s.dimensions(), (4 * 2 + 2, 3 * 2 + 2));
        assert_eq!(s.get_pixel(0, 0), &Rgb([10, 0, 0]));
        assert_eq!(s.get_pixel(0, 5), &Rgb([0, 10, 0]));
        assert_eq!(s.get_pixel(6, 0), &Rgb([200, 0, 0]));
        assert_eq!(s.get_pixel(6, 7), &Rgb([0, 200, 0]));
    }

    #[test]
    fn gif_has_one_frame_per_capture() {
        let bytes = gif(&[frame(10), frame(200), frame(90)], 100).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).unwrap();
        use image::AnimationDecoder;
        assert_eq!(decoder.into_frames().count(), 3);
    }
}
