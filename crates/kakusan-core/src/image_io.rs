//! Image files <-> tensors, as diffusers converts them: pixels v in 0..=255 become
//! v / 255 * 2 - 1, and back `round(clamp(x / 2 + 0.5, 0, 1) * 255)` (numpy's round, ties to
//! even). A1111's "Just resize" stretches to the exact size (Lanczos).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },
    #[error("{path} is not an image kakusan can read (PNG, JPEG, WebP, BMP): {reason}")]
    NotAnImage { path: PathBuf, reason: String },
}

/// Loads an image as RGB; transparent pixels are composed onto white.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    if !path.is_file() {
        return Err(ImageError::NotFound { path: path.into() });
    }
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| ImageError::NotAnImage {
            path: path.into(),
            reason: e.to_string(),
        })?
        .decode()
        .map_err(|e| ImageError::NotAnImage {
            path: path.into(),
            reason: e.to_string(),
        })?;
    let rgba = img.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = p[3] as u32;
        for c in 0..3 {
            o[c] = ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    Ok(out)
}

/// A1111's "Just resize": exactly `w`x`h`, aspect ratio ignored.
pub fn resize_just(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.width() == w && img.height() == h {
        return img.clone();
    }
    image::imageops::resize(img, w, h, image::imageops::FilterType::Lanczos3)
}

/// `[1, 3, H, W]` f32 in [-1, 1].
pub fn image_to_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = p[c] as f32 / 255.0 * 2.0 - 1.0;
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), device)
}

/// `[B, 3, H, W]` in [-1, 1] to 8-bit images.
pub fn tensor_to_images(t: &Tensor) -> candle_core::Result<Vec<RgbImage>> {
    let (b, _c, h, w) = t.dims4()?;
    let data: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    Ok((0..b)
        .map(|k| {
            let base = k * 3 * h * w;
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let i = y as usize * w + x as usize;
                let px = |c: usize| to_u8(data[base + c * h * w + i]);
                image::Rgb([px(0), px(1), px(2)])
            })
        })
        .collect())
}

fn to_u8(x: f32) -> u8 {
    ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_rounds_like_numpy() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 128); // 127.5 ties to even
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
    }

    #[test]
    fn image_tensor_round_trip() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 50) as u8, (y * 80) as u8, 7]));
        let t = image_to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 3, 5]);
        assert_eq!(tensor_to_images(&t).unwrap()[0], img);
    }

    #[test]
    fn a_text_file_is_not_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        std::fs::write(&p, "hello").unwrap();
        let err = load_rgb(&p).unwrap_err().to_string();
        assert!(err.contains("is not an image"), "{err}");
    }
}
