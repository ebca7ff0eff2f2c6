//! kakusan-core owns what every other crate stands on: the device and dtype choice, the
//! torch-compatible random number generators, image <-> tensor conversion, PNG text metadata
//! in AUTOMATIC1111's `parameters` format, and output files that never overwrite.

pub mod device;
pub mod image_io;
pub mod output;
pub mod png_meta;
pub mod rng;
