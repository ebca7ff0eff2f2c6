//! Generation parameters stored in PNG files the way AUTOMATIC1111 stores them: a text chunk
//! with the keyword `parameters` holding the "infotext" (prompt lines, an optional
//! `Negative prompt:` line, and a last line of `Key: value` pairs).
//!
//! - [`GenerationParameters`]: the infotext's fields, with [`GenerationParameters::to_a1111_string`]
//!   writing A1111's exact layout and [`parse_a1111`] reading it back with A1111's own rules;
//! - [`write_png_with_parameters`] / [`encode_png_with_parameters`]: an RGB PNG with the text
//!   in a `tEXt` chunk, or `iTXt` when it is not Latin-1 (as Pillow's `PngInfo.add_text` does);
//! - [`read_png_parameters`]: the `parameters` text from `tEXt`, `zTXt` or `iTXt`.

mod chunks;
mod parameters;
mod quoting;

pub use chunks::{
    encode_png, encode_png_with_parameters, parameters_from_png_bytes, read_png_parameters,
    write_png, write_png_with_parameters, PngBytesError, PngTextError, PARAMETERS_KEYWORD,
};
pub use parameters::{parse_a1111, GenerationParameters, ParametersError, KAKUSAN_VERSION};
pub use quoting::{quote_value, unquote_value};
