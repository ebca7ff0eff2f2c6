//! The prompt laboratory's mathematics (see `../shared/design/prompt-lab.md`).
pub mod analysis;
pub mod arrays;
pub mod tmethod;
pub use analysis::{Anova, AnovaRow, Effects, Pooling, SnType};
pub use arrays::{assign, ArrayKind, OrthogonalArray};
pub use tmethod::{MahalanobisSpace, TMethod1, TScore, UnitSpace};
