//! The Time Machine by H. G. Wells, the corpus of *Dive into Deep Learning* 0.17, chapter 8.
//!
//! The book's `timemachine.txt` (179 KB, public domain) is kept in the repository at
//! `data/timemachine.txt` and built into the binary, so a `time_machine` job works on any data
//! directory, in the Docker image too, and nothing is downloaded. [`text`] checks the built-in
//! copy against the SHA-1 the book's `d2l.DATA_HUB` lists, so that a job's numbers can be
//! compared with the book's.

use sha1::{Digest, Sha1};

/// The SHA-1 of the book's `timemachine.txt`, as `d2l.DATA_HUB['time_machine']` gives it.
pub const SHA1: &str = "090b5e7e70c295757f55df93cb0a180b9691891a";

/// The book's file, as built into this binary.
const BOOK: &str = include_str!("../../data/timemachine.txt");

/// The built-in copy is not the book's file (the tree this binary was built from was altered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this build's copy of The Time Machine is not the book's: its SHA-1 is {found}, expected {SHA1}; \
     rebuild kiln from an unaltered source tree"
)]
pub struct TimeMachineError {
    found: String,
}

/// The book's text, once the built-in copy's SHA-1 is [`SHA1`].
pub fn text() -> Result<&'static str, TimeMachineError> {
    checked(BOOK)
}

fn checked(text: &str) -> Result<&str, TimeMachineError> {
    let found = format!("{:x}", Sha1::digest(text.as_bytes()));
    if found == SHA1 { Ok(text) } else { Err(TimeMachineError { found }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Normalize, Tokenizer, Vocab, normalize, tokenize};

    #[test]
    fn the_built_in_book_is_the_books_file_with_the_books_vocabularies() {
        let text = text().unwrap();
        assert_eq!(text.len(), 178_979);
        assert!(text.starts_with("The Time Machine, by H. G. Wells [1898]"));

        let clean = normalize(text, Normalize::D2l);
        let chars = tokenize(&clean, Tokenizer::Char);
        let vocab = Vocab::build(&chars, 0);
        assert_eq!(vocab.len(), 28);
        assert_eq!(&vocab.tokens()[..5], ["<unk>", " ", "e", "t", "a"]);
        // The book's 170,580 characters plus a space at each of the 2,847 joins of its lines.
        assert_eq!(chars.len(), 173_427);

        // Words are exactly the book's: 32,775 of them, 4,580 in the vocabulary, `the` first.
        let words = tokenize(&clean, Tokenizer::Word);
        assert_eq!(words.len(), 32_775);
        let vocab = Vocab::build(&words, 0);
        assert_eq!(vocab.len(), 4_580);
        assert_eq!(&vocab.tokens()[1..6], ["the", "i", "and", "of", "a"]);
        assert_eq!(words.iter().filter(|w| *w == "the").count(), 2_261);
    }

    #[test]
    fn other_content_is_refused_naming_both_checksums_and_no_path() {
        let altered = "The Time Machine, abridged.\n";
        let message = checked(altered).unwrap_err().to_string();
        let found = format!("{:x}", Sha1::digest(altered.as_bytes()));
        assert!(message.contains(SHA1), "{message}");
        assert!(message.contains(&found), "{message}");
        assert!(!message.contains('/'), "no path: {message}");
    }
}
