//! The vocabulary: the mapping between tokens and the integer ids a language model sees.
//!
//! [`Vocab`] follows the book's `Vocab` (*Dive into Deep Learning* 0.17, §8.2): id 0 is the
//! unknown token, the other tokens are ordered by count, most frequent first, ties by first
//! appearance. It travels inside checkpoints as JSON — the list of its tokens — so that a
//! trained model can be given text again without its corpus.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Why a list of tokens is not a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabError {
    #[error("a vocabulary needs at least the token \"{}\"", Vocab::UNK)]
    Empty,
    #[error("a vocabulary's first token must be \"{unk}\" (got {first:?})", unk = Vocab::UNK)]
    UnkNotFirst { first: String },
    #[error("the token {token:?} appears twice in the vocabulary (ids {first} and {second})")]
    Duplicate { token: String, first: u32, second: u32 },
}

/// Tokens and their ids; id 0 is always [`Vocab::UNK`], and a vocabulary is never empty.
///
/// Serialises as the JSON list of its tokens in id order; deserialising checks that list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The unknown token, id 0: what every token outside the vocabulary becomes.
    pub const UNK: &str = "<unk>";

    /// The vocabulary of `tokens`: [`Vocab::UNK`], then every token seen at least `min_freq`
    /// times, by count descending, ties in order of first appearance. A `min_freq` of 0 or 1
    /// keeps every token. A literal `"<unk>"` in `tokens` is not added a second time.
    pub fn build(tokens: &[String], min_freq: usize) -> Vocab {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut first_seen: Vec<&str> = Vec::new();
        for token in tokens {
            let count = counts.entry(token.as_str()).or_insert_with(|| {
                first_seen.push(token.as_str());
                0
            });
            *count += 1;
        }
        // A stable sort keeps first-appearance order among equal counts, as the book's does.
        first_seen.sort_by_key(|token| std::cmp::Reverse(counts[token]));
        let kept = first_seen.into_iter().filter(|token| counts[token] >= min_freq && *token != Self::UNK);
        let list = std::iter::once(Self::UNK).chain(kept).map(str::to_owned).collect();
        Self::from_tokens(list).expect("built from distinct tokens after <unk>")
    }

    /// The vocabulary whose id `i` is `tokens[i]`; `tokens` must start with [`Vocab::UNK`] and
    /// hold no token twice.
    pub fn from_tokens(tokens: Vec<String>) -> Result<Vocab, VocabError> {
        match tokens.first() {
            None => return Err(VocabError::Empty),
            Some(first) if first != Self::UNK => {
                return Err(VocabError::UnkNotFirst { first: first.clone() });
            }
            Some(_) => {}
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            let id = id as u32;
            if let Some(first) = ids.insert(token.clone(), id) {
                return Err(VocabError::Duplicate { token: token.clone(), first, second: id });
            }
        }
        Ok(Vocab { tokens, ids })
    }

    /// Number of tokens, [`Vocab::UNK`] included: the size of a model's embedding and output.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always `false`: a vocabulary holds at least [`Vocab::UNK`].
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`, 0 when it is not in the vocabulary.
    pub fn index(&self, token: &str) -> u32 {
        self.ids.get(token).copied().unwrap_or(0)
    }

    /// The token with id `index`; [`Vocab::UNK`] for an id past the end, so that decoding what a
    /// model produced never panics.
    pub fn token(&self, index: u32) -> &str {
        self.tokens.get(index as usize).map_or(Self::UNK, String::as_str)
    }

    /// The tokens, in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of each token, 0 for those not in the vocabulary.
    pub fn encode(&self, tokens: &[String]) -> Vec<u32> {
        tokens.iter().map(|token| self.index(token)).collect()
    }

    /// The token of each id, as [`Vocab::token`] gives it.
    pub fn decode(&self, ids: &[u32]) -> Vec<&str> {
        ids.iter().map(|&id| self.token(id)).collect()
    }
}

impl TryFrom<Vec<String>> for Vocab {
    type Error = VocabError;

    fn try_from(tokens: Vec<String>) -> Result<Self, Self::Error> {
        Vocab::from_tokens(tokens)
    }
}

impl From<Vocab> for Vec<String> {
    fn from(vocab: Vocab) -> Self {
        vocab.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Normalize, Tokenizer, normalize, tokenize};

    fn strings(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn char_vocab_of_every_letter_and_space_has_28_symbols() {
        let text = "The quick brown fox jumps over the lazy dog!\n(Sphinx of black quartz: judge my vow.)";
        let tokens = tokenize(&normalize(text, Normalize::D2l), Tokenizer::Char);
        let vocab = Vocab::build(&tokens, 0);
        assert_eq!(vocab.len(), 28);
        assert_eq!(vocab.token(0), Vocab::UNK);
        assert_eq!(vocab.token(1), " ");
        assert!(('a'..='z').all(|c| vocab.index(&c.to_string()) != 0));
    }

    #[test]
    fn tokens_are_ordered_by_count_then_by_first_appearance() {
        let tokens = strings(&["b", "a", "c", "a", "d", "c", "e", "a"]);
        let vocab = Vocab::build(&tokens, 1);
        // a: 3, then c: 2, then b, d, e: 1 each in the order they first appear.
        assert_eq!(vocab.tokens(), strings(&["<unk>", "a", "c", "b", "d", "e"]));
        assert_eq!(vocab.index("a"), 1);
        assert_eq!(vocab.index("e"), 5);
        assert_eq!(vocab.token(2), "c");
    }

    #[test]
    fn min_freq_drops_rare_tokens_to_unk() {
        let tokens = strings(&["x", "y", "x", "z", "y", "x"]);
        let vocab = Vocab::build(&tokens, 2);
        assert_eq!(vocab.tokens(), strings(&["<unk>", "x", "y"]));
        assert_eq!(vocab.encode(&tokens), [1, 2, 1, 0, 2, 1]);
        assert_eq!(vocab.index("never seen"), 0);
        assert_eq!(Vocab::build(&tokens, 0), Vocab::build(&tokens, 1));
        assert_eq!(Vocab::build(&tokens, 4).len(), 1);
    }

    #[test]
    fn a_literal_unk_token_is_not_added_twice() {
        let vocab = Vocab::build(&strings(&["<unk>", "<unk>", "a"]), 0);
        assert_eq!(vocab.tokens(), strings(&["<unk>", "a"]));
    }

    #[test]
    fn ids_past_the_end_decode_to_unk() {
        let vocab = Vocab::build(&strings(&["a", "b"]), 0);
        assert_eq!(vocab.token(3), Vocab::UNK);
        assert_eq!(vocab.decode(&[2, 1, 0, 99]), ["b", "a", "<unk>", "<unk>"]);
    }

    #[test]
    fn json_is_the_token_list_and_round_trips() {
        let vocab = Vocab::build(&strings(&["to", "be", "or", "not", "to", "be"]), 0);
        let json = serde_json::to_string(&vocab).unwrap();
        assert_eq!(json, r#"["<unk>","to","be","or","not"]"#);
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vocab);
        assert_eq!(back.index("not"), 4);
    }

    #[test]
    fn bad_json_vocabularies_are_rejected() {
        for (json, needle) in [
            ("[]", "at least"),
            (r#"["a","<unk>"]"#, "first token"),
            (r#"["<unk>","a","b","a"]"#, "twice"),
            (r#"["<unk>","<unk>"]"#, "twice"),
            (r#"{"tokens":["<unk>"]}"#, "sequence"),
            (r#"["<unk>",3]"#, "string"),
        ] {
            let error = serde_json::from_str::<Vocab>(json).unwrap_err().to_string();
            assert!(error.contains(needle), "{json}: {error}");
        }
    }
}
