//! Cutting a token stream into `[batch_size, num_steps]` batches for truncated backpropagation
//! through time: the `data.sampling` choice.
//!
//! [`epoch_batches`] follows the book's `seq_data_iter_sequential` and `seq_data_iter_random`
//! (*Dive into Deep Learning* 0.17, §8.3.4): each epoch starts at a random offset, so a model sees
//! every split of the text over the epochs. [`batches_per_epoch`] is the count at the least
//! favourable offset, so every epoch has the same number of steps whatever offset it draws.
//! [`validation_batches`] cuts a held-out stream the same way without randomness.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `data.sampling`: how an epoch's subsequences are taken from the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Row `r` of one batch continues row `r` of the batch before, so the hidden state can be
    /// carried from batch to batch.
    Sequential,
    /// Subsequences from random places in the corpus, none twice in an epoch; the hidden state
    /// starts afresh for every batch.
    Random,
}

/// One batch of a language model: `x` and `y` are row-major `[batch_size, num_steps]` token ids,
/// and each element of `y` is the token that follows the same element of `x` in the corpus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Batch {
    pub x: Vec<u32>,
    pub y: Vec<u32>,
    pub batch_size: usize,
    pub num_steps: usize,
}

/// The number of batches in every epoch of a corpus of `len` tokens; 0 when it is too short for
/// one batch (or `batch_size` or `num_steps` is 0).
///
/// It is the count at the worst offset an epoch can draw: `num_steps` for sequential sampling,
/// `num_steps - 1` for random sampling.
pub fn batches_per_epoch(len: usize, batch_size: usize, num_steps: usize, sampling: Sampling) -> usize {
    if batch_size == 0 || num_steps == 0 {
        return 0;
    }
    match sampling {
        Sampling::Sequential => (len.saturating_sub(num_steps + 1) / batch_size) / num_steps,
        Sampling::Random => (len.saturating_sub(num_steps) / num_steps) / batch_size,
    }
}

/// The batches of epoch `epoch`: exactly [`batches_per_epoch`] of them, fixed by `seed` and
/// `epoch` alone, so a resumed job sees the batches it would have seen.
///
/// Sequential: an offset `o` in `0..=num_steps`; the `n = ((len - o - 1) / batch_size) *
/// batch_size` tokens from `o` are laid out as `batch_size` rows, and batch `i` is columns
/// `i * num_steps .. (i + 1) * num_steps` of every row. Random: an offset `o` in `0..num_steps`;
/// subsequences start at `o + k * num_steps`; the starts are shuffled and each run of
/// `batch_size` of them is one batch. Columns or starts beyond the fixed count are left out.
pub fn epoch_batches(
    corpus: &[u32],
    batch_size: usize,
    num_steps: usize,
    sampling: Sampling,
    seed: u64,
    epoch: u32,
) -> Vec<Batch> {
    let count = batches_per_epoch(corpus.len(), batch_size, num_steps, sampling);
    if count == 0 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ u64::from(epoch).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    match sampling {
        Sampling::Sequential => {
            let offset = rng.random_range(0..=num_steps);
            let row_len = (corpus.len() - offset - 1) / batch_size;
            (0..count)
                .map(|i| {
                    let starts = (0..batch_size).map(|row| offset + row * row_len + i * num_steps);
                    gather(corpus, starts, num_steps)
                })
                .collect()
        }
        Sampling::Random => {
            let offset = rng.random_range(0..num_steps);
            let subsequences = (corpus.len() - offset - 1) / num_steps;
            let mut starts: Vec<usize> = (0..subsequences).map(|k| offset + k * num_steps).collect();
            starts.shuffle(&mut rng);
            starts
                .chunks_exact(batch_size)
                .take(count)
                .map(|chunk| gather(corpus, chunk.iter().copied(), num_steps))
                .collect()
        }
    }
}

/// A held-out stream as batches in reading order, for evaluation with the hidden state carried
/// from one batch to the next.
///
/// The first `len - 1` tokens are split into `rows = min(batch_size, max(1, (len - 1) /
/// num_steps))` equal rows (the few left over are dropped), and the rows are cut into column
/// blocks of `num_steps`. Every row's tokens are kept: the last batch is narrower than
/// `num_steps` when the row length is not a multiple of it, and `batch_size` of every batch is
/// `rows`. Empty when the stream has fewer than 2 tokens.
pub fn validation_batches(stream: &[u32], batch_size: usize, num_steps: usize) -> Vec<Batch> {
    if stream.len() < 2 || batch_size == 0 || num_steps == 0 {
        return Vec::new();
    }
    let rows = batch_size.min(((stream.len() - 1) / num_steps).max(1));
    let row_len = (stream.len() - 1) / rows;
    (0..row_len.div_ceil(num_steps))
        .map(|block| {
            let column = block * num_steps;
            let starts = (0..rows).map(|row| row * row_len + column);
            gather(stream, starts, num_steps.min(row_len - column))
        })
        .collect()
}

/// The batch whose rows are `corpus[s..s + width]` (and the tokens after them) for each start `s`.
fn gather(corpus: &[u32], starts: impl ExactSizeIterator<Item = usize>, width: usize) -> Batch {
    let batch_size = starts.len();
    let mut x = Vec::with_capacity(batch_size * width);
    let mut y = Vec::with_capacity(batch_size * width);
    for start in starts {
        x.extend_from_slice(&corpus[start..start + width]);
        y.extend_from_slice(&corpus[start + 1..start + width + 1]);
    }
    Batch { x, y, batch_size, num_steps: width }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const SAMPLINGS: [Sampling; 2] = [Sampling::Sequential, Sampling::Random];

    /// A corpus whose token at position `p` is `p`: a batch's values are its corpus positions.
    fn positions(len: usize) -> Vec<u32> {
        (0..len as u32).collect()
    }

    /// Every (len, batch_size, num_steps) the structural tests try, short and awkward included.
    fn shapes() -> impl Iterator<Item = (usize, usize, usize)> {
        let lens = [0, 1, 2, 3, 5, 9, 34, 35, 36, 37, 70, 71, 72, 100, 257, 1000, 1234];
        lens.into_iter().flat_map(|len| {
            [1, 2, 3, 7, 32]
                .into_iter()
                .flat_map(move |b| [1, 2, 5, 35].into_iter().map(move |t| (len, b, t)))
        })
    }

    #[test]
    fn every_epoch_has_exactly_batches_per_epoch_batches_of_shape_b_by_t() {
        for (len, b, t) in shapes() {
            let corpus = positions(len);
            for sampling in SAMPLINGS {
                let expected = batches_per_epoch(len, b, t, sampling);
                for epoch in 0..6 {
                    let batches = epoch_batches(&corpus, b, t, sampling, 11, epoch);
                    assert_eq!(batches.len(), expected, "len {len} B {b} T {t} {sampling:?} epoch {epoch}");
                    for batch in &batches {
                        assert_eq!((batch.batch_size, batch.num_steps), (b, t));
                        assert_eq!((batch.x.len(), batch.y.len()), (b * t, b * t));
                    }
                }
            }
        }
    }

    #[test]
    fn rows_are_consecutive_runs_and_y_is_x_one_token_later() {
        for (len, b, t) in shapes() {
            let corpus = positions(len);
            for sampling in SAMPLINGS {
                for batch in epoch_batches(&corpus, b, t, sampling, 3, 1) {
                    for row in 0..b {
                        let start = batch.x[row * t] as usize;
                        for c in 0..t {
                            assert_eq!(batch.x[row * t + c] as usize, start + c);
                            assert_eq!(batch.y[row * t + c] as usize, start + c + 1);
                        }
                        assert!(start + t < len);
                    }
                }
            }
        }
    }

    #[test]
    fn batches_hold_the_tokens_at_those_positions() {
        // The same draws on a corpus of other values give the same positions, mapped.
        let value = |p: u32| (p * 7919) % 53;
        let corpus: Vec<u32> = positions(700).into_iter().map(value).collect();
        for sampling in SAMPLINGS {
            let at = epoch_batches(&positions(700), 4, 9, sampling, 5, 2);
            let got = epoch_batches(&corpus, 4, 9, sampling, 5, 2);
            assert!(!got.is_empty());
            for (at, got) in at.iter().zip(&got) {
                assert_eq!(got.x, at.x.iter().map(|&p| value(p)).collect::<Vec<_>>());
                assert_eq!(got.y, at.y.iter().map(|&p| value(p)).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn sequential_rows_continue_from_one_batch_to_the_next() {
        for (len, b, t) in shapes() {
            for epoch in 0..4 {
                let batches = epoch_batches(&positions(len), b, t, Sampling::Sequential, 8, epoch);
                let first = batches.first().map(|batch| batch.x[0]);
                assert!(first.is_none_or(|offset| offset as usize <= t), "offset in 0..=T");
                for pair in batches.windows(2) {
                    for row in 0..b {
                        assert_eq!(pair[1].x[row * t], pair[0].x[row * t + t - 1] + 1);
                        assert_eq!(pair[1].x[row * t], pair[0].y[row * t + t - 1]);
                    }
                }
            }
        }
    }

    #[test]
    fn random_starts_are_distinct_and_aligned_to_one_offset() {
        for (len, b, t) in shapes() {
            for epoch in 0..4 {
                let batches = epoch_batches(&positions(len), b, t, Sampling::Random, 8, epoch);
                let starts: Vec<usize> = batches
                    .iter()
                    .flat_map(|batch| (0..b).map(move |row| batch.x[row * t] as usize))
                    .collect();
                let distinct: HashSet<usize> = starts.iter().copied().collect();
                assert_eq!(distinct.len(), starts.len(), "len {len} B {b} T {t}: a start repeats");
                if let Some(first) = starts.first() {
                    assert!(starts.iter().all(|s| s % t == first % t), "len {len} B {b} T {t}: misaligned");
                }
            }
        }
    }

    #[test]
    fn random_batches_cover_the_corpus_in_shuffled_order() {
        let batches = epoch_batches(&positions(1000), 4, 10, Sampling::Random, 1, 0);
        let starts: Vec<u32> =
            batches.iter().flat_map(|batch| batch.x.chunks(10).map(|row| row[0])).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_ne!(starts, sorted, "starts are shuffled");
        // 99 subsequences whatever the offset; 24 batches of 4 use all but 3.
        assert_eq!(starts.len(), 96);
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_batches_and_other_epochs_differ() {
        let corpus = positions(5000);
        for sampling in SAMPLINGS {
            let a = epoch_batches(&corpus, 8, 12, sampling, 42, 3);
            assert_eq!(a, epoch_batches(&corpus, 8, 12, sampling, 42, 3));
            let epochs: HashSet<Vec<Batch>> =
                (0..8).map(|epoch| epoch_batches(&corpus, 8, 12, sampling, 42, epoch)).collect();
            assert!(epochs.len() > 1, "{sampling:?}: every epoch drew the same batches");
        }
        let epoch = |e| epoch_batches(&corpus, 8, 12, Sampling::Random, 42, e);
        assert_ne!(epoch(0), epoch(1));
        assert_ne!(epoch(0), epoch_batches(&corpus, 8, 12, Sampling::Random, 43, 0));
    }

    #[test]
    fn ten_thousand_characters_in_batches_of_32_by_35_make_8_sequential_batches() {
        assert_eq!(batches_per_epoch(10_000, 32, 35, Sampling::Sequential), 8);
        assert_eq!(epoch_batches(&positions(10_000), 32, 35, Sampling::Sequential, 0, 0).len(), 8);
        assert_eq!(batches_per_epoch(10_000, 32, 35, Sampling::Random), 8);
    }

    #[test]
    fn too_short_corpora_have_no_batches() {
        for sampling in SAMPLINGS {
            assert_eq!(batches_per_epoch(0, 2, 5, sampling), 0);
            assert_eq!(batches_per_epoch(100, 0, 5, sampling), 0);
            assert_eq!(batches_per_epoch(100, 2, 0, sampling), 0);
            assert!(epoch_batches(&positions(100), 2, 0, sampling, 0, 0).is_empty());
        }
        // Sequential needs num_steps + 1 tokens past the worst offset in every row.
        assert_eq!(batches_per_epoch(2 * 5 + 5, 2, 5, Sampling::Sequential), 0);
        assert_eq!(batches_per_epoch(2 * 5 + 5 + 1, 2, 5, Sampling::Sequential), 1);
        // Random needs batch_size subsequences after the worst offset, plus one target token.
        assert_eq!(batches_per_epoch(2 * 5 + 4, 2, 5, Sampling::Random), 0);
        assert_eq!(batches_per_epoch(2 * 5 + 5, 2, 5, Sampling::Random), 1);
    }

    #[test]
    fn validation_batches_read_the_stream_in_rows_and_keep_every_token() {
        for (len, b, t) in shapes() {
            let batches = validation_batches(&positions(len), b, t);
            if len < 2 {
                assert!(batches.is_empty());
                continue;
            }
            let rows = b.min(((len - 1) / t).max(1));
            let row_len = (len - 1) / rows;
            assert_eq!(batches.len(), row_len.div_ceil(t), "len {len} B {b} T {t}");
            let mut seen = Vec::new();
            for (i, batch) in batches.iter().enumerate() {
                assert_eq!(batch.batch_size, rows);
                assert_eq!(batch.num_steps, if i + 1 < batches.len() { t } else { row_len - i * t });
                for row in 0..rows {
                    for c in 0..batch.num_steps {
                        let at = row * batch.num_steps + c;
                        assert_eq!(batch.x[at] as usize, row * row_len + i * t + c);
                        assert_eq!(batch.y[at], batch.x[at] + 1);
                    }
                }
                seen.extend_from_slice(&batch.x);
            }
            seen.sort();
            assert_eq!(seen, (0..(rows * row_len) as u32).collect::<Vec<_>>());
        }
        assert!(validation_batches(&positions(100), 0, 5).is_empty());
    }

    #[test]
    fn a_short_validation_stream_is_one_narrow_row() {
        let batches = validation_batches(&[4, 5, 6, 7], 32, 35);
        assert_eq!(batches, [Batch { x: vec![4, 5, 6], y: vec![5, 6, 7], batch_size: 1, num_steps: 3 }]);
    }
}
