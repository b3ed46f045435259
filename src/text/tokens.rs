//! From raw text to tokens and back: the `data.normalize` and `data.tokenizer` choices.
//!
//! [`normalize`] cleans the text the way *Dive into Deep Learning* (0.17, §8.2) cleans The Time
//! Machine, [`tokenize`] cuts it into characters or words, and [`detokenize`] joins decoded tokens
//! back into text for people to read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `data.tokenizer`: what one token of the corpus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// Every character is a token.
    Char,
    /// Every run of non-whitespace characters is a token.
    Word,
}

/// `data.normalize`: how the text is cleaned before it is tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// The book's cleaning: runs of anything but ASCII letters become one space, then lower case.
    D2l,
    /// The text as it is.
    None,
}

/// `text` cleaned as `how` says.
///
/// With [`Normalize::D2l`] every run of characters that are not ASCII letters — punctuation,
/// digits, non-ASCII letters and newlines alike — becomes a single space, the result is lower-cased
/// and trimmed, so what is left is `a`–`z` and single spaces. [`Normalize::None`] returns the
/// text unchanged.
pub fn normalize(text: &str, how: Normalize) -> String {
    match how {
        Normalize::None => text.to_owned(),
        Normalize::D2l => d2l(text),
    }
}

/// The book's `re.sub('[^A-Za-z]+', ' ', line).strip().lower()`, applied to the whole text.
///
/// The book applies it line by line and, for characters, concatenates the lines with no
/// separator, so the last word of one line runs into the first word of the next. Applying it
/// to the whole text turns each line break into a space instead: the corpus is a few thousand
/// characters longer than the book's (one space per join of non-empty lines) and words never fuse.
/// Word tokens, and the set of characters, are the same either way.
fn d2l(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_gap = false;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            if in_gap && !out.is_empty() {
                out.push(' ');
            }
            in_gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            in_gap = true;
        }
    }
    out
}

/// The tokens of `text`: each `char` for [`Tokenizer::Char`]; for [`Tokenizer::Word`] the pieces
/// between Unicode whitespace, empty pieces dropped.
pub fn tokenize(text: &str, how: Tokenizer) -> Vec<String> {
    match how {
        Tokenizer::Char => text.chars().map(String::from).collect(),
        Tokenizer::Word => text.split_whitespace().map(str::to_owned).collect(),
    }
}

/// Tokens joined back into text: concatenated for [`Tokenizer::Char`], separated by single spaces
/// for [`Tokenizer::Word`].
pub fn detokenize(tokens: &[&str], how: Tokenizer) -> String {
    match how {
        Tokenizer::Char => tokens.concat(),
        Tokenizer::Word => tokens.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d2l_normalisation_keeps_lower_case_letters_and_single_spaces() {
        let text = "The Time-Machine,\n by H. G. Wells [1898]";
        assert_eq!(normalize(text, Normalize::D2l), "the time machine by h g wells");
        assert_eq!(normalize("  ...42\n\n", Normalize::D2l), "");
        assert_eq!(normalize("\"Caf\u{e9}\u{a0}au\tLAIT!\"", Normalize::D2l), "caf au lait");
    }

    #[test]
    fn no_normalisation_leaves_the_text_alone() {
        let text = "The Time-Machine,\n by H. G. Wells [1898]";
        assert_eq!(normalize(text, Normalize::None), text);
    }

    #[test]
    fn char_tokens_are_every_character_including_spaces() {
        assert_eq!(tokenize("a b\u{e9}", Tokenizer::Char), ["a", " ", "b", "\u{e9}"]);
        assert!(tokenize("", Tokenizer::Char).is_empty());
    }

    #[test]
    fn word_tokens_split_on_any_whitespace_and_drop_empty_pieces() {
        let tokens = tokenize("  the time\n\ttraveller\u{2003}(for so  ", Tokenizer::Word);
        assert_eq!(tokens, ["the", "time", "traveller", "(for", "so"]);
        assert!(tokenize(" \n ", Tokenizer::Word).is_empty());
    }

    #[test]
    fn detokenize_undoes_tokenize_on_normalised_text() {
        let text = normalize("The Time Traveller (for so it will be convenient", Normalize::D2l);
        for how in [Tokenizer::Char, Tokenizer::Word] {
            let tokens = tokenize(&text, how);
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            assert_eq!(detokenize(&refs, how), text);
        }
        assert_eq!(detokenize(&["a", "b"], Tokenizer::Char), "ab");
        assert_eq!(detokenize(&["a", "b"], Tokenizer::Word), "a b");
    }
}
