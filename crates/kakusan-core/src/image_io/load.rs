//! Reading a picture file into RGB: the format is recognised from the file's first bytes (not
//! its name), EXIF orientation is applied (diffusers' `load_image` and A1111's `fix_image` do
//! `ImageOps.exif_transpose`), and transparency is flattened onto white as A1111 flattens
//! img2img inputs (`images.flatten(img, opts.img2img_background_color)`, default `#ffffff`).
//!
//! Differences from A1111 kept on purpose: A1111 flattens only RGBA (and palette/RGB images
//! with a transparency entry, which Pillow turns into RGBA); a grey+alpha picture there just
//! loses its alpha. Here every picture with an alpha channel is flattened. 16-bit pictures are
//! reduced to 8 bits by the `image` crate (rounded), where Pillow keeps the high byte.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, RgbaImage};

/// The formats kakusan reads, for messages.
const READABLE: &str = "PNG, JPEG, WebP and BMP";

/// Why a picture file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadImageError {
    /// There is no file at the path.
    #[error("image file {} does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a folder.
    #[error("{} is a folder, not an image file", path.display())]
    IsADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read image file {}: {source}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file's contents are not a picture format we know.
    #[error("{} is not an image: found {found}; kakusan reads {READABLE} files", path.display())]
    NotAnImage {
        /// The path given.
        path: PathBuf,
        /// What the first bytes look like ("an empty file", "text starting with ...", ...).
        found: String,
    },
    /// The file is a picture in a format this build does not read.
    #[error(
        "{} is a {format} image, which kakusan does not read; convert it to PNG (kakusan reads {READABLE})",
        path.display()
    )]
    UnsupportedFormat {
        /// The path given.
        path: PathBuf,
        /// The format found.
        format: String,
    },
    /// The file starts like a picture but could not be decoded (truncated, corrupt).
    #[error("cannot decode {} as {format}: {source}; the file may be truncated or damaged", path.display())]
    Decode {
        /// The path given.
        path: PathBuf,
        /// The format found from the first bytes.
        format: String,
        /// What the decoder said.
        #[source]
        source: image::ImageError,
    },
}

/// Reads a PNG, JPEG, WebP or BMP file as RGB (see the module doc for orientation and alpha).
pub fn load_image(path: &Path) -> Result<RgbImage, LoadImageError> {
    let read_error = |source: io::Error| LoadImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            LoadImageError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            read_error(source)
        }
    })?;
    if meta.is_dir() {
        return Err(LoadImageError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut head = Vec::with_capacity(32);
    (&mut reader)
        .take(32)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    reader.seek(SeekFrom::Start(0)).map_err(read_error)?;

    let format = image::guess_format(&head).map_err(|_| LoadImageError::NotAnImage {
        path: path.to_path_buf(),
        found: describe_bytes(&head),
    })?;
    let format_name = format_name(format);
    if !format.reading_enabled() {
        return Err(LoadImageError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: format_name,
        });
    }
    let decode_error = |source: image::ImageError| LoadImageError::Decode {
        path: path.to_path_buf(),
        format: format_name.clone(),
        source,
    };
    let mut decoder = ImageReader::with_format(reader, format)
        .into_decoder()
        .map_err(decode_error)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    picture.apply_orientation(orientation);
    tracing::debug!(
        "loaded {} ({format_name}, {}x{}, {:?})",
        path.display(),
        picture.width(),
        picture.height(),
        picture.color()
    );
    Ok(if picture.color().has_alpha() {
        flatten_on_white(&picture.to_rgba8())
    } else {
        picture.to_rgb8()
    })
}

/// Composites an RGBA picture onto opaque white and drops alpha, with Pillow's arithmetic for
/// A1111's `background.paste(img, mask=img)`: per channel
/// `out = (255 * (255 - a) + v * a) / 255`, rounded to nearest (Pillow's `DIV255`).
pub fn flatten_on_white(image: &RgbaImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let mut out = RgbImage::new(width, height);
    for (src, dst) in image.pixels().zip(out.pixels_mut()) {
        let alpha = u32::from(src.0[3]);
        for c in 0..3 {
            let blended = 255 * (255 - alpha) + u32::from(src.0[c]) * alpha;
            let t = blended + 128;
            dst.0[c] = (((t >> 8) + t) >> 8) as u8;
        }
    }
    out
}

fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

/// A short description of what a non-image file starts with, for error messages.
fn describe_bytes(head: &[u8]) -> String {
    if head.is_empty() {
        return "an empty file".to_string();
    }
    let text = String::from_utf8_lossy(head);
    let looks_textual =
        !text.contains('\u{FFFD}') && text.chars().all(|c| !c.is_control() || c.is_whitespace());
    if looks_textual {
        let preview: String = text.chars().take(24).collect();
        return format!("text starting with {preview:?}");
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("unrecognised data starting with bytes {}", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_matches_pillow_paste_with_mask() {
        // Expected values from Pillow 13: Image.new("RGBA", size, "#ffffff").paste(img,
        // mask=img).convert("RGB") for these pixels.
        let pixels: [[u8; 4]; 12] = [
            [0, 0, 0, 0],
            [10, 20, 30, 0],
            [255, 0, 0, 255],
            [0, 128, 255, 128],
            [200, 100, 50, 1],
            [200, 100, 50, 254],
            [7, 77, 177, 127],
            [255, 255, 255, 3],
            [0, 0, 0, 129],
            [123, 45, 67, 200],
            [1, 2, 3, 64],
            [250, 5, 128, 190],
        ];
        let expected: [[u8; 3]; 12] = [
            [255, 255, 255],
            [255, 255, 255],
            [255, 0, 0],
            [127, 191, 255],
            [255, 254, 254],
            [200, 101, 51],
            [131, 166, 216],
            [255, 255, 255],
            [126, 126, 126],
            [151, 90, 108],
            [191, 192, 192],
            [251, 69, 160],
        ];
        let raw: Vec<u8> = pixels.iter().flatten().copied().collect();
        let img = RgbaImage::from_raw(12, 1, raw).unwrap();
        let out = flatten_on_white(&img);
        for (i, p) in out.pixels().enumerate() {
            assert_eq!(p.0, expected[i], "pixel {i} {:?}", pixels[i]);
        }
    }

    #[test]
    fn describes_non_images() {
        assert_eq!(describe_bytes(b""), "an empty file");
        assert_eq!(
            describe_bytes(b"hello world\n"),
            "text starting with \"hello world\\n\""
        );
        assert_eq!(
            describe_bytes(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0]),
            "unrecognised data starting with bytes 7f 45 4c 46 02 01 01 00"
        );
    }
}
