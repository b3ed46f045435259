//! Text corpora for RNN language models, in plain Rust: from a text to batches of token ids.
//!
//! This is chapter 8 of *Dive into Deep Learning* (0.17): [`normalize`] and [`tokenize`] clean and
//! cut the text (`read_time_machine`, `tokenize`), [`Vocab`] maps tokens to ids (`Vocab`),
//! [`build_corpus`] does both and holds out a validation tail (`load_corpus_time_machine`), and
//! [`epoch_batches`] cuts the training ids into `[batch_size, num_steps]` batches
//! (`seq_data_iter_sequential`, `seq_data_iter_random`). The texts are [`time_machine`], the
//! book's, and [`synthetic_text`], generated. Nothing here knows about Burn or tensors.

mod corpus;
mod sampling;
mod synthetic;
pub mod time_machine;
mod tokens;
mod vocab;

pub use corpus::{Corpus, CorpusError, TextOptions, build_corpus};
pub use sampling::{Batch, Sampling, batches_per_epoch, epoch_batches, validation_batches};
pub use synthetic::synthetic_text;
pub use time_machine::TimeMachineError;
pub use tokens::{Normalize, Tokenizer, detokenize, normalize, tokenize};
pub use vocab::{Vocab, VocabError};
