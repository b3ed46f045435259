//! Stride-1 convolutions without patches: a `kh × kw` convolution is the sum of `kh · kw`
//! products, one per kernel offset `(i, j)`, of that offset's weights `[c_out, c_in]` with the
//! zero-padded input shifted by `(i, j)`.
//!
//! The padded input is `[c_in, hp · wp]`; shifted by `(i, j)` it is the same matrix read from
//! `i · wp + j`, so each product is one gemm on a window of it, with no patch matrix built
//! (im2col writes every input value `kh · kw` times) and none summed back (col2im). The output
//! comes out "wide", `oh` rows of `wp` columns, of which the last `wp − ow` in each row are
//! discarded: they read across a row's end, and every kept column stays inside its row. The
//! discarded share, `(kw − 1) / wp`, is why [`applies`] keeps this for maps of some width.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Conv, Gradients};
use crate::linalg::{View, matmul_views, transpose};

/// Whether `conv` runs here rather than through patches: at stride 1, where at most a fifth of
/// the wide output is dropped (a 3×3 kernel on maps of 10 columns and more, 5×5 on 20), a
/// sample has at least gemm's 64-row tile of output positions (smaller ones share a product
/// through patches), and there are at least 16 input channels: each product's inner dimension
/// is `c_in` here, `c_in · kh · kw` through patches, and LeNet's first convolution (one channel,
/// 5×5) took 10 ms a backward here at batch 256, 1.2 ms through patches.
pub(super) fn applies(conv: &Conv) -> bool {
    let wp = conv.w + 2 * conv.padding[1];
    conv.stride == [1, 1] && 5 * (conv.kernel[1] - 1) <= wp && conv.p() >= super::TILE_ROWS && conv.c_in >= 16
}

/// The padded geometry of one sample.
#[derive(Debug, Clone, Copy)]
pub(super) struct Padded {
    /// Padded width and height.
    wp: usize,
    hp: usize,
    /// Output rows, and the wide output's columns, `oh · wp`.
    oh: usize,
    n: usize,
}

impl Padded {
    pub(super) fn of(conv: &Conv) -> Self {
        let (wp, hp) = (conv.w + 2 * conv.padding[1], conv.h + 2 * conv.padding[0]);
        let oh = conv.out()[0];
        Self { wp, hp, oh, n: oh * wp }
    }

    /// The wide output's columns.
    pub(super) fn n(&self) -> usize {
        self.n
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// A padded sample's length: its channels, and `kw − 1` more that the last channel's
    /// discarded columns read.
    pub(super) fn len(&self, conv: &Conv) -> usize {
        conv.c_in * self.plane() + conv.kernel[1] - 1
    }

    /// The padded input shifted by kernel offset `t` (`i · kw + j`), as `[c_in, n]`.
    fn window(&self, conv: &Conv, t: usize) -> View {
        let (i, j) = (t / conv.kernel[1], t % conv.kernel[1]);
        View { offset: i * self.wp + j, rows: conv.c_in, cols: self.n, row_stride: self.plane() }
    }

    /// Writes sample `x` (`[c_in, h, w]`) into `xp` with its zero border; `xp`'s border and
    /// tail must already be zero (they are never written).
    pub(super) fn pad(&self, conv: &Conv, x: &[f32], xp: &mut [f32]) {
        let (ph, pw) = (conv.padding[0], conv.padding[1]);
        for (c, channel) in x.chunks_exact(conv.h * conv.w).enumerate() {
            for (r, row) in channel.chunks_exact(conv.w).enumerate() {
                let at = c * self.plane() + (r + ph) * self.wp + pw;
                xp[at..at + conv.w].copy_from_slice(row);
            }
        }
    }

    /// Adds the interior of a padded gradient `dxp` into `dx` (`[c_in, h, w]`).
    fn unpad(&self, conv: &Conv, dxp: &[f32], dx: &mut [f32]) {
        let (ph, pw) = (conv.padding[0], conv.padding[1]);
        for (c, channel) in dx.chunks_exact_mut(conv.h * conv.w).enumerate() {
            for (r, row) in channel.chunks_exact_mut(conv.w).enumerate() {
                let at = c * self.plane() + (r + ph) * self.wp + pw;
                row.copy_from_slice(&dxp[at..at + conv.w]);
            }
        }
    }
}

/// `weight` (`[c_out, c_in, kh, kw]`) as one `[c_out, c_in]` matrix per kernel offset, or one
/// `[c_in, c_out]` matrix when `transposed` (the backward's).
pub(super) fn weights_by_offset(conv: &Conv, weight: &[f32], transposed: bool) -> Vec<f32> {
    let (taps, block) = (conv.kernel[0] * conv.kernel[1], conv.c_out * conv.c_in);
    let mut by_offset = vec![0.0; taps * block];
    for (row, w) in weight.chunks_exact(taps).enumerate() {
        let (co, ci) = (row / conv.c_in, row % conv.c_in);
        let at = if transposed { ci * conv.c_out + co } else { row };
        for (t, &v) in w.iter().enumerate() {
            by_offset[t * block + at] = v;
        }
    }
    by_offset
}

/// One sample's output `[c_out, oh, ow]` into `out`, from its padded input `xp`, the weights by
/// offset and the bias; `wide` is scratch of `c_out · n`.
pub(super) fn forward_sample(
    conv: &Conv,
    geo: &Padded,
    xp: &[f32],
    by_offset: &[f32],
    bias: &[f32],
    wide: &mut [f32],
    out: &mut [MaybeUninit<f32>],
) {
    let (c_out, c_in, ow) = (conv.c_out, conv.c_in, conv.out()[1]);
    let block = c_out * c_in;
    for t in 0..conv.kernel[0] * conv.kernel[1] {
        let w = View { offset: t * block, ..View::dense(c_out, c_in) };
        matmul_views((by_offset, w), (xp, geo.window(conv, t)), (wide, View::dense(c_out, geo.n)), t > 0);
    }
    for ((row, wide), &b) in out.chunks_exact_mut(geo.oh * ow).zip(wide.chunks_exact(geo.n)).zip(bias) {
        for (out, wide) in row.chunks_exact_mut(ow).zip(wide.chunks_exact(geo.wp)) {
            out.iter_mut().zip(wide).for_each(|(o, &v)| _ = o.write(v + b));
        }
    }
}

/// Scratch for one thread's backward samples.
pub(super) struct Scratch {
    pub xp: Vec<f32>,
    /// `dy` wide, `[c_out, n]`, zero in the discarded columns; and transposed, `[n, c_out]`.
    dy_wide: Vec<f32>,
    dy_t: Vec<f32>,
    dxp: Vec<f32>,
}

impl Scratch {
    pub(super) fn new(conv: &Conv, geo: &Padded) -> Self {
        let len = geo.len(conv);
        Self {
            xp: vec![0.0; len],
            dy_wide: vec![0.0; conv.c_out * geo.n],
            dy_t: vec![0.0; conv.c_out * geo.n],
            dxp: Vec::new(),
        }
    }
}

/// Adds one sample's weight gradient (by offset, each `[c_in, c_out]`) into `dw_by_offset`,
/// its bias gradient into `db`, and writes its input gradient into `dx` when given. `dy` is the
/// sample's `[c_out, oh, ow]`; `s.xp` must hold the sample padded ([`Padded::pad`]), and
/// `wt_by_offset` the weights by offset transposed (each `[c_in, c_out]`).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_sample(
    conv: &Conv,
    geo: &Padded,
    s: &mut Scratch,
    dy: &[f32],
    wt_by_offset: &[f32],
    dw_by_offset: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let (c_out, c_in, ow, n) = (conv.c_out, conv.c_in, conv.out()[1], geo.n);
    for ((wide, dy), sum) in
        s.dy_wide.chunks_exact_mut(n).zip(dy.chunks_exact(geo.oh * ow)).zip(db.iter_mut())
    {
        for (wide, dy) in wide.chunks_exact_mut(geo.wp).zip(dy.chunks_exact(ow)) {
            wide[..ow].copy_from_slice(dy);
        }
        *sum += dy.iter().sum::<f32>();
    }
    transpose(&s.dy_wide, c_out, n, &mut s.dy_t);
    let block = c_out * c_in;
    for t in 0..conv.kernel[0] * conv.kernel[1] {
        let dw = View { offset: t * block, ..View::dense(c_in, c_out) };
        matmul_views(
            (&s.xp, geo.window(conv, t)),
            (&s.dy_t, View::dense(n, c_out)),
            (dw_by_offset, dw),
            true,
        );
    }
    let Some(dx) = dx else { return };
    s.dxp.clear();
    s.dxp.resize(geo.len(conv), 0.0);
    for t in 0..conv.kernel[0] * conv.kernel[1] {
        let w = View { offset: t * block, ..View::dense(c_in, c_out) };
        let window = geo.window(conv, t);
        matmul_views((wt_by_offset, w), (&s.dy_wide, View::dense(c_out, n)), (&mut s.dxp, window), true);
    }
    geo.unpad(conv, &s.dxp, dx);
}

/// [`super::forward`] through one product per kernel offset on the padded input.
pub(super) fn forward(conv: &Conv, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let geo = Padded::of(conv);
    let by_offset = weights_by_offset(conv, weight, false);
    let (sample, out_len) = (conv.c_in * conv.h * conv.w, conv.c_out * conv.p());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(out_len).zip(x.par_chunks(sample)).for_each_init(
            || (vec![0.0; geo.len(conv)], vec![0.0; conv.c_out * geo.n()]),
            |(xp, wide), (out, x)| {
                geo.pad(conv, x, xp);
                forward_sample(conv, &geo, xp, &by_offset, bias, wide, out);
            },
        )
    };
    // SAFETY: `forward_sample` writes each sample's whole output.
    unsafe { crate::written(conv.batch * out_len, fill) }
}

/// [`super::backward`] through one product per kernel offset on the padded input, one
/// sample at a time, each thread summing one run of samples.
pub(super) fn backward(conv: &Conv, x: &[f32], weight: &[f32], dy: &[f32], input_grad: bool) -> Gradients {
    let geo = Padded::of(conv);
    let (taps, block, c_out) = (conv.kernel[0] * conv.kernel[1], conv.c_out * conv.c_in, conv.c_out);
    let wt_by_offset = weights_by_offset(conv, weight, true);
    let (sample, dy_len) = (conv.c_in * conv.h * conv.w, c_out * conv.p());
    // Without the input's gradient, one unused float per sample keeps the loop's shape.
    let mut dx = crate::zeros(if input_grad { x.len() } else { conv.batch });
    let chunk = if input_grad { sample } else { 1 };
    let runs = super::in_runs(
        &mut dx,
        chunk,
        conv.batch,
        || (Scratch::new(conv, &geo), vec![0.0; taps * block], vec![0.0; c_out]),
        |(mut s, mut dw, mut db), (b, dx)| {
            geo.pad(conv, &x[b * sample..(b + 1) * sample], &mut s.xp);
            let dy = &dy[b * dy_len..(b + 1) * dy_len];
            let dx = input_grad.then_some(dx);
            backward_sample(conv, &geo, &mut s, dy, &wt_by_offset, &mut dw, &mut db, dx);
            (s, dw, db)
        },
    );
    let (dw_by_offset, d_bias) = runs
        .into_iter()
        .map(|(_, dw, db)| (dw, db))
        .reduce(super::sum_partials)
        .unwrap_or_else(|| (vec![0.0; taps * block], vec![0.0; c_out]));
    // `[c_out, c_in, kh, kw]` from one `[c_in, c_out]` block per offset.
    let mut d_weight = vec![0.0; taps * block];
    for (t, dw) in dw_by_offset.chunks_exact(block).enumerate() {
        for (ci, row) in dw.chunks_exact(c_out).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                d_weight[(co * conv.c_in + ci) * taps + t] = v;
            }
        }
    }
    Gradients { x: input_grad.then_some(dx), weight: d_weight, bias: d_bias }
}
