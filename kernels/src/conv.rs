//! 2-D convolution (any stride and zero padding; no dilation, no groups), forward and backward,
//! over NCHW `f32` data: per sample an im2col and one gemm, the samples split between rayon's
//! threads.
//!
//! The products are laid out for gemm's AVX-512 tile, which covers 64 rows of the (internally
//! transposed) output at a time: the output positions run along those rows, and every operand gemm
//! reads is contiguous along them, so it never packs a matrix with scalar strided loads.

use rayon::prelude::*;

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

    /// One sample's patches, `[k, p]` (each patch index's values over the output positions).
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let ([_, ow], p, s) = (self.out(), self.p(), self.stride[1]);
        self.rows(|k, y, row, cols, first| {
            let out = &mut col[k * p + y * ow..k * p + (y + 1) * ow];
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

    /// Adds one sample's patch gradients `d_col` (`[k, p]`) into its input gradient.
    fn col2im(&self, d_col: &[f32], dx: &mut [f32]) {
        let ([_, ow], p, s) = (self.out(), self.p(), self.stride[1]);
        self.rows(|k, y, row, cols, first| {
            let Some(row) = row else { return };
            let n = cols.len();
            let src = &d_col[k * p + y * ow + cols.start..k * p + y * ow + cols.end];
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

/// `[rows, cols]` row-major to `[cols, rows]` row-major, in cache-sized tiles.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// `dst = a · b` (or `+=`), row-major: `a` `[m, k]`, `b` `[k, n]` (stored `[n, k]` when
/// `b_transposed`), `dst` `[m, n]`; one thread.
#[allow(clippy::too_many_arguments)]
fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], b_transposed: bool, dst: &mut [f32], add: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n);
    let (b_rs, b_cs) = if b_transposed { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert keeps every index the strides reach inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            add,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The output `[batch, c_out, oh, ow]` of `x` (`[batch, c_in, h, w]`) with `weight`
/// (`[c_out, c_in, kh, kw]`) and `bias` (`[c_out]`).
pub fn forward(conv: &Conv, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (k, p, sample) = (conv.k(), conv.p(), conv.c_in * conv.h * conv.w);
    assert!(x.len() == conv.batch * sample && weight.len() == conv.c_out * k && bias.len() == conv.c_out);
    let mut out = vec![0.0; conv.batch * conv.c_out * p];
    out.par_chunks_mut(conv.c_out * p).enumerate().for_each_init(
        || vec![0.0; k * p],
        |col, (b, out)| {
            let x = &x[b * sample..(b + 1) * sample];
            conv.im2col(x, col);
            for (row, &bias) in out.chunks_exact_mut(p).zip(bias) {
                row.fill(bias);
            }
            gemm(conv.c_out, k, p, weight, col, false, out, true);
        },
    );
    out
}

/// The gradients of a convolution's input (when asked), weight and bias.
pub struct Gradients {
    pub x: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The backward of [`forward`] from the output's gradient `dy`.
pub fn backward(conv: &Conv, x: &[f32], weight: &[f32], dy: &[f32], input_grad: bool) -> Gradients {
    let (k, p, sample, c_out) = (conv.k(), conv.p(), conv.c_in * conv.h * conv.w, conv.c_out);
    assert!(dy.len() == conv.batch * c_out * p && x.len() == conv.batch * sample);
    // wᵀ, `[k, c_out]`, for the patches' gradient.
    let mut w_t = vec![0.0; k * c_out];
    for o in 0..c_out {
        for kk in 0..k {
            w_t[kk * c_out + o] = weight[o * k + kk];
        }
    }
    // Without the input's gradient, one unused float per sample keeps the loop's shape.
    let mut dx = vec![0.0; if input_grad { x.len() } else { conv.batch }];
    let chunk = if input_grad { sample } else { 1 };
    let (d_weight, d_bias) = dx
        .par_chunks_mut(chunk)
        .enumerate()
        .fold(
            || (vec![0.0; c_out * k], vec![0.0f32; c_out], vec![0.0; p * k], vec![0.0; k * p]),
            |(mut dw, mut db, mut col_t, mut col), (b, dx)| {
                let (x, dy) = (&x[b * sample..(b + 1) * sample], &dy[b * c_out * p..(b + 1) * c_out * p]);
                // Patches position-major, `[p, k]`: dW += dy · patches.
                conv.im2col(x, &mut col);
                transpose(&col, k, p, &mut col_t);
                gemm(c_out, p, k, dy, &col_t, false, &mut dw, true);
                for (sum, row) in db.iter_mut().zip(dy.chunks_exact(p)) {
                    *sum += row.iter().sum::<f32>();
                }
                if input_grad {
                    // The patches' gradient, `[k, p]` = wᵀ · dy, summed back into the input.
                    gemm(k, c_out, p, &w_t, dy, false, &mut col, false);
                    conv.col2im(&col, dx);
                }
                (dw, db, col_t, col)
            },
        )
        .map(|(dw, db, _, _)| (dw, db))
        .reduce(
            || (vec![0.0; c_out * k], vec![0.0; c_out]),
            |(mut a, mut b), (c, d)| {
                a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
                b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
                (a, b)
            },
        );
    Gradients { x: input_grad.then_some(dx), weight: d_weight, bias: d_bias }
}
