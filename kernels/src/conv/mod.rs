//! 2-D convolution (any stride and zero padding; no dilation, no groups), forward and backward,
//! over NCHW `f32` data, the samples split between rayon's threads. Three ways, chosen per shape:
//! 3×3 "same" at stride 1 (most of ResNet-18's), Winograd's F(2×2, 3×3) ([`winograd`]), for the
//! output and the input's gradient (their weight's gradient goes as the next two say); other
//! stride-1 ones on maps wide enough, one gemm per kernel offset on the zero-padded input
//! ([`shifted`]); otherwise per sample (or group of small samples) an im2col and one gemm. The
//! backward on small maps takes the whole batch's patches at once ([`batch_wide`]).
//!
//! The products are laid out for gemm's AVX-512 tile, which covers 64 rows of the (internally
//! transposed) output at a time: the output positions run along those rows, and the operands gemm
//! reads are contiguous along them (the one it packs transposed, where one is, is the smaller).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linalg::{matmul, transpose};

mod batch_wide;
mod shifted;
mod winograd;

/// A convolution's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Conv {
    /// The output's height and width.
    pub fn out(&self) -> [usize; 2] {
        let side = |size: usize, d: usize| (size + 2 * self.padding[d] - self.kernel[d]) / self.stride[d] + 1;
        [side(self.h, 0), side(self.w, 1)]
    }

    /// Patch length: `c_in · kh · kw`.
    fn k(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per sample.
    fn p(&self) -> usize {
        let [oh, ow] = self.out();
        oh * ow
    }

    /// The output columns `x` whose input column `x·stride + j − padding` lies inside the
    /// input, as a range.
    fn valid_columns(&self, j: usize) -> std::ops::Range<usize> {
        let [_, ow] = self.out();
        let (s, p) = (self.stride[1], self.padding[1]);
        let lo = if j >= p { 0 } else { (p - j).div_ceil(s) };
        let hi = if self.w + p > j { ((self.w + p - j - 1) / s + 1).min(ow) } else { 0 };
        lo..hi.max(lo)
    }

    /// For each patch index `k` and output row `y`: `f(k, y, input row or None for padding,
    /// the valid output columns, the input column of the first valid one)`.
    #[inline(always)]
    fn rows(&self, mut f: impl FnMut(usize, usize, Option<usize>, std::ops::Range<usize>, usize)) {
        let ([kh, kw], [oh, _]) = (self.kernel, self.out());
        for c in 0..self.c_in {
            for i in 0..kh {
                for j in 0..kw {
                    let k = (c * kh + i) * kw + j;
                    let cols = self.valid_columns(j);
                    let first = (cols.start * self.stride[1] + j).saturating_sub(self.padding[1]);
                    for y in 0..oh {
                        let row =
                            (y * self.stride[0] + i).checked_sub(self.padding[0]).filter(|&r| r < self.h);
                        f(k, y, row.map(|r| (c * self.h + r) * self.w), cols.clone(), first);
                    }
                }
            }
        }
    }

    /// One sample's patches into columns `offset..offset + p` of `col` (`[k, ld]`): each patch
    /// index's values over the output positions.
    fn im2col(&self, x: &[f32], col: &mut [f32], ld: usize, offset: usize) {
        let ([_, ow], s) = (self.out(), self.stride[1]);
        self.rows(|k, y, row, cols, first| {
            let out = &mut col[k * ld + offset + y * ow..k * ld + offset + (y + 1) * ow];
            let Some(row) = row else {
                out.fill(0.0);
                return;
            };
            out[..cols.start].fill(0.0);
            out[cols.end..].fill(0.0);
            let n = cols.len();
            if s == 1 {
                out[cols].copy_from_slice(&x[row + first..row + first + n]);
            } else {
                for (o, i) in out[cols].iter_mut().zip((row + first..).step_by(s)) {
                    *o = x[i];
                }
            }
        });
    }

    /// Adds one sample's patch gradients, columns `offset..offset + p` of `d_col` (`[k, ld]`),
    /// into its input gradient.
    fn col2im(&self, d_col: &[f32], ld: usize, offset: usize, dx: &mut [f32]) {
        let ([_, ow], s) = (self.out(), self.stride[1]);
        self.rows(|k, y, row, cols, first| {
            let Some(row) = row else { return };
            let n = cols.len();
            let at = k * ld + offset + y * ow;
            let src = &d_col[at + cols.start..at + cols.end];
            if s == 1 {
                dx[row + first..row + first + n].iter_mut().zip(src).for_each(|(d, &g)| *d += g);
            } else {
                for (&g, i) in src.iter().zip((row + first..).step_by(s)) {
                    dx[i] += g;
                }
            }
        });
    }
}

/// gemm's AVX-512 tile: 64 rows of output positions. A deep layer's few positions (3×3 in
/// ResNet-18's last stage) would leave most of it empty one sample at a time, so below it the
/// patches of several samples go side by side into one product of about twice that.
const TILE_ROWS: usize = 64;

impl Conv {
    /// Samples per product.
    fn group(&self) -> usize {
        let p = self.p();
        if p >= TILE_ROWS { 1 } else { (2 * TILE_ROWS / p).clamp(1, self.batch.max(1)) }
    }
}

impl Conv {
    /// Whether this convolution runs without patches ([`shifted`]), for tests.
    #[cfg(test)]
    pub(crate) fn takes_shifted(&self) -> bool {
        shifted::applies(self)
    }

    /// Whether this convolution runs by Winograd's F(2×2, 3×3) ([`winograd`]), for tests.
    #[cfg(test)]
    pub(crate) fn takes_winograd(&self) -> bool {
        winograd::applies(self)
    }
}

/// The output `[batch, c_out, oh, ow]` of `x` (`[batch, c_in, h, w]`) with `weight`
/// (`[c_out, c_in, kh, kw]`) and `bias` (`[c_out]`).
pub fn forward(conv: &Conv, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert!(x.len() == conv.batch * conv.c_in * conv.h * conv.w);
    assert!(weight.len() == conv.c_out * conv.k() && bias.len() == conv.c_out);
    if winograd::applies(conv) {
        winograd::forward(conv, x, weight, bias)
    } else if shifted::applies(conv) {
        shifted::forward(conv, x, weight, bias)
    } else {
        forward_patches(conv, x, weight, bias)
    }
}

/// [`forward`] through patches (im2col) and one product per sample or group of samples.
fn forward_patches(conv: &Conv, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (k, p, c_out, group) = (conv.k(), conv.p(), conv.c_out, conv.group());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(group * c_out * p).enumerate().for_each_init(
            || (vec![0.0; k * group * p], vec![0.0; c_out * group * p]),
            |(col, product), (g, out)| {
                patches_group(conv, (x, weight, bias), g, (col.as_mut_slice(), product.as_mut_slice()), out)
            },
        )
    };
    // SAFETY: `patches_group` writes each group's whole output.
    unsafe { crate::written(conv.batch * c_out * p, fill) }
}

/// [`forward_patches`] for group `g` of samples, into `out` (every element written), with
/// scratch for the patches and the product.
fn patches_group(
    conv: &Conv,
    (x, weight, bias): (&[f32], &[f32], &[f32]),
    g: usize,
    (col, product): (&mut [f32], &mut [f32]),
    out: &mut [MaybeUninit<f32>],
) {
    let (k, p, sample, c_out, group) =
        (conv.k(), conv.p(), conv.c_in * conv.h * conv.w, conv.c_out, conv.group());
    let samples = out.len() / (c_out * p);
    let n = samples * p;
    for s in 0..samples {
        let b = g * group + s;
        conv.im2col(&x[b * sample..(b + 1) * sample], col, n, s * p);
    }
    if samples == 1 {
        // The product is the sample's output: straight into place, onto the bias.
        for (row, &bias) in out.chunks_exact_mut(p).zip(bias) {
            row.iter_mut().for_each(|o| _ = o.write(bias));
        }
        // SAFETY: every element was just written.
        let out = unsafe { crate::assume_written(out) };
        return matmul([c_out, k, p], (weight, false), (&col[..k * p], false), out, true, false);
    }
    // `[c_out, samples·p]`, then each sample's block to its place, with the bias.
    matmul([c_out, k, n], (weight, false), (&col[..k * n], false), &mut product[..c_out * n], false, false);
    for (s, out) in out.chunks_exact_mut(c_out * p).enumerate() {
        for (co, row) in out.chunks_exact_mut(p).enumerate() {
            let src = &product[co * n + s * p..co * n + (s + 1) * p];
            row.iter_mut().zip(src).for_each(|(o, &v)| _ = o.write(v + bias[co]));
        }
    }
}

/// The gradients of a convolution's input (when asked), weight and bias.
pub struct Gradients {
    pub x: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The backward of [`forward`] from the output's gradient `dy`.
pub fn backward(conv: &Conv, x: &[f32], weight: &[f32], dy: &[f32], input_grad: bool) -> Gradients {
    assert!(
        dy.len() == conv.batch * conv.c_out * conv.p() && x.len() == conv.batch * conv.c_in * conv.h * conv.w
    );
    assert!(weight.len() == conv.c_out * conv.k());
    if input_grad && winograd::applies(conv) {
        // The weight's and bias's gradients as this shape has them otherwise; the input's here.
        let without = backward(conv, x, weight, dy, false);
        return Gradients { x: Some(winograd::input_gradient(conv, weight, dy)), ..without };
    }
    if shifted::applies(conv) {
        shifted::backward(conv, x, weight, dy, input_grad)
    } else if batch_wide::applies(conv) {
        batch_wide::backward(conv, x, weight, dy, input_grad)
    } else {
        backward_patches(conv, x, weight, dy, input_grad)
    }
}

/// Folds `step` over the `items` chunks of `dx` (each `chunk` long, the last maybe shorter),
/// `(index, chunk)` at a time, in runs of consecutive items, each from its own `init()`;
/// returns the runs' states in order. About two runs per thread: few partial gradients to sum
/// (rayon's own splits made many more), yet enough runs for its threads to even out. The split
/// depends on the counts alone, not on rayon's scheduling, so sums over the runs come out the
/// same every time on a given machine.
fn in_runs<S: Send>(
    dx: &mut [f32],
    chunk: usize,
    items: usize,
    init: impl Fn() -> S + Sync,
    step: impl Fn(S, (usize, &mut [f32])) -> S + Sync,
) -> Vec<S> {
    let run = (items / (2 * rayon::current_num_threads())).max(1);
    dx.par_chunks_mut(run * chunk)
        .enumerate()
        .map(|(r, dx)| dx.chunks_mut(chunk).enumerate().fold(init(), |s, (i, dx)| step(s, (r * run + i, dx))))
        .collect()
}

/// Sums two runs' partial weight and bias gradients.
fn sum_partials((mut a, mut b): (Vec<f32>, Vec<f32>), (c, d): (Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
    a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
    b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
    (a, b)
}

impl Conv {
    /// Whether the weight's gradient through patches is summed transposed, `dWᵀ = patches ·
    /// dyᵀ` (`[k, c_out]`): gemm reads the patches as im2col lays them out and packs `dy`
    /// transposed, and one transpose of the sum gives `dW`. Otherwise the patches are
    /// transposed position-major (`[n, k]`) for `dW = dy · patches`. kernels/examples/conv_bench,
    /// backward per layer: the transposed sum is faster on a sample's own product of 128
    /// positions or more (ResNet-18's 3×3 at 24×24, before those left patches: 18 → 11 ms)
    /// and for few output channels (DenseNet's 32), slower on the grouped products of many
    /// channels (ResNet-18's 512 channels at 3×3: 26 → 33 ms; those small maps now go
    /// [`batch_wide`], so grouped products are left only for fewer than 64 channels).
    fn sums_weight_gradient_transposed(&self) -> bool {
        self.p() >= 2 * TILE_ROWS || self.c_out < TILE_ROWS
    }
}

/// [`backward`] through patches (im2col), the weight's gradient as
/// [`Conv::sums_weight_gradient_transposed`] chooses.
fn backward_patches(conv: &Conv, x: &[f32], weight: &[f32], dy: &[f32], input_grad: bool) -> Gradients {
    let (k, p, sample, c_out) = (conv.k(), conv.p(), conv.c_in * conv.h * conv.w, conv.c_out);
    let group = conv.group();
    let groups = conv.batch.div_ceil(group);
    // Without the input's gradient, one unused float per group keeps the loop's shape.
    let mut dx = crate::zeros(if input_grad { x.len() } else { groups });
    let chunk = if input_grad { group * sample } else { 1 };
    let sum_transposed = conv.sums_weight_gradient_transposed();
    let runs = in_runs(
        &mut dx,
        chunk,
        groups,
        || (vec![0.0; k * c_out], vec![0.0f32; c_out], vec![0.0; k * group * p], Vec::new(), Vec::new()),
        |(mut dw, mut db, mut col, mut gathered, mut col_t), (g, dx)| {
            let samples = group.min(conv.batch - g * group);
            let n = samples * p;
            let first = g * group * c_out * p;
            // `dy` of the group's samples, `[c_out, n]`: one sample's is in place already.
            let dy_g: &[f32] = if samples == 1 {
                &dy[first..first + c_out * p]
            } else {
                gathered.resize(c_out * n, 0.0);
                for s in 0..samples {
                    for co in 0..c_out {
                        let src = &dy[first + (s * c_out + co) * p..first + (s * c_out + co + 1) * p];
                        gathered[co * n + s * p..co * n + (s + 1) * p].copy_from_slice(src);
                    }
                }
                &gathered[..c_out * n]
            };
            for s in 0..samples {
                let b = g * group + s;
                conv.im2col(&x[b * sample..(b + 1) * sample], &mut col, n, s * p);
            }
            if sum_transposed {
                matmul([k, n, c_out], (&col[..k * n], false), (dy_g, true), &mut dw, true, false);
            } else {
                // Patches position-major, `[n, k]`: dW += dy · patches.
                col_t.resize(n * k, 0.0);
                transpose(&col[..k * n], k, n, &mut col_t);
                matmul([c_out, n, k], (dy_g, false), (&col_t, false), &mut dw, true, false);
            }
            for (sum, row) in db.iter_mut().zip(dy_g.chunks_exact(n)) {
                *sum += row.iter().sum::<f32>();
            }
            if input_grad {
                // The patches' gradient, `[k, n]` = wᵀ · dy, summed back into each input.
                matmul([k, c_out, n], (weight, true), (dy_g, false), &mut col[..k * n], false, false);
                for (s, dx) in dx.chunks_exact_mut(sample).enumerate() {
                    conv.col2im(&col, n, s * p, dx);
                }
            }
            (dw, db, col, gathered, col_t)
        },
    );
    let (d_weight_t, d_bias) = runs
        .into_iter()
        .map(|(dw, db, _, _, _)| (dw, db))
        .reduce(sum_partials)
        .unwrap_or_else(|| (vec![0.0; k * c_out], vec![0.0; c_out]));
    let d_weight = if sum_transposed {
        let mut d_weight = vec![0.0; c_out * k];
        transpose(&d_weight_t, k, c_out, &mut d_weight);
        d_weight
    } else {
        d_weight_t
    };
    Gradients { x: input_grad.then_some(dx), weight: d_weight, bias: d_bias }
}
