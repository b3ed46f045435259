//! A job's text turned into token ids: a vocabulary, a training stream and a validation tail.
//!
//! [`build_corpus`] is the book's `load_corpus_time_machine` (*Dive into Deep Learning* 0.17,
//! §8.2) for any text, with the held-out part a language model needs to report perplexity on
//! text it was not trained on.

use super::{Normalize, Tokenizer, Vocab, normalize, tokenize};

/// What a job's text data spec resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOptions {
    pub tokenizer: Tokenizer,
    pub normalize: Normalize,
    /// Tokens seen fewer times than this (outside the held-out tail) become [`Vocab::UNK`].
    pub min_freq: usize,
    /// Keep only the first this many tokens of the whole text.
    pub max_tokens: Option<usize>,
    /// The share of the tokens, taken from the end, held out for validation: 0 to 1.
    pub validation_fraction: f64,
}

/// A corpus ready to train on.
///
/// The vocabulary is built from the whole text but the held-out tail (the book counts the whole
/// text even when it trains on the first `max_tokens` only); validation tokens outside it are
/// [`Vocab::UNK`] (id 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub vocab: Vocab,
    /// The training tokens, in text order.
    pub train: Vec<u32>,
    /// The validation tokens, in text order: the tail that follows `train` in the text.
    pub validation: Vec<u32>,
}

/// Why a text cannot be trained on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorpusError {
    #[error(
        "the training part of the text has {train} tokens (of {total} after normalising, tokenizing and \
         max_tokens, {validation} held out for validation); a language model needs at least 2"
    )]
    TooFewTrainingTokens { train: usize, validation: usize, total: usize },
}

/// The corpus of `text`: normalise, tokenize, keep the first `max_tokens` tokens, hold out the
/// last `ceil(validation_fraction * n)` of those `n` tokens (none when the fraction is 0), build
/// the vocabulary from the text but those held-out tokens, and encode both parts.
pub fn build_corpus(text: &str, options: &TextOptions) -> Result<Corpus, CorpusError> {
    let tokens = tokenize(&normalize(text, options.normalize), options.tokenizer);
    let total = options.max_tokens.map_or(tokens.len(), |max| max.min(tokens.len()));
    // `as` saturates, and NaN becomes 0: a fraction outside 0..=1 cannot index out of range.
    let validation = ((options.validation_fraction * total as f64).ceil() as usize).min(total);
    let train = total - validation;
    if train < 2 {
        return Err(CorpusError::TooFewTrainingTokens { train, validation, total });
    }
    // The book builds its vocabulary from the whole text, max_tokens or not; so does kiln, but
    // the held-out tail stays unseen.
    let counted: Vec<String> = tokens[..train].iter().chain(&tokens[total..]).cloned().collect();
    let vocab = Vocab::build(&counted, options.min_freq);
    Ok(Corpus {
        train: vocab.encode(&tokens[..train]),
        validation: vocab.encode(&tokens[train..total]),
        vocab,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(tokenizer: Tokenizer, validation_fraction: f64) -> TextOptions {
        TextOptions {
            tokenizer,
            normalize: Normalize::D2l,
            min_freq: 0,
            max_tokens: None,
            validation_fraction,
        }
    }

    #[test]
    fn the_last_tokens_are_held_out_and_rounded_up() {
        // 10 words; 0.25 of them is 2.5, rounded up to 3.
        let text = "one two three four five six seven eight nine ten";
        let corpus = build_corpus(text, &options(Tokenizer::Word, 0.25)).unwrap();
        assert_eq!((corpus.train.len(), corpus.validation.len()), (7, 3));
        let words: Vec<&str> = corpus.vocab.decode(&corpus.train);
        assert_eq!(words, ["one", "two", "three", "four", "five", "six", "seven"]);
        // None of the held-out words is in the training part, so all are unknown.
        assert_eq!(corpus.validation, [0, 0, 0]);
        assert_eq!(corpus.vocab.len(), 8);
    }

    #[test]
    fn validation_tokens_seen_in_training_keep_their_ids() {
        let text = "the cat sat on the mat the dog sat";
        let corpus = build_corpus(text, &options(Tokenizer::Word, 0.3)).unwrap();
        // 9 words, ceil(2.7) = 3 held out: "the dog sat"; "dog" was never trained on.
        assert_eq!(corpus.validation.len(), 3);
        let v = &corpus.vocab;
        assert_eq!(corpus.validation, [v.index("the"), 0, v.index("sat")]);
        assert_ne!(v.index("the"), 0);
        assert_eq!(v.index("dog"), 0);
    }

    #[test]
    fn no_validation_when_the_fraction_is_zero() {
        let corpus = build_corpus("Hello, World", &options(Tokenizer::Char, 0.0)).unwrap();
        assert_eq!(corpus.vocab.decode(&corpus.train).concat(), "hello world");
        assert!(corpus.validation.is_empty());
    }

    #[test]
    fn max_tokens_cuts_before_the_split() {
        let mut opts = options(Tokenizer::Char, 0.5);
        opts.max_tokens = Some(6);
        let corpus = build_corpus("abcdefghij", &opts).unwrap();
        assert_eq!(corpus.vocab.decode(&corpus.train).concat(), "abc");
        assert_eq!(corpus.validation, [0, 0, 0]);
        // Tokens past max_tokens count for the vocabulary, as in the book; the held-out tail
        // does not.
        assert_eq!(corpus.vocab.tokens(), ["<unk>", "a", "b", "c", "g", "h", "i", "j"]);
    }

    #[test]
    fn min_freq_applies_to_the_training_part() {
        let mut opts = options(Tokenizer::Char, 0.0);
        opts.min_freq = 2;
        let corpus = build_corpus("aab", &opts).unwrap();
        assert_eq!(corpus.vocab.tokens(), ["<unk>", "a"]);
        assert_eq!(corpus.train, [1, 1, 0]);
    }

    #[test]
    fn fewer_than_two_training_tokens_is_an_error_that_says_so() {
        for (text, fraction) in [("", 0.0), ("a", 0.0), ("abc", 0.5), ("abcd", 1.0)] {
            let error = build_corpus(text, &options(Tokenizer::Char, fraction)).unwrap_err();
            assert!(error.to_string().contains("at least 2"), "{text:?}: {error}");
        }
        let error = build_corpus("!!! ...", &options(Tokenizer::Word, 0.1)).unwrap_err();
        assert_eq!(error, CorpusError::TooFewTrainingTokens { train: 0, validation: 0, total: 0 });
        assert!(build_corpus("ab", &options(Tokenizer::Char, 0.0)).is_ok());
    }
}
