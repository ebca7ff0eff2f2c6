//! The prompt laboratory's mathematics (see `../shared/design/prompt-lab.md`).
pub mod arrays;
pub use arrays::{assign, ArrayKind, OrthogonalArray};
