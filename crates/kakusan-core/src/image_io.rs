//! Pictures in and out of the engine, computing the same pixels as the reference tools:
//!
//! - [`load_image`]: PNG/JPEG/WebP/BMP files to RGB, with EXIF orientation applied (as
//!   diffusers' `load_image` and A1111 do) and transparency flattened onto white exactly as
//!   A1111's `images.flatten` does for img2img inputs;
//! - [`resize_just`]: A1111's "Just resize" (exactly `w`×`h`, aspect ignored), bit-exact with
//!   Pillow's `Image.resize(..., LANCZOS)`;
//! - [`image_to_tensor`] / [`tensor_to_images`]: RGB pixels to `[B,3,H,W]` f32 in `[-1,1]` and
//!   back, with the arithmetic (and the rounding) of diffusers' `VaeImageProcessor`.

mod load;
mod resize;
mod tensor;

pub use load::{flatten_on_white, load_image, LoadImageError};
pub use resize::resize_just;
pub use tensor::{
    image_to_tensor, images_to_tensor, pixel_to_unit, tensor_to_images, unit_to_pixel,
    ImageTensorError,
};
