//! Unit tests of the language models: parameter counts, the book's formula, state carrying.

use super::*;
use crate::models::materialize;
use burn::tensor::TensorData;

#[test]
fn the_scratch_rnn_has_80156_parameters_at_256_hidden_over_28_symbols() {
    let config = RnnLmConfig::new(28, Cell::Rnn);
    assert_eq!(config.parameter_count(), 80_156);
    assert_eq!(materialize(&config.init(&Device::flex().autodiff())), 80_156);
}

#[test]
fn parameter_counts_match_the_built_modules() {
    let device = Device::flex().autodiff();
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        for (layers, embedding) in [(1, None), (2, None), (2, Some(8))] {
            let config =
                RnnLmConfig::new(11, cell).with_hidden(16).with_layers(layers).with_embedding(embedding);
            assert_eq!(materialize(&config.init(&device)), config.parameter_count(), "{config:?}");
        }
    }
}

#[test]
fn the_scratch_rnn_computes_the_books_formula() {
    let device = Device::flex();
    let model = RnnLmConfig::new(5, Cell::Rnn).with_hidden(3).init(&device);
    let Layer::Rnn(cell) = &model.layers[0] else { panic!("an rnn layer") };
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 4, 2, 0, 3, 3], [2, 3]), &device);
    let (logits, state) = model.forward(tokens.clone(), model.begin_state(2, &device));
    assert_eq!(logits.dims(), [6, 5]);

    // The same thing by hand, with one-hot matrices and plain matmuls.
    let w_xh = cell.w_xh.val();
    let w_hh = cell.w_hh.val();
    let b_h = cell.b_h.val().reshape([1, 3]);
    let w_hq = model.head.weight.val();
    let b_q = model.head.bias.as_ref().unwrap().val().reshape([1, 5]);
    let one_hot = tokens.one_hot::<3>(5).float();
    let mut h = Tensor::<2>::zeros([2, 3], &device);
    for t in 0..3 {
        let x_t = one_hot.clone().narrow(1, t, 1).reshape([2, 5]);
        h = (x_t.matmul(w_xh.clone()) + h.matmul(w_hh.clone()) + b_h.clone()).tanh();
        let o_t = h.clone().matmul(w_hq.clone()) + b_q.clone();
        for b in 0..2 {
            let got = logits.clone().narrow(0, b * 3 + t, 1).reshape([1, 5]);
            let want = o_t.clone().narrow(0, b, 1);
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-6, "step {t}, sequence {b}: {diff}");
        }
    }
    let diff: f32 = (state.0[0].hidden.clone() - h).abs().max().into_scalar();
    assert!(diff < 1e-6);
}

#[test]
fn the_gru_and_lstm_have_pytorchs_parameter_counts() {
    assert_eq!(RnnLmConfig::new(28, Cell::Gru).parameter_count(), 226_844);
    assert_eq!(RnnLmConfig::new(28, Cell::Lstm).parameter_count(), 300_060);
    let device = Device::flex().autodiff();
    assert_eq!(materialize(&RnnLmConfig::new(28, Cell::Lstm).init(&device)), 300_060);
}

#[test]
fn every_cell_maps_tokens_to_logits_and_carries_state() {
    let device = Device::flex();
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        for embedding in [None, Some(4)] {
            let model = RnnLmConfig::new(7, cell)
                .with_hidden(6)
                .with_layers(2)
                .with_embedding(embedding)
                .init(&device);
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64; 8], [2, 4]), &device);
            let (logits, state) = model.forward(tokens.clone(), model.begin_state(2, &device));
            assert_eq!(logits.dims(), [8, 7], "{cell:?}");
            assert_eq!(state.0.len(), 2);
            assert_eq!(state.0[1].cell.is_some(), cell == Cell::Lstm);
            // Two halves with the state carried give the same logits as the whole.
            let (first, mid) = model.forward(tokens.clone().narrow(1, 0, 2), model.begin_state(2, &device));
            let (second, _) = model.forward(tokens.narrow(1, 2, 2), mid);
            let whole = logits.reshape([2, 4, 7]);
            let halves = Tensor::cat(vec![first.reshape([2, 2, 7]), second.reshape([2, 2, 7])], 1);
            let diff: f32 = (whole - halves).abs().max().into_scalar();
            assert!(diff < 1e-5, "{cell:?} {embedding:?}: {diff}");
        }
    }
}
