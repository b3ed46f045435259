//! [`Utf8Stream`]: checks that a text arriving in chunks is UTF-8, and counts its characters,
//! without holding more than the chunk at hand.
//!
//! A character may straddle two chunks (or more, when chunks are a byte or two long): the at most
//! three bytes of a character begun at the end of a chunk are kept until the next one completes
//! it. The answer is the one `std::str::from_utf8` would give over the whole text: the absolute
//! offset of the first invalid byte — the first byte of the sequence that is invalid, or of a
//! character the text ends in the middle of.

/// The text's first invalid byte is at `offset` from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8 {
    pub offset: u64,
}

/// A UTF-8 check over a text fed chunk by chunk.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    /// The start of a character the last chunk ended in; `tail_len` bytes of it.
    tail: [u8; 4],
    tail_len: usize,
    /// Bytes before `tail`: all valid and counted.
    checked: u64,
    chars: u64,
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next chunk. After an error the stream must not be fed again.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.tail_len > 0 {
            let take = (char_width(self.tail[0]) - self.tail_len).min(chunk.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&chunk[..take]);
            self.tail_len += take;
            chunk = &chunk[take..];
            match std::str::from_utf8(&self.tail[..self.tail_len]) {
                Ok(_) => {
                    self.checked += self.tail_len as u64;
                    self.chars += 1;
                    self.tail_len = 0;
                }
                // Still short of its last bytes: `chunk` is used up.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8 { offset: self.checked }),
            }
        }
        let (valid, rest) = match std::str::from_utf8(chunk) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (valid, rest) = chunk.split_at(e.valid_up_to());
                let valid = std::str::from_utf8(valid).expect("valid up to here");
                if e.error_len().is_some() {
                    self.count(valid);
                    return Err(InvalidUtf8 { offset: self.checked });
                }
                (valid, rest)
            }
        };
        self.count(valid);
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
        Ok(())
    }

    /// Ends the text: its number of characters, or the offset of a character it ends inside.
    pub fn finish(self) -> Result<u64, InvalidUtf8> {
        if self.tail_len > 0 { Err(InvalidUtf8 { offset: self.checked }) } else { Ok(self.chars) }
    }

    fn count(&mut self, valid: &str) {
        self.checked += valid.len() as u64;
        self.chars += valid.chars().count() as u64;
    }
}

/// The length of the character that `lead` begins; `lead` is the first byte of a valid but
/// incomplete sequence, so it is one of `0xC2..=0xF4`.
fn char_width(lead: u8) -> usize {
    match lead {
        0x00..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the check answers for `text` split at `cuts` (ascending offsets).
    fn split_check(text: &[u8], cuts: &[usize]) -> Result<u64, InvalidUtf8> {
        let mut stream = Utf8Stream::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([&text.len()]) {
            stream.feed(&text[start..cut])?;
            start = cut;
        }
        stream.finish()
    }

    /// What `std::str::from_utf8` answers for the whole text.
    fn whole(text: &[u8]) -> Result<u64, InvalidUtf8> {
        std::str::from_utf8(text)
            .map(|t| t.chars().count() as u64)
            .map_err(|e| InvalidUtf8 { offset: e.valid_up_to() as u64 })
    }

    const SAMPLES: &[&[u8]] = &[
        "".as_bytes(),
        "plain ascii".as_bytes(),
        "é時🦀 mixed: aé時🦀z".as_bytes(),
        b"abc\xffdef",
        b"ab\xe2\x9c",                       // ✓ cut off at the end
        b"\xe2\x9c\x93\xe2\x28\xa1x",        // ✓, then a 3-byte lead with a bad second byte
        b"ok \xf0\x9f\xa6\x80 \xf0\x9f\xa6", // 🦀, then one missing its last byte
        b"\xc0\xafoverlong",
        b"\xed\xa0\x80surrogate",
        b"x\xf4\x90\x80\x80 over U+10FFFF",
        b"\x80lone continuation",
        "ends in é".as_bytes(),
    ];

    #[test]
    fn every_split_in_two_or_three_answers_as_the_whole_text_does() {
        for &text in SAMPLES {
            let expected = whole(text);
            for a in 0..=text.len() {
                assert_eq!(split_check(text, &[a]), expected, "{text:?} cut at {a}");
                for b in a..=text.len() {
                    assert_eq!(split_check(text, &[a, b]), expected, "{text:?} cut at {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn a_character_split_byte_by_byte_is_one_character() {
        let crab = "🦀".as_bytes();
        assert_eq!(split_check(crab, &[1, 2, 3]), Ok(1));
        let text = "a🦀b時c".as_bytes();
        let every_byte: Vec<usize> = (1..text.len()).collect();
        assert_eq!(split_check(text, &every_byte), Ok(5));
    }

    #[test]
    fn offsets_are_absolute_across_chunks() {
        let mut text = vec![b'a'; 100_000];
        text.extend_from_slice("é".as_bytes());
        text.extend_from_slice(b"b\xffc");
        // The invalid byte is four chunks in; é straddles the first cut.
        assert_eq!(split_check(&text, &[100_001, 100_002, 100_003]), Err(InvalidUtf8 { offset: 100_003 }));
        assert_eq!(split_check(&text[..100_003], &[30_000, 100_001]), Ok(100_002));
        // A chunk that completes a straddling character with a bad byte: the character's start.
        let bad = [&text[..100_000], b"\xc3", b"(rest"].concat();
        assert_eq!(split_check(&bad, &[100_001]), Err(InvalidUtf8 { offset: 100_000 }));
        // The text ends inside a character begun in an earlier chunk.
        let cut = [&text[..100_000], "時".as_bytes().get(..2).unwrap()].concat();
        assert_eq!(split_check(&cut, &[100_001, 100_002]), Err(InvalidUtf8 { offset: 100_000 }));
    }
}
