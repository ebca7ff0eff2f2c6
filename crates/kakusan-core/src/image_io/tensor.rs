//! RGB pixels <-> the `[B, 3, H, W]` f32 tensors in `[-1, 1]` the VAE works on, with the
//! arithmetic of diffusers' `VaeImageProcessor`:
//!
//! - in: `np.array(image).astype(float32) / 255.0`, then `2.0 * x - 1.0` (`normalize`),
//!   both in f32;
//! - out: `(x * 0.5 + 0.5).clamp(0, 1)` (`denormalize`, in f32), then `numpy_to_pil`'s
//!   `(images * 255).round().astype("uint8")`. numpy's `round` rounds halves to even
//!   (127.5 → 128, 64.5 → 64), which is what [`unit_to_pixel`] does. (A1111 itself truncates
//!   instead: `(255. * x).astype(np.uint8)`; we follow diffusers, the numerical reference.)
//!   A NaN becomes 0, as numpy's cast of NaN to uint8 gave in the reference run (x86-64).

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

/// Why pixels and a tensor could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImageTensorError {
    /// The tensor is not `[batch, 3, height, width]`.
    #[error("expected an image tensor of shape [batch, 3, height, width], got shape {0:?}")]
    Shape(Vec<usize>),
    /// Images of one batch differ in size.
    #[error(
        "all images of a batch must have the same size: image 0 is {}x{}, image {index} is {}x{}",
        expected.0, expected.1, found.0, found.1
    )]
    SizeMismatch {
        /// Which image differs.
        index: usize,
        /// Width and height of image 0.
        expected: (u32, u32),
        /// Width and height of the image that differs.
        found: (u32, u32),
    },
    /// No image was given.
    #[error("no images to convert: the batch is empty")]
    EmptyBatch,
    /// The tensor could not be read (dtype conversion, device transfer).
    #[error("could not read the image tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One 8-bit channel value to `[-1, 1]`, as diffusers computes it in f32.
pub fn pixel_to_unit(value: u8) -> f32 {
    let unit = f32::from(value) / 255.0;
    2.0 * unit - 1.0
}

/// One `[-1, 1]` value to an 8-bit channel, as diffusers computes it (see the module doc).
pub fn unit_to_pixel(value: f32) -> u8 {
    let scaled = (value * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0;
    // `as u8` saturates and maps NaN to 0.
    scaled.round_ties_even() as u8
}

/// One image to a `[1, 3, H, W]` f32 tensor in `[-1, 1]` on the CPU.
pub fn image_to_tensor(image: &RgbImage) -> Result<Tensor, ImageTensorError> {
    images_to_tensor(std::slice::from_ref(image))
}

/// Images of one size to a `[B, 3, H, W]` f32 tensor in `[-1, 1]` on the CPU.
pub fn images_to_tensor(images: &[RgbImage]) -> Result<Tensor, ImageTensorError> {
    let first = images.first().ok_or(ImageTensorError::EmptyBatch)?;
    let (width, height) = first.dimensions();
    let plane = width as usize * height as usize;
    let mut data = Vec::with_capacity(images.len() * 3 * plane);
    for (index, image) in images.iter().enumerate() {
        if image.dimensions() != (width, height) {
            return Err(ImageTensorError::SizeMismatch {
                index,
                expected: (width, height),
                found: image.dimensions(),
            });
        }
        let raw = image.as_raw();
        for channel in 0..3 {
            data.extend(
                raw.iter()
                    .skip(channel)
                    .step_by(3)
                    .map(|&v| pixel_to_unit(v)),
            );
        }
    }
    let shape = (images.len(), 3, height as usize, width as usize);
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// A `[B, 3, H, W]` tensor in `[-1, 1]` (any dtype, any device) to `B` RGB images.
pub fn tensor_to_images(tensor: &Tensor) -> Result<Vec<RgbImage>, ImageTensorError> {
    let (batch, channels, height, width) = match tensor.dims() {
        &[b, c, h, w] if c == 3 => (b, c, h, w),
        dims => return Err(ImageTensorError::Shape(dims.to_vec())),
    };
    let too_big = || ImageTensorError::Shape(tensor.dims().to_vec());
    let w32 = u32::try_from(width).map_err(|_| too_big())?;
    let h32 = u32::try_from(height).map_err(|_| too_big())?;
    let values = tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = width * height;
    let mut images = Vec::with_capacity(batch);
    for b in 0..batch {
        let item = &values[b * channels * plane..(b + 1) * channels * plane];
        let mut raw = Vec::with_capacity(3 * plane);
        for i in 0..plane {
            for c in 0..3 {
                raw.push(unit_to_pixel(item[c * plane + i]));
            }
        }
        images.push(RgbImage::from_raw(w32, h32, raw).ok_or_else(too_big)?);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_to_unit_ends_and_middle() {
        assert_eq!(pixel_to_unit(0), -1.0);
        assert_eq!(pixel_to_unit(255), 1.0);
        // 128/255 in f32, doubled, minus one: the f32 result diffusers gets (0x3b80_8100).
        assert_eq!(pixel_to_unit(128).to_bits(), 0x3b80_8100);
    }

    #[test]
    fn unit_to_pixel_rounds_half_to_even_like_numpy() {
        assert_eq!(unit_to_pixel(0.0), 128); // 127.5 -> 128 (even)
        assert_eq!(unit_to_pixel(-1.0), 0);
        assert_eq!(unit_to_pixel(1.0), 255);
        assert_eq!(unit_to_pixel(-3.0), 0);
        assert_eq!(unit_to_pixel(3.0), 255);
        assert_eq!(unit_to_pixel(f32::NAN), 0);
    }

    #[test]
    fn every_pixel_value_survives_the_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(unit_to_pixel(pixel_to_unit(v)), v, "{v}");
        }
    }

    #[test]
    fn layout_is_planar_rgb() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255, 0, 255]));
        let t = image_to_tensor(&img).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![-1.0, 1.0, -1.0, -1.0, 1.0, 1.0]);
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        let t = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let err = tensor_to_images(&t).unwrap_err();
        assert!(err.to_string().contains("[1, 4, 2, 2]"), "{err}");
        let t = Tensor::zeros((3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            tensor_to_images(&t),
            Err(ImageTensorError::Shape(_))
        ));
        assert!(matches!(
            images_to_tensor(&[]),
            Err(ImageTensorError::EmptyBatch)
        ));
        let a = RgbImage::new(2, 2);
        let b = RgbImage::new(3, 2);
        let err = images_to_tensor(&[a, b]).unwrap_err();
        assert!(err.to_string().contains("image 1 is 3x2"), "{err}");
    }
}
