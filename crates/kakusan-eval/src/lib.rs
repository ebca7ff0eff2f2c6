//! kakusan-eval: the measuring instrument of kakusan-mini. A small convolutional classifier,
//! trained by kakusan itself on the procedural data set (kakusan-data), reads each attribute
//! of a picture: glyph (shape or digit), colour, background, position and size.
//!
//! It must be trustworthy before it judges a generator: on held-out procedural pictures
//! (glyph × colour pairs it never saw in training) it reaches ≥ 98 % per attribute, which
//! `tests/accuracy.rs` asserts against the shipped weights in `models/kakusan-eval/`.
//!
//! Modules: [`attribute`] (the five heads and their labels), [`classifier`] (the network and
//! its config), [`view`] (what picture the network sees: the whole picture for one object,
//! one masked half per object for two), [`task`] (the [`kakusan_train::TrainTask`]),
//! [`evaluate`] (held-out accuracy, [`Evaluator`] for finished pictures), [`teacher`] (the
//! classifier as a UNet's feature-alignment teacher), [`run`] (the TOML
//! run config, training and export), [`error`].

pub mod adherence;
pub mod attribute;
pub mod classifier;
pub mod error;
pub mod evaluate;
pub mod run;
pub mod task;
pub mod teacher;
pub mod view;

pub use adherence::{cases_of, held_out_cases, with_glyph, Adherence, EvalCase, Tally, TARGETS};
pub use attribute::{Attribute, Labels};
pub use classifier::{Classifier, ClassifierConfig, Logits};
pub use error::{EvalError, Result};
pub use evaluate::{
    accuracy, novel_glyph_accuracy, pair_accuracy, Accuracy, Evaluator, Prediction,
};
pub use run::{export, train_classifier, ClassifierRun, ClassifierRunConfig};
pub use task::{ClassifierTask, ClassifierTaskConfig};
pub use teacher::ClassifierTeacher;
pub use view::{object_view, object_views};

/// The weights file of an exported classifier (next to its `config.json`).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The config file of an exported classifier.
pub const CONFIG_FILE: &str = "config.json";
