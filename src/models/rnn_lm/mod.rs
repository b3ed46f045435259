//! Recurrent language models, as in *Dive into Deep Learning* §8.5–8.6 (RNN) and §9.1–9.2
//! (GRU, LSTM).
//!
//! Tokens enter one-hot (the book) or through an embedding; one or more recurrent layers run
//! over the sequence; a linear head maps each hidden state to logits over the vocabulary.
//!
//! `cell: rnn` is the book's from-scratch RNN written out, not a library module:
//! H_t = tanh(X_t W_xh + H_{t−1} W_hh + b_h), O_t = H_t W_hq + b_q, every weight drawn from
//! N(0, 0.01²) and the biases zero — 80,156 parameters at 256 hidden units over 28 symbols. With
//! one-hot input, X_t W_xh is row X_t of W_xh, so it is computed as a row lookup: the same value
//! and the same gradient as the matrix product, without building the one-hot matrix. GRU and
//! LSTM keep their weights in Burn's modules, initialised as PyTorch's `nn.GRU`/`nn.LSTM` are
//! (U(±1/√hidden)), which is what the book's concise implementations train; their gates carry a
//! bias on both sides as PyTorch's do, so the counts match PyTorch's (226,844 and 300,060 at 256
//! hidden over 28 symbols). All three run through [`layers`], one fused operation per layer
//! (see there why).
//!
//! Tensors are batch-major at the module's edges: tokens `[batch, steps]`, logits
//! `[batch * steps, vocab]` in row-major order of the tokens.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{
    Embedding, EmbeddingConfig, Gru, GruConfig, Initializer, Linear, LinearConfig, Lstm, LstmConfig,
};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use layers::Sequence;

mod layers;

/// The recurrent cell of a language model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// The book's from-scratch RNN with a tanh activation.
    Rnn,
    /// A GRU: the equations, weights and initialisation of PyTorch's `nn.GRU`.
    Gru,
    /// An LSTM: the equations, weights and initialisation of PyTorch's `nn.LSTM`.
    Lstm,
}

impl Cell {
    /// Every cell, by the name a job uses.
    pub const ALL: [(&str, Cell); 3] = [("rnn", Self::Rnn), ("gru", Self::Gru), ("lstm", Self::Lstm)];

    /// Weight matrices (input and hidden) per layer: one per gate.
    fn gates(self) -> usize {
        match self {
            Self::Rnn => 1,
            Self::Gru => 3,
            Self::Lstm => 4,
        }
    }
}

/// Builds an [`RnnLm`].
#[derive(Config, Debug)]
pub struct RnnLmConfig {
    /// Tokens in the vocabulary, `<unk>` included.
    pub vocab: usize,
    pub cell: Cell,
    /// Hidden units of each recurrent layer.
    #[config(default = 256)]
    pub hidden: usize,
    /// Stacked recurrent layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Width of a learned embedding; `None` feeds the tokens one-hot, as the book does.
    pub embedding: Option<usize>,
}

/// A recurrent layer.
#[derive(Module, Debug)]
pub enum Layer {
    Rnn(RnnCell),
    Gru(Gru),
    Lstm(Lstm),
}

/// The book's RNN cell: `H_t = tanh(X_t W_xh + H_{t−1} W_hh + b_h)`.
#[derive(Module, Debug)]
pub struct RnnCell {
    /// `[inputs, hidden]`
    pub w_xh: Param<Tensor<2>>,
    /// `[hidden, hidden]`
    pub w_hh: Param<Tensor<2>>,
    /// `[hidden]`
    pub b_h: Param<Tensor<1>>,
}

/// The language model.
#[derive(Module, Debug)]
pub struct RnnLm {
    embedding: Option<Embedding>,
    layers: Vec<Layer>,
    /// `O_t = H_t W_hq + b_q`.
    head: Linear,
    vocab: usize,
    hidden: usize,
}

/// The recurrent state of one layer: the hidden state, and the cell state of an LSTM.
#[derive(Debug, Clone)]
pub struct LayerState {
    pub hidden: Tensor<2>,
    pub cell: Option<Tensor<2>>,
}

/// The recurrent state of the whole model, one entry per layer; each tensor `[batch, hidden]`.
#[derive(Debug, Clone)]
pub struct State(pub Vec<LayerState>);

impl State {
    /// The same values cut from the autodiff graph: the book's `state.detach_()` between
    /// sequential batches, so backpropagation stops at the batch boundary.
    pub fn detach(self) -> Self {
        State(
            self.0
                .into_iter()
                .map(|s| LayerState { hidden: s.hidden.detach(), cell: s.cell.map(Tensor::detach) })
                .collect(),
        )
    }
}

impl RnnLmConfig {
    /// Width of what the first recurrent layer reads.
    fn input_width(&self) -> usize {
        self.embedding.unwrap_or(self.vocab)
    }

    /// Trainable parameters of the model this config builds.
    pub fn parameter_count(&self) -> usize {
        let h = self.hidden;
        let embedding = self.embedding.map_or(0, |e| self.vocab * e);
        let layers: usize = (0..self.layers)
            .map(|i| {
                let d = if i == 0 { self.input_width() } else { h };
                match self.cell {
                    // One bias, as the book's from-scratch formula.
                    Cell::Rnn => d * h + h * h + h,
                    // Burn's gates carry a bias on both the input and the hidden transform, as
                    // PyTorch's do.
                    cell => cell.gates() * (d * h + h * h + 2 * h),
                }
            })
            .sum();
        embedding + layers + h * self.vocab + self.vocab
    }

    /// A rough count of the floats one training step keeps for backpropagation with `batch`
    /// sequences of `steps` tokens: each layer's gate pre-activations and states per token, the
    /// inputs (one-hot for the first layer without an embedding), and the logits with their
    /// softmax and gradient.
    pub fn activation_floats(&self, batch: usize, steps: usize) -> usize {
        let per_layer = self.hidden * (2 * self.cell.gates() + 3);
        let input = if self.cell == Cell::Rnn { self.hidden } else { self.input_width() };
        batch * steps * (self.layers * per_layer + input + 3 * self.vocab)
    }

    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> RnnLm {
        let h = self.hidden;
        let pytorch = Initializer::Uniform { min: -1.0 / (h as f64).sqrt(), max: 1.0 / (h as f64).sqrt() };
        let layers = (0..self.layers)
            .map(|i| {
                let d = if i == 0 { self.input_width() } else { h };
                match self.cell {
                    Cell::Rnn => {
                        let normal = Initializer::Normal { mean: 0.0, std: 0.01 };
                        Layer::Rnn(RnnCell {
                            w_xh: normal.init([d, h], device),
                            w_hh: normal.init([h, h], device),
                            b_h: Initializer::Zeros.init([h], device),
                        })
                    }
                    Cell::Gru => {
                        Layer::Gru(GruConfig::new(d, h, true).with_initializer(pytorch.clone()).init(device))
                    }
                    Cell::Lstm => Layer::Lstm(
                        LstmConfig::new(d, h, true).with_initializer(pytorch.clone()).init(device),
                    ),
                }
            })
            .collect();
        let head = match self.cell {
            Cell::Rnn => {
                let mut head = LinearConfig::new(h, self.vocab)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
                    .init(device);
                head.bias = Some(Initializer::Zeros.init([self.vocab], device));
                head
            }
            _ => LinearConfig::new(h, self.vocab).with_initializer(pytorch).init(device),
        };
        let embedding = self.embedding.map(|e| EmbeddingConfig::new(self.vocab, e).init(device));
        RnnLm { embedding, layers, head, vocab: self.vocab, hidden: h }
    }
}

impl Layer {
    /// Runs the layer over a sequence from `state`; returns its output at each step, time-major
    /// `[steps, batch, hidden]`, and its final state.
    fn forward(&self, input: &Sequence, state: LayerState) -> (Tensor<3>, LayerState) {
        let (outputs, cell) = match self {
            Self::Rnn(cell) => (layers::rnn(cell, input, state.hidden), None),
            Self::Gru(gru) => (layers::gru(gru, input, state.hidden), None),
            Self::Lstm(lstm) => {
                let cell = state.cell.unwrap_or_else(|| state.hidden.zeros_like());
                let (outputs, cell) = layers::lstm(lstm, input, state.hidden, cell);
                (outputs, Some(cell))
            }
        };
        let [steps, batch, hidden] = outputs.dims();
        let last = outputs.clone().narrow(0, steps - 1, 1).reshape([batch, hidden]);
        (outputs, LayerState { hidden: last, cell })
    }

    fn has_cell_state(&self) -> bool {
        matches!(self, Self::Lstm(_))
    }
}

impl RnnLm {
    /// The zero state for `batch` sequences, the book's `begin_state`.
    pub fn begin_state(&self, batch: usize, device: &Device) -> State {
        State(
            self.layers
                .iter()
                .map(|layer| LayerState {
                    hidden: Tensor::zeros([batch, self.hidden], device),
                    cell: layer.has_cell_state().then(|| Tensor::zeros([batch, self.hidden], device)),
                })
                .collect(),
        )
    }

    /// Logits for the token after each input token, and the state after the last.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, steps]`
    /// - output: `[batch * steps, vocab]`, row `b * steps + t` predicting the token after
    ///   `tokens[b][t]`
    pub fn forward(&self, tokens: Tensor<2, Int>, state: State) -> (Tensor<2>, State) {
        let [batch, steps] = tokens.dims();
        let ids = tokens.swap_dims(0, 1).reshape([steps * batch]);
        let mut input = match &self.embedding {
            Some(embedding) => {
                let [_, width] = embedding.weight.dims();
                Sequence::Dense(embedding.weight.val().select(0, ids).reshape([steps, batch, width]))
            }
            None => Sequence::Tokens { ids, steps, batch },
        };
        let mut next = Vec::with_capacity(self.layers.len());
        for (layer, state) in self.layers.iter().zip(state.0) {
            let (outputs, last) = layer.forward(&input, state);
            next.push(last);
            input = Sequence::Dense(outputs);
        }
        let Sequence::Dense(outputs) = input else { unreachable!("a model has at least one layer") };
        let outputs = outputs.swap_dims(0, 1).reshape([batch * steps, self.hidden]);
        (self.head.forward(outputs), State(next))
    }
}

#[cfg(test)]
mod tests;
