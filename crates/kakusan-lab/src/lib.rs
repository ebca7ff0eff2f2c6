//! The prompt laboratory's mathematics (see `../shared/design/prompt-lab.md`).
pub mod analysis;
pub mod arrays;
pub use analysis::{Anova, AnovaRow, Effects, Pooling, SnType};
pub use arrays::{assign, ArrayKind, OrthogonalArray};
