//! The recurrent layers over a whole sequence, time-major.
//!
//! Burn's own `Gru` and `Lstm` modules hold the weights (so checkpoints and parameter counts
//! are theirs), but their `forward` is slow to train on the CPU for the book's models: every
//! step multiplies the one-hot input by each gate's input matrix, slices the step out of a
//! tensor that spans the whole sequence and writes its output into another; in Burn's autodiff
//! the backward of each such slice and write is a tensor the size of the whole sequence. Here
//! the gates' weights sit side by side ([`Gates`]); the input's products for every step are one
//! product (a row lookup for one-hot tokens: the same value and gradient) before the layer, and
//! the layer itself is one fused operation ([`crate::fused`]) that runs the steps. The equations
//! are the modules' own: tests check values and gradients against theirs.

use burn::nn::{GateController, Gru, Linear, Lstm};
use burn::tensor::{Int, Tensor};

use super::RnnCell;
use crate::fused;

/// A sequence entering a layer, time-major.
pub enum Sequence {
    /// Token ids `[steps · batch]`, step by step: the first layer's input without an embedding,
    /// fed one-hot.
    Tokens { ids: Tensor<1, Int>, steps: usize, batch: usize },
    /// Features `[steps, batch, width]`.
    Dense(Tensor<3>),
}

impl Sequence {
    /// `x_t W` for every step at once, `[steps, batch, outputs]`, with `W` `[inputs, outputs]`.
    fn product(&self, weight: Tensor<2>) -> Tensor<3> {
        let [_, outputs] = weight.dims();
        match self {
            Self::Tokens { ids, steps, batch } => {
                weight.select(0, ids.clone()).reshape([*steps, *batch, outputs])
            }
            Self::Dense(x) => {
                let [steps, batch, width] = x.dims();
                x.clone().reshape([steps * batch, width]).matmul(weight).reshape([steps, batch, outputs])
            }
        }
    }
}

/// The weights of several gates side by side: `[inputs, gates·hidden]` for the input and
/// `[hidden, gates·hidden]` for the hidden state, and their biases `[gates·hidden]`, gate after
/// gate in the order given.
struct Gates {
    input: Tensor<2>,
    hidden: Tensor<2>,
    input_bias: Tensor<1>,
    hidden_bias: Tensor<1>,
}

impl Gates {
    fn of(controllers: &[&GateController]) -> Self {
        fn input(c: &GateController) -> &Linear {
            &c.input_transform
        }
        fn hidden(c: &GateController) -> &Linear {
            &c.hidden_transform
        }
        let weights = |linear: fn(&GateController) -> &Linear| {
            Tensor::cat(controllers.iter().map(|c| linear(c).weight.val()).collect(), 1)
        };
        let biases = |linear: fn(&GateController) -> &Linear| {
            let bias = |c: &&GateController| linear(c).bias.as_ref().expect("kiln's gates have biases").val();
            Tensor::cat(controllers.iter().map(bias).collect(), 0)
        };
        Self {
            input: weights(input),
            hidden: weights(hidden),
            input_bias: biases(input),
            hidden_bias: biases(hidden),
        }
    }
}

/// Runs the book's RNN over `input` from `h0`: the hidden state after each step.
pub fn rnn(cell: &RnnCell, input: &Sequence, h0: Tensor<2>) -> Tensor<3> {
    fused::rnn(input.product(cell.w_xh.val()), cell.w_hh.val(), cell.b_h.val(), h0)
}

/// Runs a GRU (reset gate applied after the hidden product, as PyTorch's and Burn's default)
/// over `input` from `h0`: the hidden state after each step.
pub fn gru(gru: &Gru, input: &Sequence, h0: Tensor<2>) -> Tensor<3> {
    debug_assert!(gru.reset_after && gru.clip.is_none(), "kiln builds GRUs with Burn's defaults");
    let gates = Gates::of(&[&gru.update_gate, &gru.reset_gate, &gru.new_gate]);
    fused::gru(input.product(gates.input), gates.hidden, gates.input_bias, gates.hidden_bias, h0)
}

/// Runs an LSTM over `input` from `(h0, c0)`: the hidden state after each step and the last
/// cell state.
pub fn lstm(lstm: &Lstm, input: &Sequence, h0: Tensor<2>, c0: Tensor<2>) -> (Tensor<3>, Tensor<2>) {
    debug_assert!(lstm.clip.is_none(), "kiln builds LSTMs with Burn's defaults");
    let forget = lstm.forget_gate.as_ref().expect("kiln's LSTMs have a forget gate");
    let gates = Gates::of(&[&lstm.input_gate, forget, &lstm.cell_gate, &lstm.output_gate]);
    let bias = gates.input_bias + gates.hidden_bias;
    fused::lstm(input.product(gates.input), gates.hidden, bias, h0, c0)
}
