//! A whole recurrent layer over a sequence, forward and backward, as cuDNN and oneDNN run one.
//!
//! The input's products for every step come in at once (`xp`, `[steps, batch, gates·hidden]`,
//! one large product outside); each step multiplies the hidden state by the gates' hidden
//! weights `u` (`[hidden, gates·hidden]`) and runs the cell's pointwise kernel. The backward
//! walks the steps in reverse for the hidden state's gradient and then takes the gradient of
//! `u` as one product over all steps, `[h_0 … h_{T−1}]ᵀ · [d_hp_1 … d_hp_T]`, instead of one
//! small product per step and a sum.

use gemm::Parallelism;

use super::add_rows;
use super::cells::{gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward, rnn_forward};

/// The recurrent cell of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `h = tanh(xp + hp + bias)`, one gate.
    Rnn,
    /// Blocks update, reset, new; the hidden product has its own bias.
    Gru,
    /// Blocks input, forget, cell candidate, output; one bias for both products.
    Lstm,
}

impl Cell {
    /// Weight blocks per gate set.
    pub fn gates(self) -> usize {
        match self {
            Self::Rnn => 1,
            Self::Gru => 3,
            Self::Lstm => 4,
        }
    }

    /// Floats one step saves per row for the backward.
    fn saved(self, hidden: usize) -> usize {
        match self {
            Self::Rnn => 0,
            Self::Gru => 4 * hidden,
            Self::Lstm => 5 * hidden,
        }
    }
}

/// A layer's shape and weights.
pub struct Layer<'a> {
    pub cell: Cell,
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    /// `[hidden, gates·hidden]`.
    pub u: &'a [f32],
    /// `[gates·hidden]`: the bias (of both products, for the RNN and the LSTM; of the input's,
    /// for the GRU).
    pub bias: &'a [f32],
    /// `[gates·hidden]`: the GRU's hidden-product bias; empty otherwise.
    pub hidden_bias: &'a [f32],
}

/// What the forward computed: the hidden state after each step, and what the backward needs.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `[steps, batch, hidden]`.
    pub outputs: Vec<f32>,
    /// The LSTM's cell states `[steps + 1, batch, hidden]`, `c_0` first; empty otherwise.
    pub cells: Vec<f32>,
    /// Per step and row, what the cell's backward reads.
    pub saved: Vec<f32>,
}

/// The gradients of a layer's inputs.
pub struct Gradients {
    pub xp: Vec<f32>,
    pub u: Vec<f32>,
    pub bias: Vec<f32>,
    pub hidden_bias: Vec<f32>,
    pub h0: Vec<f32>,
    pub c0: Vec<f32>,
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`; `a` is `[m, k]` (stored `[k, m]` when
/// `a_transposed`), `b` is `[k, n]` (stored `[n, k]` when `b_transposed`), `dst` is `[m, n]`,
/// all row-major. A step's products run on one thread (at `[batch, hidden]` sizes gemm's
/// threads cost more than they save); the one over all steps on every core.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    dst: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n);
    let parallelism = if m * k * n >= 1 << 26 { Parallelism::Rayon(0) } else { Parallelism::None };
    let (a_rs, a_cs) = if a_transposed { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if b_transposed { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above keep every index the strides reach inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Runs the layer over `xp` from `h0` (and, for the LSTM, `c0`).
pub fn forward(layer: &Layer<'_>, xp: &[f32], h0: &[f32], c0: &[f32]) -> Forward {
    let Layer { cell, steps, batch, hidden, u, bias, hidden_bias } = *layer;
    let (n, width) = (batch * hidden, cell.gates() * hidden);
    assert!(steps > 0 && xp.len() == steps * batch * width && h0.len() == n && u.len() == hidden * width);
    let mut outputs = vec![0.0; steps * n];
    let mut cells = if cell == Cell::Lstm { vec![0.0; (steps + 1) * n] } else { Vec::new() };
    if cell == Cell::Lstm {
        cells[..n].copy_from_slice(c0);
    }
    let mut saved = vec![0.0; steps * batch * cell.saved(hidden)];
    let mut hp = vec![0.0; batch * width];
    for t in 0..steps {
        let (done, rest) = outputs.split_at_mut(t * n);
        let h_prev = if t == 0 { h0 } else { &done[(t - 1) * n..] };
        let h = &mut rest[..n];
        matmul(batch, hidden, width, h_prev, false, u, false, &mut hp, false);
        let xp_t = &xp[t * batch * width..(t + 1) * batch * width];
        let saved_t = &mut saved[t * batch * cell.saved(hidden)..(t + 1) * batch * cell.saved(hidden)];
        match cell {
            Cell::Rnn => rnn_forward(xp_t, &hp, bias, h),
            Cell::Gru => gru_forward(xp_t, &hp, bias, hidden_bias, h_prev, h, saved_t),
            Cell::Lstm => {
                hp.iter_mut().zip(xp_t).for_each(|(p, &x)| *p += x);
                let (before, after) = cells.split_at_mut((t + 1) * n);
                let (acts, tanh_c) = saved_t.split_at_mut(4 * n);
                lstm_forward(&hp, bias, &before[t * n..], h, &mut after[..n], acts, tanh_c);
            }
        }
    }
    Forward { outputs, cells, saved }
}

/// The gradients of the layer's inputs from those of its outputs, `d_outputs`
/// (`[steps, batch, hidden]`), and, for the LSTM, of its last cell state, `d_c_last`.
pub fn backward(
    layer: &Layer<'_>,
    run: &Forward,
    h0: &[f32],
    d_outputs: &[f32],
    d_c_last: &[f32],
) -> Gradients {
    let Layer { cell, steps, batch, hidden, u, .. } = *layer;
    let (n, width, per_step) = (batch * hidden, cell.gates() * hidden, batch * cell.saved(hidden));
    let mut d_xp = vec![0.0; steps * batch * width];
    // The hidden products' gradients; the same as the inputs' but for the GRU.
    let mut d_hp = if cell == Cell::Gru { vec![0.0; d_xp.len()] } else { Vec::new() };
    let (mut dh_next, mut dc_next) = (vec![0.0; n], d_c_last.to_vec());
    let (mut dh, mut dc_prev) = (vec![0.0; n], vec![0.0; n]);
    for t in (0..steps).rev() {
        dh.iter_mut().zip(&d_outputs[t * n..(t + 1) * n]).zip(&dh_next).for_each(|((d, &o), &g)| *d = o + g);
        let h_prev = if t == 0 { h0 } else { &run.outputs[(t - 1) * n..t * n] };
        let saved = &run.saved[t * per_step..(t + 1) * per_step];
        let d_xp_t = &mut d_xp[t * batch * width..(t + 1) * batch * width];
        match cell {
            Cell::Rnn => rnn_backward(&run.outputs[t * n..(t + 1) * n], &dh, d_xp_t),
            Cell::Gru => {
                let d_hp_t = &mut d_hp[t * batch * width..(t + 1) * batch * width];
                gru_backward(saved, h_prev, &dh, d_xp_t, d_hp_t, &mut dc_prev, hidden);
            }
            Cell::Lstm => {
                let (acts, tanh_c) = saved.split_at(4 * n);
                let c_prev = &run.cells[t * n..(t + 1) * n];
                lstm_backward(acts, tanh_c, c_prev, &dh, &dc_next, d_xp_t, &mut dc_prev, hidden);
                std::mem::swap(&mut dc_next, &mut dc_prev);
            }
        }
        // dh_{t-1} = d_hp_t · uᵀ, plus the GRU's direct path (left in `dc_prev`).
        let d_hp_t = if cell == Cell::Gru {
            &d_hp[t * batch * width..(t + 1) * batch * width]
        } else {
            &d_xp[t * batch * width..(t + 1) * batch * width]
        };
        if cell == Cell::Gru {
            dh_next.copy_from_slice(&dc_prev);
        }
        matmul(batch, width, hidden, d_hp_t, false, u, true, &mut dh_next, cell == Cell::Gru);
    }
    // d_u = [h_0 … h_{T−1}]ᵀ · d_hp, over every step at once.
    let mut h_prev_all = Vec::with_capacity(steps * n);
    h_prev_all.extend_from_slice(h0);
    h_prev_all.extend_from_slice(&run.outputs[..(steps - 1) * n]);
    let d_hp_all = if cell == Cell::Gru { &d_hp } else { &d_xp };
    let mut d_u = vec![0.0; hidden * width];
    matmul(hidden, steps * batch, width, &h_prev_all, true, d_hp_all, false, &mut d_u, false);
    let mut d_bias = vec![0.0; width];
    add_rows(&d_xp, &mut d_bias);
    let mut d_hidden_bias = Vec::new();
    if cell == Cell::Gru {
        d_hidden_bias = vec![0.0; width];
        add_rows(&d_hp, &mut d_hidden_bias);
    }
    let c0 = if cell == Cell::Lstm { dc_next } else { Vec::new() };
    Gradients { xp: d_xp, u: d_u, bias: d_bias, hidden_bias: d_hidden_bias, h0: dh_next, c0 }
}
