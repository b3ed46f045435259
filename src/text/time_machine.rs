//! The Time Machine by H. G. Wells, the corpus of *Dive into Deep Learning* 0.17, chapter 8.
//!
//! kiln downloads nothing: the book's `timemachine.txt` must be put in the datasets directory,
//! and [`load`] checks it against the SHA-1 the book's `d2l.DATA_HUB` lists, so that a job's
//! numbers can be compared with the book's.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// The file's name in the datasets directory.
pub const FILE_NAME: &str = "timemachine.txt";

/// The SHA-1 of the book's `timemachine.txt`, as `d2l.DATA_HUB['time_machine']` gives it.
pub const SHA1: &str = "090b5e7e70c295757f55df93cb0a180b9691891a";

/// Where the book downloads the file from; named in errors so that users can fetch it.
pub const URL: &str = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt";

/// Why The Time Machine could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TimeMachineError {
    #[error("{}", missing_message(path))]
    Missing { path: PathBuf },
    #[error("cannot read The Time Machine at {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{} is not the book's The Time Machine: its SHA-1 is {found}, expected {SHA1}; replace it with \
         the file from {URL}",
        path.display()
    )]
    WrongChecksum { path: PathBuf, found: String },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// The text of `<datasets_dir>/timemachine.txt`, once its SHA-1 is [`SHA1`].
pub fn load(datasets_dir: &Path) -> Result<String, TimeMachineError> {
    let path = datasets_dir.join(FILE_NAME);
    let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => TimeMachineError::Missing { path: path.clone() },
        _ => TimeMachineError::Io { path: path.clone(), source },
    })?;
    let found = format!("{:x}", Sha1::digest(&bytes));
    if found != SHA1 {
        return Err(TimeMachineError::WrongChecksum { path, found });
    }
    String::from_utf8(bytes).map_err(|_| TimeMachineError::NotText { path })
}

/// Whether `<datasets_dir>/timemachine.txt` exists, without reading it; the error says where to
/// put it. For validating a job at submission, before [`load`] checks the content.
pub fn check_available(datasets_dir: &Path) -> Result<(), String> {
    let path = datasets_dir.join(FILE_NAME);
    if path.is_file() { Ok(()) } else { Err(missing_message(&path)) }
}

fn missing_message(path: &Path) -> String {
    format!("The Time Machine is not at {}: download {URL} (SHA-1 {SHA1}) and put it there", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Normalize, Tokenizer, Vocab, normalize, tokenize};

    /// The book's file, kept in the repository at `data/timemachine.txt` (public domain).
    fn book_file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(FILE_NAME)
    }

    #[test]
    fn the_book_loads_and_has_the_books_vocabularies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(book_file(), dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(check_available(dir.path()), Ok(()));
        let text = load(dir.path()).unwrap();
        assert!(text.starts_with("The Time Machine, by H. G. Wells [1898]"));

        let clean = normalize(&text, Normalize::D2l);
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
    fn other_content_is_rejected_naming_both_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "The Time Machine, abridged.\n").unwrap();
        assert_eq!(check_available(dir.path()), Ok(()), "existence only, no hashing");
        let error = load(dir.path()).unwrap_err();
        assert!(matches!(error, TimeMachineError::WrongChecksum { .. }), "{error:?}");
        let message = error.to_string();
        let found = format!("{:x}", Sha1::digest(b"The Time Machine, abridged.\n"));
        assert!(message.contains(SHA1), "{message}");
        assert!(message.contains(&found), "{message}");
        assert!(message.contains(FILE_NAME), "{message}");
    }

    #[test]
    fn a_missing_file_says_where_to_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let expected = dir.path().join(FILE_NAME).display().to_string();
        let error = load(dir.path()).unwrap_err();
        assert!(matches!(error, TimeMachineError::Missing { .. }), "{error:?}");
        for message in [error.to_string(), check_available(dir.path()).unwrap_err()] {
            assert!(message.contains(&expected), "{message}");
            assert!(message.contains(SHA1) && message.contains(URL), "{message}");
        }
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_not_available() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        assert!(check_available(dir.path()).is_err());
        assert!(load(dir.path()).is_err());
    }
}
