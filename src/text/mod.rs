//! Text corpora for RNN language models, in plain Rust: from a text to batches of token ids.
//!
//! This is chapter 8 of *Dive into Deep Learning* (0.17): [`normalize`] and [`tokenize`] clean and
//! cut the text (`read_time_machine`, `tokenize`) and [`Vocab`] maps tokens to ids (`Vocab`).
//! Nothing here knows about Burn or tensors.

mod tokens;
mod vocab;

pub use tokens::{Normalize, Tokenizer, detokenize, normalize, tokenize};
pub use vocab::{Vocab, VocabError};
