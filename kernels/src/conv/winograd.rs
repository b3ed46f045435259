//! 3×3 "same" convolutions at stride 1 by Winograd's minimal filtering F(2×2, 3×3) (Lavin and
//! Gray, 2015): each 2×2 block of output comes from a 4×4 tile of input, `Y = Aᵀ[(G g Gᵀ) ⊙
//! (Bᵀ d B)]A`, 16 multiplications where the direct sum takes 36. Summed over the input
//! channels, the elementwise products become 16 products of matrices, one per position ξ of
//! the transformed tile: `M_ξ [c_out, tiles] = U_ξ [c_out, c_in] · V_ξ [c_in, tiles]`, 2.25 times
//! fewer multiply-adds than the direct convolution, and each one a gemm with the tiles along its
//! 64-row tile. The transforms themselves are additions (and halvings of the weights).
//!
//! The input's gradient of such a convolution is another one (the weights flipped, their two
//! channel axes swapped), so [`input_gradient`] goes the same way. The transforms' extra
//! additions cost some precision; F(2×2, 3×3) keeps it close to the direct sum's (the tests
//! hold it to the same 1e-4 as every path).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::Conv;
use crate::linalg::matmul;

/// Positions of a transformed tile (4×4).
const XI: usize = 16;

/// Whether `conv` runs here: a 3×3 kernel at stride 1 with "same" padding, at least 16
/// channels in and out, on maps of 6×6 or more. On ResNet-18's last, 3×3, the 2×2 tiles
/// compute 16 outputs to keep 9 (1.27 times fewer multiply-adds, not 2.25), and `conv_bench`
/// measured its 512→512 slower than through patches: forward 11.3 ms against 7.2, backward 37
/// against 14.
pub(super) fn applies(conv: &Conv) -> bool {
    conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.padding == [1, 1]
        && conv.c_in.min(conv.c_out) >= 16
        && conv.h.min(conv.w) >= 6
}

/// The tiling of one sample's output: `rows × cols` tiles of 2×2.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn of(conv: &Conv) -> Self {
        let [oh, ow] = conv.out();
        Self { rows: oh.div_ceil(2), cols: ow.div_ceil(2) }
    }

    fn per_sample(&self) -> usize {
        self.rows * self.cols
    }

    /// Samples per product: enough for about 144 tiles (a 24×24 map's), yet at least one
    /// product per thread. `conv_bench`, ResNet-18's 256 channels at 6×6 (9 tiles a sample):
    /// forward 5.4 ms with 16 samples a product, 5.9 with 8.
    fn group(&self, batch: usize) -> usize {
        let cap = (batch / rayon::current_num_threads()).max(1);
        144usize.div_ceil(self.per_sample()).clamp(1, cap)
    }
}

/// `G` times a column (or a row times `Gᵀ`) of three kernel values: four.
fn g_times(a: f32, b: f32, c: f32) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// `G g Gᵀ` of every `[c_out, c_in]` kernel, as one `[c_out, c_in]` matrix per position ξ.
fn transform_weights(conv: &Conv, weight: &[f32]) -> Vec<f32> {
    let block = conv.c_out * conv.c_in;
    let mut u = vec![0.0; XI * block];
    for (at, g) in weight.chunks_exact(9).enumerate() {
        // G g: 4 rows of 3, a column at a time; then each row times Gᵀ.
        let mut gg = [[0.0f32; 3]; 4];
        for j in 0..3 {
            for (i, v) in g_times(g[j], g[3 + j], g[6 + j]).into_iter().enumerate() {
                gg[i][j] = v;
            }
        }
        for (i, &[a, b, c]) in gg.iter().enumerate() {
            for (j, v) in g_times(a, b, c).into_iter().enumerate() {
                u[(i * 4 + j) * block + at] = v;
            }
        }
    }
    u
}

/// Scratch for one thread's transforms.
#[derive(Default)]
struct Scratch {
    /// A zero-padded input channel in four parts by the parity of its row and column, each
    /// `rows + 1` rows of `cols + 1` (`rows × cols` tiles): a tile's 4×4 values are then two
    /// consecutive ones in two consecutive rows of each part.
    parts: Vec<f32>,
    /// `Bᵀ d` of every tile, or `Aᵀ m`: 8 rows of values over all tiles.
    rows: Vec<f32>,
    /// The output transform's two rows of output for each row of tiles.
    wide: Vec<f32>,
}

crate::simd::multiversion! {
    /// `Bᵀ d B` of every tile of the samples `x` (`[samples, c_in, h, w]`) into `v`, one
    /// `[c_in, tiles]` matrix per position ξ, the tiles sample by sample in row-major order.
    /// `Bᵀ d` runs over all of a channel's tiles at once, contiguous values, so it vectorises.
    fn transform_input(conv: &Conv, tiles: Tiles, x: &[f32], v: &mut [f32], scratch: &mut Scratch) {
        let (h, w, c_in, tw) = (conv.h, conv.w, conv.c_in, tiles.cols);
        let n = x.len() / (c_in * h * w) * tiles.per_sample();
        let half = tw + 1;
        let (part, flat) = ((tiles.rows + 1) * half, tiles.rows * half);
        // Past the map (an odd side's last tile) and on the border the parts stay zero.
        scratch.parts.clear();
        scratch.parts.resize(4 * part, 0.0);
        scratch.rows.resize(8 * flat, 0.0);
        for (sc, channel) in x.chunks_exact(h * w).enumerate() {
            // Input row r, column q, is padded row r + 1, column q + 1.
            for (r, row) in channel.chunks_exact(w).enumerate() {
                let padded = r + 1;
                let at = padded % 2 * 2 * part + padded / 2 * half;
                let (even, odd) = scratch.parts[at..].split_at_mut(part);
                for (k, pair) in row.chunks(2).enumerate() {
                    odd[k] = pair[0];
                    if let Some(&value) = pair.get(1) {
                        even[k + 1] = value;
                    }
                }
            }
            // Bᵀ d by column parity: rows d0 − d2, d1 + d2, d2 − d1, d1 − d3 of every tile.
            for p in 0..2 {
                let d0 = &scratch.parts[p * part..][..flat];
                let d1 = &scratch.parts[(2 + p) * part..][..flat];
                let d2 = &scratch.parts[p * part + half..][..flat];
                let d3 = &scratch.parts[(2 + p) * part + half..][..flat];
                let (e, _) = scratch.rows[p * 4 * flat..].split_at_mut(4 * flat);
                let (e0, e) = e.split_at_mut(flat);
                let (e1, e) = e.split_at_mut(flat);
                let (e2, e3) = e.split_at_mut(flat);
                for k in 0..flat {
                    (e0[k], e1[k], e2[k], e3[k]) = (d0[k] - d2[k], d1[k] + d2[k], d2[k] - d1[k], d1[k] - d3[k]);
                }
            }
            // Then each row times B: a tile's columns are ev[t], od[t], ev[t + 1], od[t + 1].
            let (s, ci) = (sc / c_in, sc % c_in);
            for ty in 0..tiles.rows {
                let at = ci * n + s * tiles.per_sample() + ty * tw;
                for i in 0..4 {
                    let ev = &scratch.rows[i * flat + ty * half..][..half];
                    let od = &scratch.rows[(4 + i) * flat + ty * half..][..half];
                    let (e0, e1, o0, o1) = (&ev[..tw], &ev[1..], &od[..tw], &od[1..]);
                    let at = |j: usize| (i * 4 + j) * c_in * n + at;
                    difference(&mut v[at(0)..][..tw], e0, e1);
                    sum(&mut v[at(1)..][..tw], o0, e1);
                    difference(&mut v[at(2)..][..tw], e1, o0);
                    difference(&mut v[at(3)..][..tw], o0, o1);
                }
            }
        }
    }
}

/// `dst = a − b`, element by element.
#[inline(always)]
fn difference(dst: &mut [f32], a: &[f32], b: &[f32]) {
    dst.iter_mut().zip(a).zip(b).for_each(|((d, a), b)| *d = a - b);
}

/// `dst = a + b`, element by element.
#[inline(always)]
fn sum(dst: &mut [f32], a: &[f32], b: &[f32]) {
    dst.iter_mut().zip(a).zip(b).for_each(|((d, a), b)| *d = a + b);
}

crate::simd::multiversion! {
    /// `Aᵀ m A` of every tile's products `m` (one `[c_out, tiles]` matrix per position ξ) plus
    /// the bias, into `out` (`[samples, c_out, oh, ow]`, every element written). `Aᵀ m` runs over
    /// all of a channel's tiles at once.
    fn transform_output(
        conv: &Conv,
        tiles: Tiles,
        m: &[f32],
        bias: &[f32],
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Scratch,
    ) {
        let ([oh, ow], c_out, (tw, per)) = (conv.out(), conv.c_out, (tiles.cols, tiles.per_sample()));
        let n = out.len() / (c_out * oh * ow) * per;
        scratch.rows.resize(8 * per, 0.0);
        scratch.wide.resize(4 * tw, 0.0);
        for (sc, out) in out.chunks_exact_mut(oh * ow).enumerate() {
            let (s, co) = (sc / c_out, sc % c_out);
            // Aᵀ m: rows m0 + m1 + m2 and m1 − m2 − m3, for each of 4 columns.
            for j in 0..4 {
                let m = |i: usize| &m[((i * 4 + j) * c_out + co) * n + s * per..][..per];
                let (m0, m1, m2, m3) = (m(0), m(1), m(2), m(3));
                let (r0, r1) = scratch.rows[2 * j * per..][..2 * per].split_at_mut(per);
                for t in 0..per {
                    (r0[t], r1[t]) = (m0[t] + m1[t] + m2[t], m1[t] - m2[t] - m3[t]);
                }
            }
            // Then each row times A, two outputs a tile, into rows of 2·tw (an odd side's last
            // column dropped).
            let b = bias[co];
            for ty in 0..tiles.rows {
                for a in 0..2.min(oh - 2 * ty) {
                    let c = |j: usize| &scratch.rows[(2 * j + a) * per + ty * tw..][..tw];
                    let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
                    let pairs = scratch.wide[..2 * tw].chunks_exact_mut(2);
                    for (pair, (((&c0, &c1), &c2), &c3)) in pairs.zip(c0.iter().zip(c1).zip(c2).zip(c3)) {
                        pair[0] = c0 + c1 + c2 + b;
                        pair[1] = c1 - c2 - c3 + b;
                    }
                    let row = &mut out[(2 * ty + a) * ow..][..ow];
                    row.iter_mut().zip(&scratch.wide[..ow]).for_each(|(o, &v)| _ = o.write(v));
                }
            }
        }
    }
}

/// The output `[batch, c_out, oh, ow]` of `x` (`[batch, c_in, h, w]`) with `weight`
/// (`[c_out, c_in, 3, 3]`) and `bias` (`[c_out]`), where [`applies`].
pub(super) fn forward(conv: &Conv, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (c_in, c_out) = (conv.c_in, conv.c_out);
    let u = transform_weights(conv, weight);
    let tiles = Tiles::of(conv);
    let group = tiles.group(conv.batch);
    let (sample, out_len) = (c_in * conv.h * conv.w, c_out * conv.p());
    let (most, block) = (group * tiles.per_sample(), c_out * c_in);
    // Runs of consecutive groups, about two a thread, each with its own scratch.
    let run = conv.batch.div_ceil(group).div_ceil(2 * rayon::current_num_threads());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let runs = out.par_chunks_mut(run * group * out_len).zip(x.par_chunks(run * group * sample));
        runs.for_each(|(out, x)| {
            let (mut v, mut m) = (vec![0.0; XI * c_in * most], vec![0.0; XI * c_out * most]);
            let mut scratch = Scratch::default();
            for (out, x) in out.chunks_mut(group * out_len).zip(x.chunks(group * sample)) {
                let n = out.len() / out_len * tiles.per_sample();
                let (v, m) = (&mut v[..XI * c_in * n], &mut m[..XI * c_out * n]);
                transform_input(conv, tiles, x, v, &mut scratch);
                for xi in 0..XI {
                    let (u, v) = (&u[xi * block..][..block], &v[xi * c_in * n..][..c_in * n]);
                    let m = &mut m[xi * c_out * n..][..c_out * n];
                    matmul([c_out, c_in, n], (u, false), (v, false), m, false, false);
                }
                transform_output(conv, tiles, m, bias, out, &mut scratch);
            }
        })
    };
    // SAFETY: `transform_output` writes each group's whole output.
    unsafe { crate::written(conv.batch * out_len, fill) }
}

/// The input's gradient `[batch, c_in, h, w]` of a convolution where [`applies`], from its
/// output's gradient `dy`: the convolution of `dy` with the weights flipped in both spatial
/// axes and their channel axes swapped, itself one that [`applies`].
pub(super) fn input_gradient(conv: &Conv, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let [oh, ow] = conv.out();
    let back = Conv { c_in: conv.c_out, c_out: conv.c_in, h: oh, w: ow, ..*conv };
    let mut flipped = vec![0.0; weight.len()];
    for (at, g) in weight.chunks_exact(9).enumerate() {
        let (co, ci) = (at / conv.c_in, at % conv.c_in);
        let dst = &mut flipped[(ci * conv.c_out + co) * 9..][..9];
        dst.iter_mut().zip(g.iter().rev()).for_each(|(d, &v)| *d = v);
    }
    forward(&back, dy, &flipped, &vec![0.0; conv.c_in])
}
