//! One time step of the recurrent cells: the pointwise part, after the matrix products.
//!
//! Each forward writes what its backward needs, so the backward recomputes no `exp`. Outputs are
//! `MaybeUninit`: every element is written, so a caller need not zero them first (for a whole
//! sequence, zeroing them cost 4% of an LSTM step).

use std::mem::MaybeUninit;

use super::simd::multiversion;
use super::{assume_written, sigmoid, tanh};

multiversion! {
    /// LSTM step: from the gate pre-activations `pre` (`[batch, 4·hidden]`, blocks i, f, g, o, the
    /// products of input and hidden state without bias), the gates' `bias` (`[4·hidden]`) and the
    /// cell state `c_prev` (`[batch, hidden]`), writes the new hidden state `h` and cell state `c`,
    /// and for the backward the activated gates `acts` (like `pre`) and `tanh(c)` (like `c`).
    pub fn lstm_forward(
        pre: &[f32],
        bias: &[f32],
        c_prev: &[f32],
        h: &mut [MaybeUninit<f32>],
        c: &mut [MaybeUninit<f32>],
        acts: &mut [MaybeUninit<f32>],
        tanh_c: &mut [MaybeUninit<f32>],
    ) {
        let hidden = bias.len() / 4;
        assert!(bias.len() == 4 * hidden && pre.len() == c_prev.len() * 4 && acts.len() == pre.len());
        let rows = pre.chunks_exact(4 * hidden).zip(acts.chunks_exact_mut(4 * hidden));
        let states = c_prev.chunks_exact(hidden).zip(c.chunks_exact_mut(hidden));
        let outputs = h.chunks_exact_mut(hidden).zip(tanh_c.chunks_exact_mut(hidden));
        for (((pre, acts), (c_prev, c)), (h, tanh_c)) in rows.zip(states).zip(outputs) {
            let blocks =
                acts.chunks_exact_mut(hidden).zip(pre.chunks_exact(hidden)).zip(bias.chunks_exact(hidden));
            for (block, ((acts, pre), bias)) in blocks.enumerate() {
                // The third block is the candidate cell (tanh); the others are gates (sigmoid).
                let values = acts.iter_mut().zip(pre).zip(bias);
                if block == 2 {
                    values.for_each(|((a, &p), &b)| _ = a.write(tanh(p + b)));
                } else {
                    values.for_each(|((a, &p), &b)| _ = a.write(sigmoid(p + b)));
                }
            }
            // SAFETY: the four blocks above wrote the whole row.
            let acts = unsafe { assume_written(acts) };
            let (i, rest) = acts.split_at(hidden);
            let (f, rest) = rest.split_at(hidden);
            let (g, o) = rest.split_at(hidden);
            for j in 0..hidden {
                let cell = f[j] * c_prev[j] + i[j] * g[j];
                let t = tanh(cell);
                c[j].write(cell);
                tanh_c[j].write(t);
                h[j].write(o[j] * t);
            }
        }
    }
}

multiversion! {
    /// The LSTM step's gradients, from the forward's `acts`, `tanh_c` and `c_prev` and the
    /// gradients of its outputs `dh` and `dc`: writes those of `pre` (`d_pre`, which is also each
    /// row's bias gradient) and of `c_prev` (`d_c_prev`).
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_backward(
        acts: &[f32],
        tanh_c: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dc: &[f32],
        d_pre: &mut [MaybeUninit<f32>],
        d_c_prev: &mut [f32],
        hidden: usize,
    ) {
        assert!(acts.len() == 4 * tanh_c.len() && d_pre.len() == acts.len());
        assert!(d_c_prev.len() == c_prev.len());
        for row in 0..tanh_c.len() / hidden.max(1) {
            let s = row * hidden..(row + 1) * hidden;
            let acts = &acts[row * 4 * hidden..(row + 1) * 4 * hidden];
            let d_pre = &mut d_pre[row * 4 * hidden..(row + 1) * 4 * hidden];
            let (i, rest) = acts.split_at(hidden);
            let (f, rest) = rest.split_at(hidden);
            let (g, o) = rest.split_at(hidden);
            let (di, rest) = d_pre.split_at_mut(hidden);
            let (df, rest) = rest.split_at_mut(hidden);
            let (dg, d_o) = rest.split_at_mut(hidden);
            let (tanh_c, c_prev, dh, dc) =
                (&tanh_c[s.clone()], &c_prev[s.clone()], &dh[s.clone()], &dc[s.clone()]);
            let d_c_prev = &mut d_c_prev[s];
            for j in 0..hidden {
                let t = tanh_c[j];
                let d_cell = dc[j] + dh[j] * o[j] * (1.0 - t * t);
                d_o[j].write(dh[j] * t * o[j] * (1.0 - o[j]));
                di[j].write(d_cell * g[j] * i[j] * (1.0 - i[j]));
                df[j].write(d_cell * c_prev[j] * f[j] * (1.0 - f[j]));
                dg[j].write(d_cell * i[j] * (1.0 - g[j] * g[j]));
                d_c_prev[j] = d_cell * f[j];
            }
        }
    }
}

multiversion! {
    /// GRU step (reset gate applied after the hidden product, PyTorch's and Burn's default): from
    /// the input products `xp` and the hidden-state products `hp` (`[batch, 3·hidden]`, blocks z, r,
    /// n, without bias), their biases `bx` and `bh` (`[3·hidden]`) and `h_prev`, writes the new
    /// hidden state `h` and for the backward `saved` (`[batch, 4·hidden]`: z, r, n and the biased
    /// hidden product of the n block).
    #[allow(clippy::too_many_arguments)]
    pub fn gru_forward(
        xp: &[f32],
        hp: &[f32],
        bx: &[f32],
        bh: &[f32],
        h_prev: &[f32],
        h: &mut [MaybeUninit<f32>],
        saved: &mut [MaybeUninit<f32>],
    ) {
        let hidden = bx.len() / 3;
        assert!(xp.len() == 3 * h_prev.len() && hp.len() == xp.len() && saved.len() == 4 * h_prev.len());
        for row in 0..h_prev.len() / hidden.max(1) {
            let x = &xp[row * 3 * hidden..(row + 1) * 3 * hidden];
            let hh = &hp[row * 3 * hidden..(row + 1) * 3 * hidden];
            let saved = &mut saved[row * 4 * hidden..(row + 1) * 4 * hidden];
            let (h_prev, h) =
                (&h_prev[row * hidden..(row + 1) * hidden], &mut h[row * hidden..(row + 1) * hidden]);
            for j in 0..hidden {
                let z = sigmoid(x[j] + bx[j] + hh[j] + bh[j]);
                let (k, m) = (hidden + j, 2 * hidden + j);
                let r = sigmoid(x[k] + bx[k] + hh[k] + bh[k]);
                let hn = hh[m] + bh[m];
                let n = tanh(x[m] + bx[m] + r * hn);
                h[j].write((1.0 - z) * n + z * h_prev[j]);
                saved[j].write(z);
                saved[k].write(r);
                saved[m].write(n);
                saved[3 * hidden + j].write(hn);
            }
        }
    }
}

multiversion! {
    /// The GRU step's gradients from the forward's `saved` and `h_prev` and the gradient `dh` of
    /// its output: writes those of `xp` and `hp` (each row's bias gradients too) and of `h_prev`
    /// (its direct path; the path through `hp` is the product's own backward).
    pub fn gru_backward(
        saved: &[f32],
        h_prev: &[f32],
        dh: &[f32],
        d_xp: &mut [MaybeUninit<f32>],
        d_hp: &mut [MaybeUninit<f32>],
        d_h_prev: &mut [f32],
        hidden: usize,
    ) {
        assert!(saved.len() == 4 * h_prev.len() && d_xp.len() == 3 * h_prev.len());
        assert!(d_hp.len() == d_xp.len());
        for row in 0..h_prev.len() / hidden.max(1) {
            let s = &saved[row * 4 * hidden..(row + 1) * 4 * hidden];
            let dx = &mut d_xp[row * 3 * hidden..(row + 1) * 3 * hidden];
            let dhh = &mut d_hp[row * 3 * hidden..(row + 1) * 3 * hidden];
            let span = row * hidden..(row + 1) * hidden;
            let (h_prev, dh, d_h_prev) = (&h_prev[span.clone()], &dh[span.clone()], &mut d_h_prev[span]);
            for j in 0..hidden {
                let (k, m) = (hidden + j, 2 * hidden + j);
                let (z, r, n, hn) = (s[j], s[k], s[m], s[3 * hidden + j]);
                let dn = dh[j] * (1.0 - z) * (1.0 - n * n);
                let dz = dh[j] * (h_prev[j] - n) * z * (1.0 - z);
                let dr = dn * hn * r * (1.0 - r);
                dx[j].write(dz);
                dx[k].write(dr);
                dx[m].write(dn);
                dhh[j].write(dz);
                dhh[k].write(dr);
                dhh[m].write(dn * r);
                d_h_prev[j] = dh[j] * z;
            }
        }
    }
}

multiversion! {
    /// The book's RNN step after its products: `h = tanh(xp + hp + bias)`.
    pub fn rnn_forward(xp: &[f32], hp: &[f32], bias: &[f32], h: &mut [MaybeUninit<f32>]) {
        assert!(xp.len() == hp.len() && h.len() == xp.len());
        for ((h, xp), hp) in
            h.chunks_exact_mut(bias.len()).zip(xp.chunks_exact(bias.len())).zip(hp.chunks_exact(bias.len()))
        {
            for j in 0..bias.len() {
                h[j].write(tanh(xp[j] + hp[j] + bias[j]));
            }
        }
    }
}

multiversion! {
    /// The RNN step's gradient from its output `h` and `dh`: the same for `xp`, `hp` and each row's
    /// bias (`d`).
    pub fn rnn_backward(h: &[f32], dh: &[f32], d: &mut [MaybeUninit<f32>]) {
        assert!(h.len() == dh.len() && d.len() == h.len());
        for ((d, &h), &g) in d.iter_mut().zip(h).zip(dh) {
            d.write(g * (1.0 - h * h));
        }
    }
}
