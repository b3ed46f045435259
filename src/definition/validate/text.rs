//! The rules of a language model's job definition: its text data fields, and the sizes its
//! corpus and batch must fit.

use super::*;

pub(super) const TEXT_SETS: [&str; 3] = ["time_machine", "uploaded", "synthetic_text"];
const MAX_NUM_STEPS: usize = 4096;
const MAX_SYNTHETIC_CHARS: usize = 10_000_000;

/// The rules that tie a language model to its text. The vocabulary is only known once the
/// corpus is read, so sizes here use the smallest it can be (the 28 symbols of the book's `d2l`
/// characters, two tokens otherwise); training checks the real sizes before it starts.
pub(super) fn check_language_model(
    model: &LanguageModelSpec,
    data: &TextDataSpec,
    training: &TrainingSpec,
    checkpoint: &CheckpointPolicy,
    config: &Config,
    p: &mut Problems,
) {
    let vocab = match (&data.source, data.tokenizer, data.normalize) {
        (TextSource::TimeMachine, Tokenizer::Char, Normalize::D2l) => 28,
        _ => 2,
    };
    let lm = model.config(vocab);
    check_parameters(lm.parameter_count(), training, checkpoint, config, p);
    let floats = lm.activation_floats(training.batch_size, data.num_steps);
    check_memory(floats, training.batch_size, "this model and data.num_steps", config, p);
    if let Err(message) = data.source.check_available(config) {
        let field = if matches!(data.source, TextSource::Uploaded { .. }) {
            "data.dataset_id"
        } else {
            "data.dataset"
        };
        p.add(field, message);
    }
    // When the spec bounds the corpus (max_tokens, or the characters of generated text), a batch
    // that could never be filled is refused now rather than when the job starts.
    let generated = match (&data.source, data.tokenizer) {
        (TextSource::SyntheticText { chars, .. }, Tokenizer::Char) => Some(*chars),
        _ => None,
    };
    let bound = [data.max_tokens, generated].into_iter().flatten().min();
    if let Some(tokens) = bound {
        let held_out = (data.validation_fraction * tokens as f64).ceil() as usize;
        let train = tokens.saturating_sub(held_out);
        let (batch, steps) = (training.batch_size, data.num_steps);
        if crate::text::batches_per_epoch(train, batch, steps, data.sampling) == 0 {
            p.add(
                "training.batch_size",
                format!(
                    "of {batch} sequences of data.num_steps = {steps} tokens needs more than the at most \
                     {train} training tokens this corpus gives; lower training.batch_size or \
                     data.num_steps, or give more text"
                ),
            );
        }
    }
}

pub(super) fn validate_text(raw: RawData, dataset: &str, p: &mut Problems) -> Option<TextDataSpec> {
    let owner = format!("data.dataset = {dataset}");
    p.not_for(&raw.limit_train, "data.limit_train", &owner);
    p.not_for(&raw.limit_test, "data.limit_test", &owner);
    p.not_for(&raw.train_size, "data.train_size", &owner);
    p.not_for(&raw.test_size, "data.test_size", &owner);
    p.not_for(&raw.resize, "data.resize", &owner);
    p.not_for(&raw.channels, "data.channels", &owner);
    p.not_for(&raw.side, "data.side", &owner);
    p.not_for(&raw.classes, "data.classes", &owner);
    if dataset != "uploaded" {
        p.not_for(&raw.dataset_id, "data.dataset_id", &owner);
    }
    if dataset != "synthetic_text" {
        p.not_for(&raw.chars, "data.chars", &owner);
        p.not_for(&raw.seed, "data.seed", &owner);
    }
    let source = match dataset {
        "time_machine" => TextSource::TimeMachine,
        "uploaded" => {
            let Some(dataset_id) = raw.dataset_id else {
                p.add(
                    "data.dataset_id",
                    "is required with data.dataset = uploaded: the id POST /datasets returned",
                );
                return None;
            };
            TextSource::Uploaded { dataset_id }
        }
        _ => TextSource::SyntheticText {
            chars: p.range("data.chars", raw.chars.unwrap_or(20_000), 2, MAX_SYNTHETIC_CHARS),
            seed: raw.seed.unwrap_or(0),
        },
    };
    let tokenizers = [("char", Tokenizer::Char), ("word", Tokenizer::Word)];
    let tokenizer = choose(p, "data.tokenizer", raw.tokenizer.as_deref().unwrap_or("char"), &tokenizers);
    let normalizers = [("d2l", Normalize::D2l), ("none", Normalize::None)];
    let normalize = choose(p, "data.normalize", raw.normalize.as_deref().unwrap_or("d2l"), &normalizers);
    let samplings = [("sequential", Sampling::Sequential), ("random", Sampling::Random)];
    let sampling = choose(p, "data.sampling", raw.sampling.as_deref().unwrap_or("sequential"), &samplings);
    let min_freq = p.range("data.min_freq", raw.min_freq.unwrap_or(0), 0, 1_000_000);
    let max_tokens = raw.max_tokens.map(|m| p.range("data.max_tokens", m, 2, usize::MAX));
    let num_steps = p.range("data.num_steps", raw.num_steps.unwrap_or(35), 1, MAX_NUM_STEPS);
    let validation_fraction = raw.validation_fraction.unwrap_or(0.0);
    if !(0.0..0.9).contains(&validation_fraction) {
        p.add(
            "data.validation_fraction",
            format!("must be a number in [0, 0.9) (got {validation_fraction})"),
        );
    }
    Some(TextDataSpec {
        source,
        tokenizer: tokenizer?,
        normalize: normalize?,
        min_freq,
        max_tokens,
        num_steps,
        sampling: sampling?,
        validation_fraction,
    })
}
