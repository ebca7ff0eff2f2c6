//! The errors of the data generator.

/// Why data could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The requested picture size is too small to draw legible glyphs.
    #[error("image size {size} is too small: use at least {minimum} pixels")]
    ImageSizeTooSmall {
        /// The size asked for.
        size: u32,
        /// The smallest usable size.
        minimum: u32,
    },
    /// The share of two-object scenes is not a probability.
    #[error("the share of two-object scenes must be between 0 and 1, got {0}")]
    BadTwoObjectFraction(f32),
    /// The share of novel glyphs is not a probability.
    #[error("the share of novel glyphs must be between 0 and 1, got {0}")]
    BadNovelGlyphFraction(f32),
    /// The share of captions without their colour is not a probability.
    #[error("the share of captions without their colour must be between 0 and 1, got {0}")]
    BadColourOmission(f32),
    /// The share of small objects is not a probability.
    #[error("the share of small objects must be between 0 and 1, got {0}")]
    BadSmallFraction(f32),
    /// A preview was asked for with nothing to show or no columns.
    #[error("a preview needs at least one sample and one column (got {count} samples, {columns} columns)")]
    EmptyPreview {
        /// Samples asked for.
        count: usize,
        /// Columns asked for.
        columns: usize,
    },
    /// The preview is too large to hold in memory as one picture.
    #[error("a preview of {count} samples is too large; ask for fewer (at most {maximum})")]
    PreviewTooLarge {
        /// Samples asked for.
        count: usize,
        /// The most allowed.
        maximum: usize,
    },
    /// A captioned folder was asked for with no pictures or too many.
    #[error("a captioned folder needs 1 to {maximum} pictures, got {count}")]
    FolderCount {
        /// Pictures asked for.
        count: usize,
        /// The most allowed.
        maximum: usize,
    },
    /// Writing would replace a file that is already there.
    #[error("{0} already exists; write the pictures to another folder")]
    WouldOverwrite(std::path::PathBuf),
    /// A file or folder could not be written.
    #[error("could not write {0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    /// Encoding or writing the PNG failed.
    #[error("could not write a PNG: {0}")]
    Png(#[from] kakusan_core::png_meta::PngTextError),
}
