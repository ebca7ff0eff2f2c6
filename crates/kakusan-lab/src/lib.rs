//! The prompt laboratory's mathematics, pure Rust with no tensors: Taguchi orthogonal arrays
//! and factor assignment ([`arrays`]), SN ratios, level means, ANOVA and the prediction of the
//! optimum ([`analysis`]), T-method metrics and Mahalanobis distances ([`tmethod`]) and the
//! experiment file ([`experiment`]), the F distribution ([`stats`]). See `../shared/design/prompt-lab.md`.

pub mod analysis;
pub mod arrays;
pub mod experiment;
pub mod stats;
pub mod tmethod;

pub use analysis::{Anova, AnovaRow, Effects, Pooling, SnType};
pub use arrays::{assign, ArrayKind, OrthogonalArray};
pub use experiment::{Experiment, ExperimentError, RunSpec};
pub use tmethod::{MahalanobisSpace, TMethod1, TScore, UnitSpace};
