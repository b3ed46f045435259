//! Generated English-like text, for tests and demos of the language models: `synthetic_text`.
//!
//! Sentences follow a small grammar over fixed word lists — `the old man sees a dog. an owl
//! sleeps under my quiet house.` — so a small LSTM learns the spelling of the 43 words within
//! an epoch or two and the sentence structure soon after, while the random choices keep the
//! perplexity well above 1.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DETERMINERS: [&str; 4] = ["the", "a", "this", "my"];
const ADJECTIVES: [&str; 8] = ["old", "small", "green", "quiet", "happy", "dark", "strange", "early"];
const NOUNS: [&str; 12] =
    ["man", "woman", "cat", "dog", "owl", "house", "river", "garden", "machine", "book", "lamp", "island"];
const INTRANSITIVE: [&str; 6] = ["runs", "sleeps", "waits", "sings", "falls", "stays"];
const TRANSITIVE: [&str; 7] = ["sees", "likes", "finds", "makes", "takes", "reads", "watches"];
const PREPOSITIONS: [&str; 5] = ["in", "near", "under", "over", "with"];

/// About `chars` characters — exactly `chars`, the last sentence cut where the count runs out —
/// of generated sentences, the same for the same `seed`.
///
/// The text holds only lower-case ASCII letters, single spaces and periods. Each sentence is
/// `noun-phrase verb-phrase.`, sentences separated by one space, where a noun phrase is a
/// determiner (`the`, `a`, `this`, `my`; `a` becomes `an` before a vowel), sometimes an adjective,
/// and a noun; and a verb phrase is a transitive verb and a noun phrase, or an intransitive verb,
/// sometimes followed by a preposition and a noun phrase.
pub fn synthetic_text(seed: u64, chars: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut words: Vec<&str> = Vec::new();
    let mut text = String::with_capacity(chars + 64);
    while text.len() < chars {
        words.clear();
        noun_phrase(&mut rng, &mut words);
        if rng.random_bool(0.5) {
            words.push(pick(&mut rng, &TRANSITIVE));
            noun_phrase(&mut rng, &mut words);
        } else {
            words.push(pick(&mut rng, &INTRANSITIVE));
            if rng.random_bool(0.6) {
                words.push(pick(&mut rng, &PREPOSITIONS));
                noun_phrase(&mut rng, &mut words);
            }
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&words.join(" "));
        text.push('.');
    }
    // Only ASCII was written, so any byte length is a character boundary.
    text.truncate(chars);
    text
}

/// Pushes `determiner [adjective] noun`, with `a` as `an` before a vowel.
fn noun_phrase(rng: &mut StdRng, words: &mut Vec<&'static str>) {
    let determiner = pick(rng, &DETERMINERS);
    let adjective = rng.random_bool(0.4).then(|| pick(rng, &ADJECTIVES));
    let noun = pick(rng, &NOUNS);
    let next = adjective.unwrap_or(noun);
    let vowel = next.starts_with(['a', 'e', 'i', 'o', 'u']);
    words.push(if determiner == "a" && vowel { "an" } else { determiner });
    words.extend(adjective);
    words.push(noun);
}

fn pick(rng: &mut StdRng, words: &[&'static str]) -> &'static str {
    words[rng.random_range(0..words.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text_of_exactly_the_length_asked() {
        let a = synthetic_text(7, 5000);
        assert_eq!(a, synthetic_text(7, 5000));
        assert_eq!(a.len(), 5000);
        assert_ne!(a, synthetic_text(8, 5000));
        // A shorter text is a prefix of a longer one from the same seed.
        assert_eq!(synthetic_text(7, 1200), a[..1200]);
        assert_eq!(synthetic_text(1, 0), "");
    }

    #[test]
    fn only_lower_case_letters_single_spaces_and_periods() {
        let text = synthetic_text(3, 20_000);
        assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == ' ' || c == '.'));
        assert!(!text.contains("  ") && !text.starts_with(' '));
        assert!(text.matches(". ").count() > 100);
    }

    #[test]
    fn every_word_comes_from_the_lists_and_articles_agree() {
        let text = synthetic_text(5, 20_000);
        let known: Vec<&str> =
            [&DETERMINERS[..], &ADJECTIVES, &NOUNS, &INTRANSITIVE, &TRANSITIVE, &PREPOSITIONS]
                .concat()
                .into_iter()
                .chain(["an"])
                .collect();
        let complete = &text[..text.rfind('.').unwrap()];
        let words: Vec<&str> = complete.split([' ', '.']).filter(|w| !w.is_empty()).collect();
        for word in &words {
            assert!(known.contains(word), "unknown word {word:?}");
        }
        for pair in words.windows(2) {
            let vowel = pair[1].starts_with(['a', 'e', 'i', 'o', 'u']);
            if pair[0] == "a" || pair[0] == "an" {
                assert_eq!(pair[0] == "an", vowel, "{} {}", pair[0], pair[1]);
            }
        }
        assert!(words.contains(&"an"));
    }
}
