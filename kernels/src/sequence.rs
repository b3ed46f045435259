//! A whole recurrent layer over a sequence, forward and backward, as cuDNN and oneDNN run one.
//!
//! The input's products for every step come in at once (`xp`, `[steps, batch, gates·hidden]`,
//! one large product outside); each step multiplies the hidden state by the gates' hidden
//! weights `u` (`[hidden, gates·hidden]`) and runs the cell's pointwise kernel. The backward
//! walks the steps in reverse for the hidden state's gradient and then takes the gradient of
//! `u` as one product over all steps, `[h_0 … h_{T−1}]ᵀ · [d_hp_1 … d_hp_T]`, instead of one
//! small product per step and a sum.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::add_rows;
use super::cells::{gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward, rnn_forward};
use super::linalg::{matmul, transpose};

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

/// Rows per part below which a batch is not split between threads.
const MIN_ROWS: usize = 8;

/// Runs `part` over disjoint ranges of the batch's rows, one per thread of rayon's pool (two on
/// two cores). A recurrent layer's rows are independent at every step, so each part runs all the
/// steps of its rows alone: no synchronisation per step, and each step's product fills a core.
fn split_rows(batch: usize, part: impl Fn(Range<usize>) + Sync) {
    let parts = rayon::current_num_threads().min(batch / MIN_ROWS).max(1);
    if parts == 1 {
        return part(0..batch);
    }
    let chunk = batch.div_ceil(parts);
    (0..parts).into_par_iter().for_each(|p| part(p * chunk..((p + 1) * chunk).min(batch)));
}

/// A buffer the parts of [`split_rows`] write, each only the rows of its range.
struct Rows {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the parts write disjoint ranges (their own rows) and read only ranges they wrote or
// that no part writes.
unsafe impl Sync for Rows {}

impl Rows {
    /// The spare capacity of `buffer` (left empty, with room for `len` floats made) as rows
    /// to be written through [`Rows::to_write`]; the caller sets the buffer's length once every
    /// float is written. A layer's large outputs are never zeroed: perf on an LSTM step found 4%
    /// of all samples in zeroing them on the calling thread, while the other core waited.
    fn unwritten(buffer: &mut Vec<f32>, len: usize) -> Self {
        buffer.clear();
        buffer.reserve_exact(len);
        Self { ptr: buffer.spare_capacity_mut().as_mut_ptr().cast(), len }
    }

    /// `len` floats from `start`.
    ///
    /// # Safety
    /// No other part may write them while the slice lives.
    unsafe fn get(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (asserted); the caller keeps writers away.
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// `len` floats from `start`, to write (a kernel writes every one of them).
    ///
    /// # Safety
    /// No other part may read or write them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn to_write(&self, start: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (asserted); the caller keeps every other access away.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start).cast(), len) }
    }
}

/// Runs the layer over `xp` from `h0` (and, for the LSTM, `c0`).
pub fn forward(layer: &Layer<'_>, xp: &[f32], h0: &[f32], c0: &[f32]) -> Forward {
    let Layer { cell, steps, batch, hidden, u, .. } = *layer;
    let (n, width) = (batch * hidden, cell.gates() * hidden);
    assert!(steps > 0 && xp.len() == steps * batch * width && h0.len() == n && u.len() == hidden * width);
    let (mut outputs, mut cells, mut saved) = (Vec::new(), Vec::new(), Vec::new());
    let lengths =
        [steps * n, if cell == Cell::Lstm { (steps + 1) * n } else { 0 }, steps * batch * cell.saved(hidden)];
    let buffers = (
        Rows::unwritten(&mut outputs, lengths[0]),
        Rows::unwritten(&mut cells, lengths[1]),
        Rows::unwritten(&mut saved, lengths[2]),
    );
    if cell == Cell::Lstm {
        // SAFETY: no part runs yet.
        unsafe { buffers.1.to_write(0, n) }.write_copy_of_slice(c0);
    }
    split_rows(batch, |rows| forward_rows(layer, xp, h0, rows, &buffers));
    // SAFETY: `c_0` above, and every step's rows of each buffer by the parts, which cover the
    // batch, all through `to_write`; the parts have finished.
    unsafe {
        outputs.set_len(lengths[0]);
        cells.set_len(lengths[1]);
        saved.set_len(lengths[2]);
    }
    Forward { outputs, cells, saved }
}

/// [`forward`] for the batch rows `rows`, into `(outputs, cells, saved)`.
fn forward_rows(layer: &Layer<'_>, xp: &[f32], h0: &[f32], rows: Range<usize>, buffers: &(Rows, Rows, Rows)) {
    let Layer { cell, steps, batch, hidden, u, bias, hidden_bias } = *layer;
    let (outputs, cells, saved) = buffers;
    let (n, width, per_step) = (batch * hidden, cell.gates() * hidden, batch * cell.saved(hidden));
    let (r0, len) = (rows.start, rows.len());
    let mut hp = vec![0.0; len * width];
    for t in 0..steps {
        // SAFETY (every `get` and `to_write` below): this part alone touches rows `rows` of each
        // step's blocks, and reads the previous step's, which it wrote itself.
        let h_prev = if t == 0 {
            &h0[r0 * hidden..(r0 + len) * hidden]
        } else {
            unsafe { outputs.get((t - 1) * n + r0 * hidden, len * hidden) }
        };
        let h = unsafe { outputs.to_write(t * n + r0 * hidden, len * hidden) };
        matmul([len, hidden, width], (h_prev, false), (u, false), &mut hp, false, false);
        let xp_t = &xp[(t * batch + r0) * width..(t * batch + r0 + len) * width];
        match cell {
            Cell::Rnn => rnn_forward(xp_t, &hp, bias, h),
            Cell::Gru => {
                let saved_t = unsafe { saved.to_write(t * per_step + r0 * 4 * hidden, len * 4 * hidden) };
                gru_forward(xp_t, &hp, bias, hidden_bias, h_prev, h, saved_t);
            }
            Cell::Lstm => {
                hp.iter_mut().zip(xp_t).for_each(|(p, &x)| *p += x);
                let c_prev = unsafe { cells.get(t * n + r0 * hidden, len * hidden) };
                let c = unsafe { cells.to_write((t + 1) * n + r0 * hidden, len * hidden) };
                let acts = unsafe { saved.to_write(t * per_step + r0 * 4 * hidden, len * 4 * hidden) };
                let tanh_c = unsafe { saved.to_write(t * per_step + 4 * n + r0 * hidden, len * hidden) };
                lstm_forward(&hp, bias, c_prev, h, c, acts, tanh_c);
            }
        }
    }
}

/// What the backward writes: the gradients of `xp`, of the GRU's `hp`, of `h0` and of `c0`.
struct Written {
    d_xp: Rows,
    d_hp: Rows,
    d_h0: Rows,
    d_c0: Rows,
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
    let (n, width) = (batch * hidden, cell.gates() * hidden);
    // The hidden products' gradients are the same as the inputs' but for the GRU; only the
    // LSTM has a cell state.
    let (gru, lstm) = (cell == Cell::Gru, cell == Cell::Lstm);
    let lengths =
        [steps * batch * width, if gru { steps * batch * width } else { 0 }, n, if lstm { n } else { 0 }];
    let (mut d_xp, mut d_hp, mut d_h0, mut d_c0) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // `uᵀ` stored row-major, once: gemm reads a row-major left operand by packing it with scalar
    // strided loads, which for `d_hp · uᵀ` at every step cost more than the product itself.
    let mut u_t = vec![0.0; u.len()];
    transpose(u, hidden, width, &mut u_t);
    let written = Written {
        d_xp: Rows::unwritten(&mut d_xp, lengths[0]),
        d_hp: Rows::unwritten(&mut d_hp, lengths[1]),
        d_h0: Rows::unwritten(&mut d_h0, lengths[2]),
        d_c0: Rows::unwritten(&mut d_c0, lengths[3]),
    };
    let inputs = (run, h0, d_outputs, d_c_last, u_t.as_slice());
    split_rows(batch, |rows| backward_rows(layer, inputs, rows, &written));
    // SAFETY: the parts, which cover the batch, wrote every step's rows of each buffer through
    // `to_write`, and have finished.
    unsafe {
        d_xp.set_len(lengths[0]);
        d_hp.set_len(lengths[1]);
        d_h0.set_len(lengths[2]);
        d_c0.set_len(lengths[3]);
    }
    // d_u = [h_0 … h_{T−1}]ᵀ · d_hp, over every step at once.
    let mut h_prev_all = Vec::with_capacity(steps * n);
    h_prev_all.extend_from_slice(h0);
    h_prev_all.extend_from_slice(&run.outputs[..(steps - 1) * n]);
    let d_hp_all = if gru { &d_hp } else { &d_xp };
    let mut d_u = vec![0.0; hidden * width];
    let large = hidden * steps * batch * width >= 1 << 26;
    matmul([hidden, steps * batch, width], (&h_prev_all, true), (d_hp_all, false), &mut d_u, false, large);
    let mut d_bias = vec![0.0; width];
    add_rows(&d_xp, &mut d_bias);
    let mut d_hidden_bias = Vec::new();
    if gru {
        d_hidden_bias = vec![0.0; width];
        add_rows(&d_hp, &mut d_hidden_bias);
    }
    Gradients { xp: d_xp, u: d_u, bias: d_bias, hidden_bias: d_hidden_bias, h0: d_h0, c0: d_c0 }
}

/// [`backward`] through the steps for the batch rows `rows`: `inputs` are the forward's run, `h0`,
/// the outputs' gradients, the last cell state's and `uᵀ`.
fn backward_rows(
    layer: &Layer<'_>,
    inputs: (&Forward, &[f32], &[f32], &[f32], &[f32]),
    rows: Range<usize>,
    written: &Written,
) {
    let Layer { cell, steps, batch, hidden, .. } = *layer;
    let (run, h0, d_outputs, d_c_last, u_t) = inputs;
    let (n, width, per_step) = (batch * hidden, cell.gates() * hidden, batch * cell.saved(hidden));
    let (r0, len) = (rows.start, rows.len());
    let span = |t: usize| t * n + r0 * hidden..t * n + (r0 + len) * hidden;
    let (mut dh_next, mut dh, mut dc_prev) =
        (vec![0.0; len * hidden], vec![0.0; len * hidden], vec![0.0; len * hidden]);
    let mut dc_next = if cell == Cell::Lstm { d_c_last[span(0)].to_vec() } else { Vec::new() };
    for t in (0..steps).rev() {
        dh.iter_mut().zip(&d_outputs[span(t)]).zip(&dh_next).for_each(|((d, &o), &g)| *d = o + g);
        let h_prev = if t == 0 { &h0[span(0)] } else { &run.outputs[span(t - 1)] };
        let xp_rows = (t * batch + r0) * width;
        // SAFETY (every `get` and `to_write` below): this part alone touches these rows.
        let d_xp_t = unsafe { written.d_xp.to_write(xp_rows, len * width) };
        match cell {
            Cell::Rnn => rnn_backward(&run.outputs[span(t)], &dh, d_xp_t),
            Cell::Gru => {
                let saved = &run.saved[t * per_step + r0 * 4 * hidden..][..len * 4 * hidden];
                let d_hp_t = unsafe { written.d_hp.to_write(xp_rows, len * width) };
                gru_backward(saved, h_prev, &dh, d_xp_t, d_hp_t, &mut dc_prev, hidden);
            }
            Cell::Lstm => {
                let acts = &run.saved[t * per_step + r0 * 4 * hidden..][..len * 4 * hidden];
                let tanh_c = &run.saved[t * per_step + 4 * n + r0 * hidden..][..len * hidden];
                let c_prev = &run.cells[span(t)];
                lstm_backward(acts, tanh_c, c_prev, &dh, &dc_next, d_xp_t, &mut dc_prev, hidden);
                std::mem::swap(&mut dc_next, &mut dc_prev);
            }
        }
        // dh_{t-1} = d_hp_t · uᵀ, plus the GRU's direct path (left in `dc_prev`).
        let d_hp_t = if cell == Cell::Gru {
            unsafe { written.d_hp.get(xp_rows, len * width) }
        } else {
            unsafe { written.d_xp.get(xp_rows, len * width) }
        };
        if cell == Cell::Gru {
            dh_next.copy_from_slice(&dc_prev);
        }
        matmul([len, width, hidden], (d_hp_t, false), (u_t, false), &mut dh_next, cell == Cell::Gru, false);
    }
    // SAFETY: these rows of the input gradients are this part's alone.
    unsafe { written.d_h0.to_write(r0 * hidden, len * hidden) }.write_copy_of_slice(&dh_next);
    if cell == Cell::Lstm {
        unsafe { written.d_c0.to_write(r0 * hidden, len * hidden) }.write_copy_of_slice(&dc_next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in (−scale, scale).
    fn values(n: usize, scale: f32, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32 * 2_654_435_761) ^ seed).wrapping_mul(40_503) % 2001) as f32 / 1000.0 - 1.0)
            .map(|v| v * scale)
            .collect()
    }

    /// Forward and backward of a layer in a pool of `threads` threads.
    fn run(layer: &Layer<'_>, threads: usize, inputs: &[Vec<f32>; 4]) -> (Forward, Gradients) {
        let [xp, h0, c0, d_out] = inputs;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let run = forward(layer, xp, h0, c0);
            let d_c_last = if layer.cell == Cell::Lstm { c0.clone() } else { Vec::new() };
            let grads = backward(layer, &run, h0, d_out, &d_c_last);
            (run, grads)
        })
    }

    #[test]
    fn a_batch_split_between_threads_computes_what_one_thread_does() {
        let (steps, batch, hidden) = (5, 37, 16);
        for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
            let width = cell.gates() * hidden;
            let (u, bias) = (values(hidden * width, 0.4, 1), values(width, 0.2, 2));
            let hidden_bias = if cell == Cell::Gru { values(width, 0.2, 3) } else { Vec::new() };
            let c0 = if cell == Cell::Lstm { values(batch * hidden, 0.5, 4) } else { Vec::new() };
            let inputs = [
                values(steps * batch * width, 1.0, 5),
                values(batch * hidden, 0.5, 6),
                c0,
                values(steps * batch * hidden, 1.0, 7),
            ];
            let layer = Layer { cell, steps, batch, hidden, u: &u, bias: &bias, hidden_bias: &hidden_bias };
            let (one, one_grads) = run(&layer, 1, &inputs);
            for threads in [2, 3] {
                let (split, grads) = run(&layer, threads, &inputs);
                let same = |a: &[f32], b: &[f32]| {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6)
                };
                assert!(same(&one.outputs, &split.outputs) && same(&one.cells, &split.cells), "{cell:?}");
                assert!(same(&one.saved, &split.saved), "{cell:?} saved");
                for (name, a, b) in [
                    ("xp", &one_grads.xp, &grads.xp),
                    ("u", &one_grads.u, &grads.u),
                    ("bias", &one_grads.bias, &grads.bias),
                    ("hidden_bias", &one_grads.hidden_bias, &grads.hidden_bias),
                    ("h0", &one_grads.h0, &grads.h0),
                    ("c0", &one_grads.c0, &grads.c0),
                ] {
                    assert!(same(a, b), "{cell:?} d {name} with {threads} threads");
                }
            }
        }
    }
}
