//! kakusan's prompt language ("the spell"): what AUTOMATIC1111's webui does with a prompt,
//! exactly, plus NovelAI braces as a dialect. Pure Rust, no tensors:
//!
//! - [`extra`]: `<lora:name:w>` and friends taken out of the text;
//! - [`compose`]: `AND` parts with weights;
//! - [`schedule`]: prompt editing `[a:b:n]` and alternation `[a|b]` into per-step texts;
//! - [`attention`]: emphasis `(a)`, `[a]`, `(a:1.3)`, escapes, `BREAK` into weighted pieces;
//! - [`chunks`]: the weighted pieces into 77-token chunks (75 + BOS/EOS) with A1111's comma
//!   backtracking, given any tokenizer, and the emphasis arithmetic on an encoded chunk;
//! - [`explain`]: all of it at once, as the JSON `kakusan prompt explain` prints.
//!
//! Order of the stages (A1111's): extra networks are removed from the whole prompt, the rest is
//! split at `AND`, each part is scheduled, and each scheduled text is parsed for emphasis.
//! Nothing here panics on any input; where A1111 would raise, we say so in a warning.

pub mod attention;
pub mod chunks;
pub mod compose;
pub mod explain;
pub mod extra;
mod pychar;
pub mod schedule;

pub use attention::{parse_attention, Attention, Dialect, Piece};
pub use chunks::{
    apply_emphasis, chunk_pieces, chunk_text, equalize_chunk_counts, Chunk, Chunked, EmphasisMode,
    SpecialIds,
};
pub use compose::{and_parts, AndPart};
pub use explain::{explain, explain_with_embeddings, ExplainOptions, Explained};
pub use extra::{extract_extra_networks, ExtraNetworkCall, ExtraNetworks, LoraCall};
pub use schedule::{prompt_schedule, text_at, ScheduleEntry, ScheduleOptions};
