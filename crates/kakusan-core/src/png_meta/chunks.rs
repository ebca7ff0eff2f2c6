//! The `parameters` text chunk of a PNG file.
//!
//! Writing follows Pillow's `PngInfo.add_text`, which A1111 uses: a `tEXt` chunk when the text
//! is Latin-1, otherwise an uncompressed `iTXt` chunk (empty language tag and translated
//! keyword) holding UTF-8; the chunk comes before the image data. Reading accepts `tEXt`,
//! `zTXt` and `iTXt` anywhere in the file. `tEXt`/`zTXt` are decoded as Latin-1 as the PNG
//! specification (and Pillow) say, even if some other tool put UTF-8 there.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::output::{write_atomically, OutputError};

/// The chunk keyword A1111 uses.
pub const PARAMETERS_KEYWORD: &str = "parameters";

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Why a PNG with parameters could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PngTextError {
    /// The picture could not be encoded (e.g. zero width or height).
    #[error("could not encode the picture as PNG: {0}")]
    Encode(#[from] png::EncodingError),
    /// The encoded file could not be written.
    #[error(transparent)]
    Write(#[from] OutputError),
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is not a PNG.
    #[error("{} is not a PNG file (it does not start with the PNG signature)", path.display())]
    NotPng {
        /// The file.
        path: PathBuf,
    },
    /// The PNG is damaged.
    #[error("cannot read the PNG {}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        #[source]
        source: png::DecodingError,
    },
}

/// Encodes an RGB picture as PNG with `parameters` in a `tEXt` (Latin-1) or `iTXt` chunk.
pub fn encode_png_with_parameters(
    image: &RgbImage,
    parameters: &str,
) -> Result<Vec<u8>, PngTextError> {
    encode(image, Some(parameters))
}

/// Encodes an RGB picture as PNG without text chunks (previews, grids, plots).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, PngTextError> {
    encode(image, None)
}

fn encode(image: &RgbImage, parameters: Option<&str>) -> Result<Vec<u8>, PngTextError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        if let Some(parameters) = parameters {
            if parameters.chars().all(|c| u32::from(c) <= 0xFF) {
                encoder.add_text_chunk(PARAMETERS_KEYWORD.to_string(), parameters.to_string())?;
            } else {
                encoder.add_itxt_chunk(PARAMETERS_KEYWORD.to_string(), parameters.to_string())?;
            }
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(image.as_raw())?;
        writer.finish()?;
    }
    Ok(bytes)
}

/// Writes an RGB PNG without text chunks to `path`, atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<(), PngTextError> {
    write_atomically(path, &encode_png(image)?)?;
    Ok(())
}

/// Writes an RGB PNG with `parameters` to `path`, atomically (see [`write_atomically`]):
/// a failure leaves no partial file and does not touch an existing one.
pub fn write_png_with_parameters(
    path: &Path,
    image: &RgbImage,
    parameters: &str,
) -> Result<(), PngTextError> {
    let bytes = encode_png_with_parameters(image, parameters)?;
    write_atomically(path, &bytes)?;
    Ok(())
}

/// The `parameters` text of a PNG file, or `None` if it has none.
///
/// If several chunks carry the keyword, an `iTXt` one wins over `zTXt` over `tEXt`, and the
/// last of a kind over earlier ones (Pillow keeps the last one it meets).
pub fn read_png_parameters(path: &Path) -> Result<Option<String>, PngTextError> {
    let read_error = |source| PngTextError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut bytes))
        .map_err(read_error)?;
    parameters_from_png_bytes(&bytes).map_err(|e| match e {
        PngBytesError::NotPng => PngTextError::NotPng {
            path: path.to_path_buf(),
        },
        PngBytesError::Decode(source) => PngTextError::Decode {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Why PNG bytes could not be read (the file-level errors add the path).
#[derive(Debug, thiserror::Error)]
pub enum PngBytesError {
    /// No PNG signature.
    #[error("not a PNG (no PNG signature)")]
    NotPng,
    /// Damaged PNG.
    #[error("damaged PNG: {0}")]
    Decode(#[from] png::DecodingError),
}

/// [`read_png_parameters`] for PNG bytes in memory.
pub fn parameters_from_png_bytes(bytes: &[u8]) -> Result<Option<String>, PngBytesError> {
    if !bytes.starts_with(&PNG_SIGNATURE) {
        return Err(PngBytesError::NotPng);
    }
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_ignore_text_chunk(false);
    let mut reader = decoder.read_info()?;
    if let Some(text) = parameters_in(reader.info())? {
        return Ok(Some(text));
    }
    // Text chunks may also follow the image data; `finish` reads (and skips) to the end.
    reader.finish()?;
    Ok(parameters_in(reader.info())?)
}

fn parameters_in(info: &png::Info<'_>) -> Result<Option<String>, png::DecodingError> {
    if let Some(chunk) = info
        .utf8_text
        .iter()
        .rev()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
    {
        return chunk.get_text().map(Some);
    }
    if let Some(chunk) = info
        .compressed_latin1_text
        .iter()
        .rev()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
    {
        return chunk.get_text().map(Some);
    }
    Ok(info
        .uncompressed_latin1_text
        .iter()
        .rev()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
        .map(|c| c.text.clone()))
}
