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

/// The logits of a one-layer GRU or LSTM model computed by Burn's own module `forward`.
fn logits_through_burns_module(model: &RnnLm, tokens: Tensor<2, Int>, state: &LayerState) -> Tensor<2> {
    let [batch, steps] = tokens.dims();
    let x = match &model.embedding {
        Some(embedding) => embedding.forward(tokens),
        None => tokens.one_hot::<3>(model.vocab).float(),
    };
    let outputs = match &model.layers[0] {
        Layer::Gru(gru) => gru.forward(x, Some(state.hidden.clone())),
        Layer::Lstm(lstm) => {
            let cell = state.cell.clone().expect("an LSTM state");
            lstm.forward(x, Some(burn::nn::LstmState::new(cell, state.hidden.clone()))).0
        }
        Layer::Rnn(_) => unreachable!("the scratch RNN has no Burn module"),
    };
    model.head.forward(outputs.reshape([batch * steps, model.hidden]))
}

/// Every parameter's gradient of `loss`, flattened, in the model's order.
fn gradients(model: &RnnLm, loss: Tensor<1>) -> Vec<Vec<f32>> {
    use burn::module::ModuleVisitor;
    use burn::optim::GradientsParams;
    struct Collect(GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self.0.get::<D>(param.id).expect("every parameter gets a gradient");
            self.1.push(grad.into_data().iter::<f32>().collect());
        }
    }
    let mut collect = Collect(GradientsParams::from_grads(loss.backward(), model), Vec::new());
    model.visit(&mut collect);
    collect.1
}

#[test]
fn gru_and_lstm_steps_match_burns_modules_in_value_and_gradient() {
    let device = Device::flex().autodiff();
    let tokens: Vec<i64> = (0..10).map(|i| (i * 5 + 3) % 7).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [2, 5]), &device);
    for cell in [Cell::Gru, Cell::Lstm] {
        for embedding in [None, Some(4)] {
            let model = RnnLmConfig::new(7, cell).with_hidden(6).with_embedding(embedding).init(&device);
            // A state that is not zero, so the hidden products matter from the first step.
            let state = |seed: f32| {
                let values: Vec<f32> = (0..12).map(|i| ((i as f32 + seed) * 0.37).sin() * 0.5).collect();
                Tensor::<2>::from_data(TensorData::new(values, [2, 6]), &device)
            };
            let start = LayerState { hidden: state(1.0), cell: (cell == Cell::Lstm).then(|| state(2.0)) };
            let (ours, _) = model.forward(tokens.clone(), State(vec![start.clone()]));
            let theirs = logits_through_burns_module(&model, tokens.clone(), &start);
            let diff: f32 = (ours.clone() - theirs.clone()).abs().max().into_scalar();
            assert!(diff < 1e-5, "{cell:?} {embedding:?}: logits differ by {diff}");

            // A loss that weighs every logit differently, so every gradient entry is exercised.
            let weights = Tensor::<2>::from_data(
                TensorData::new((0..70).map(|i| (i as f32 * 0.61).cos()).collect::<Vec<_>>(), [10, 7]),
                &device,
            );
            let ours = gradients(&model, (ours * weights.clone()).sum());
            let theirs = gradients(&model, (theirs * weights).sum());
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(diff < 1e-5, "{cell:?} {embedding:?}: gradient of parameter {i} differs by {diff}");
            }
        }
    }
}
