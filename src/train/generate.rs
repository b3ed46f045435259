//! Text from a trained language model, the book's `predict_ch8` with sampling added.
//!
//! The prefix is normalised and tokenised as the job's corpus was, unknown tokens becoming
//! `<unk>`; the model reads it to warm its state, then each next token is chosen from the last
//! logits — the argmax at temperature 0 (the book), else a draw from the softmax of
//! logits / temperature, optionally restricted to the `top_k` likeliest tokens, from a generator
//! seeded by the request — and fed back. Same checkpoint, prefix and seed: same text.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::definition::generate::ValidGenerate;
use crate::definition::{FieldError, TextDataSpec};
use crate::models::RnnLm;
use crate::text::{self, Normalize, Vocab};

/// Tokens of the prefix read in one forward pass.
const PREFIX_CHUNK: usize = 256;

/// The prefix normalised as the corpus was. Unlike a whole corpus, a prefix keeps a trailing
/// space: "time traveller " asks for the next word, not the rest of this one.
pub fn normalize_prefix(prefix: &str, how: Normalize) -> String {
    let normalized = text::normalize(prefix, how);
    let ends_in_space = prefix.chars().last().is_some_and(|c| !c.is_ascii_alphabetic());
    if how == Normalize::D2l && ends_in_space && !normalized.is_empty() {
        normalized + " "
    } else {
        normalized
    }
}

/// Picks the next token from one row of logits.
fn choose(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut StdRng) -> usize {
    let argmax =
        || logits.iter().enumerate().fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
    if temperature == 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(top_k.unwrap_or(logits.len()).min(logits.len()));
    let top = f64::from(logits[order[0]]);
    let weights: Vec<f64> =
        order.iter().map(|&i| ((f64::from(logits[i]) - top) / temperature).exp()).collect();
    let mut draw = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in order.iter().zip(&weights) {
        if draw < *w {
            return *i;
        }
        draw -= w;
    }
    order[order.len() - 1]
}

/// Continues `request.prefix` with `model`, whose tokens are `vocab`'s and whose corpus was
/// prepared as `data` says. Returns the prompt as read and the continuation, or a problem with
/// `prefix` when nothing of it is left to read after normalisation.
pub fn generate(
    model: &RnnLm,
    vocab: &Vocab,
    data: &TextDataSpec,
    request: &ValidGenerate,
    device: &Device,
) -> Result<(String, String), FieldError> {
    let prompt = normalize_prefix(&request.prefix, data.normalize);
    let prompt_tokens = text::tokenize(&prompt, data.tokenizer);
    let ids: Vec<i64> = vocab.encode(&prompt_tokens).into_iter().map(i64::from).collect();
    let mut rng = StdRng::seed_from_u64(request.seed);
    let mut out: Vec<u32> = Vec::with_capacity(request.max_tokens);
    if ids.is_empty() {
        return Err(FieldError {
            field: "prefix".into(),
            message: "has nothing left once normalised as the job's corpus was (data.normalize = d2l keeps \
                      letters only); give it some words"
                .into(),
        });
    }
    // Warm-up: read the prefix in chunks, carrying the state, so a long prefix costs no more
    // memory than a chunk; the last row predicts the first new token.
    let mut state = model.begin_state(1, device);
    let mut last: Vec<f32> = Vec::new();
    for chunk in ids.chunks(PREFIX_CHUNK) {
        let n = chunk.len();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(chunk.to_vec(), [1, n]), device);
        let (logits, next) = model.forward(tokens, state);
        state = next;
        last = logits.narrow(0, n - 1, 1).into_data().try_to_vec::<f32>().expect("f32 logits");
    }
    for i in 0..request.max_tokens {
        let next = choose(&last, request.temperature, request.top_k, &mut rng);
        out.push(next as u32);
        if i + 1 == request.max_tokens {
            break;
        }
        let token = Tensor::<2, Int>::from_data(TensorData::new(vec![next as i64], [1, 1]), device);
        let (logits, next_state) = model.forward(token, state);
        state = next_state;
        last = logits.into_data().try_to_vec::<f32>().expect("f32 logits");
    }
    let words: Vec<&str> = out.iter().map(|&t| vocab.token(t)).collect();
    let mut continuation = text::detokenize(&words, data.tokenizer);
    if data.tokenizer == text::Tokenizer::Word && !continuation.is_empty() && !prompt.ends_with(' ') {
        continuation.insert(0, ' ');
    }
    Ok((prompt, continuation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_zero_takes_the_argmax_and_sampling_is_seeded() {
        let logits = [0.1f32, 2.0, -1.0, 1.9];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(choose(&logits, 0.0, None, &mut rng), 1);
        // top_k = 1 is the argmax whatever the temperature.
        assert_eq!(choose(&logits, 5.0, Some(1), &mut rng), 1);
        // top_k = 2 only ever picks the two likeliest.
        let picks: Vec<usize> = (0..200).map(|_| choose(&logits, 1.0, Some(2), &mut rng)).collect();
        assert!(picks.iter().all(|p| *p == 1 || *p == 3));
        assert!(picks.contains(&1) && picks.contains(&3));
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20).map(|_| choose(&logits, 1.0, None, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn a_prefix_keeps_its_trailing_space() {
        assert_eq!(normalize_prefix("Time Traveller ", Normalize::D2l), "time traveller ");
        assert_eq!(normalize_prefix("Time-Traveller", Normalize::D2l), "time traveller");
        assert_eq!(normalize_prefix("Time ", Normalize::None), "Time ");
    }
}
