//! Pooling over `[planes, h, w]`, forward and backward: 2×2 average pooling with stride 2
//! (LeNet's and DenseNet's transitions; an odd last row or column is left out, as a 2×2 window
//! with stride 2 and no padding does), and max pooling with any window, stride and padding
//! (ResNet's and DenseNet's 3×3 with stride 2 after the stem).
//!
//! Burn's CPU pooling runs every window through a general 3-D loop, one rayon task per output,
//! and keeps a max pooling's choices as `i64` indices; these read each plane once and split the
//! planes between rayon's threads.

use rayon::prelude::*;

/// `y[p, i, j]` = the mean of `x[p, 2i..2i+2, 2j..2j+2]`; `y` is `[planes, h/2, w/2]`.
pub fn forward(x: &[f32], planes: usize, h: usize, w: usize, y: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    assert!(x.len() == planes * h * w && y.len() == planes * oh * ow);
    if oh * ow == 0 {
        return;
    }
    y.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(y, x)| {
        for (i, out) in y.chunks_exact_mut(ow).enumerate() {
            let (top, bottom) = (&x[2 * i * w..][..2 * ow], &x[(2 * i + 1) * w..][..2 * ow]);
            for (j, o) in out.iter_mut().enumerate() {
                *o = 0.25 * (top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1]);
            }
        }
    });
}

/// The gradient of [`forward`]'s input: each window's four inputs get a quarter of its output's
/// gradient; a left-out row or column gets none.
pub fn backward(dy: &[f32], planes: usize, h: usize, w: usize, dx: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    assert!(dx.len() == planes * h * w && dy.len() == planes * oh * ow);
    dx.par_chunks_mut(h * w).enumerate().for_each(|(p, dx)| {
        dx.fill(0.0);
        for i in 0..oh {
            let g = &dy[(p * oh + i) * ow..][..ow];
            for row in [2 * i, 2 * i + 1] {
                let out = &mut dx[row * w..][..2 * ow];
                for (pair, &d) in out.chunks_exact_mut(2).zip(g) {
                    pair[0] = 0.25 * d;
                    pair[1] = 0.25 * d;
                }
            }
        }
    });
}

/// A max pooling's shapes: `planes` planes of `h × w`, windows of `kernel` every `stride`,
/// `padding` on each side (padded places are never chosen), less than `kernel`, so that every
/// window holds some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl MaxPool {
    /// The output's `[oh, ow]`: `(side + 2 · padding − kernel) / stride + 1`, rounded down.
    pub fn out(&self) -> [usize; 2] {
        let side = |d: usize, n: usize| {
            (n + 2 * self.padding[d]).saturating_sub(self.kernel[d]) / self.stride[d] + 1
        };
        [side(0, self.h), side(1, self.w)]
    }

    /// The input rows (or columns, `d` = 1) of output row `o`'s window, clipped to the plane.
    fn span(&self, d: usize, o: usize, n: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride[d]).saturating_sub(self.padding[d]);
        start..(o * self.stride[d] + self.kernel[d] - self.padding[d]).min(n)
    }

    /// Panics unless every window holds some input and an index in a plane fits a `u32`.
    fn check(&self) {
        let fits = (0..2).all(|d| self.stride[d] > 0 && self.padding[d] < self.kernel[d]);
        assert!(
            fits && self.h + 2 * self.padding[0] >= self.kernel[0]
                && self.w + 2 * self.padding[1] >= self.kernel[1]
        );
        assert!(self.h * self.w <= u32::MAX as usize);
    }
}

/// `y` = the largest input in each window, `argmax` = its index within the plane: the first
/// largest in row-major order, or the last NaN, as Burn and PyTorch choose, so a diverging run
/// still shows. `y` and `argmax` are `[planes, oh, ow]`.
///
/// In two passes per plane: along each input row, each window's columns (the first largest of
/// the row's part); then down each window's rows, a whole output row at a time (the first row
/// whose part holds the largest: so the first in row-major order). Neither branches on the
/// values, and the second runs along contiguous rows, so it vectorises.
pub fn max_forward(pool: &MaxPool, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let MaxPool { planes, h, w, .. } = *pool;
    pool.check();
    let [oh, ow] = pool.out();
    assert!(x.len() == planes * h * w && y.len() == planes * oh * ow && argmax.len() == y.len());
    let planes_out = y.par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow));
    planes_out.zip(x.par_chunks(h * w)).for_each_init(
        || (vec![0.0; h * ow], vec![0; h * ow], vec![0.0; ow], vec![0; ow]),
        |(row_max, row_at, values, at), ((y, argmax), x)| {
            for (r, x) in x.chunks_exact(w).enumerate() {
                let (m, a) = (&mut row_max[r * ow..][..ow], &mut row_at[r * ow..][..ow]);
                along_row(pool, x, (r * w) as u32, (m, a), (values, at));
            }
            for ((i, y), argmax) in y.chunks_exact_mut(ow).enumerate().zip(argmax.chunks_exact_mut(ow)) {
                let rows = pool.span(0, i, h);
                y.copy_from_slice(&row_max[rows.start * ow..][..ow]);
                argmax.copy_from_slice(&row_at[rows.start * ow..][..ow]);
                for r in rows.start + 1..rows.end {
                    take_larger(y, argmax, &row_max[r * ow..][..ow], &row_at[r * ow..][..ow]);
                }
            }
        },
    );
}

/// The first pass of [`max_forward`] on row `x` (whose first element is `first` in its plane):
/// each window's first largest of its columns into `m`, its index into `at`. The windows that
/// lie wholly inside the row go kernel column by kernel column, all of them at once (no chain
/// of comparisons, each waiting on the one before), into scratch `values` and `indices`; the
/// clipped ones at the ends, one by one.
fn along_row(
    pool: &MaxPool,
    x: &[f32],
    first: u32,
    (m, at): (&mut [f32], &mut [u32]),
    scratch: (&mut [f32], &mut [u32]),
) {
    let (ow, w, [_, s], [_, p], [_, k]) = (m.len(), x.len(), pool.stride, pool.padding, pool.kernel);
    let inside = p.div_ceil(s)..if w + p >= k { ((w + p - k) / s + 1).min(ow) } else { 0 };
    for j in (0..ow).filter(|j| !inside.contains(j)) {
        let cols = pool.span(1, j, w);
        (m[j], at[j]) = first_largest(&x[cols.clone()], first + cols.start as u32);
    }
    if inside.is_empty() {
        return;
    }
    let (values, indices) = (&mut scratch.0[inside.clone()], &mut scratch.1[inside.clone()]);
    for b in 0..k {
        let c0 = inside.start * s + b - p;
        values.iter_mut().zip(x[c0..].iter().step_by(s)).for_each(|(v, &x)| *v = x);
        indices.iter_mut().zip((first + c0 as u32..).step_by(s)).for_each(|(i, c)| *i = c);
        if b == 0 {
            m[inside.clone()].copy_from_slice(values);
            at[inside.clone()].copy_from_slice(indices);
        } else {
            take_larger(&mut m[inside.clone()], &mut at[inside.clone()], values, indices);
        }
    }
}

/// Where `m` is larger than `y`, or NaN, `m` into `y` and `at` into `argmax`.
#[inline(always)]
fn take_larger(y: &mut [f32], argmax: &mut [u32], m: &[f32], at: &[u32]) {
    for (((y, a), &v), &c) in y.iter_mut().zip(argmax.iter_mut()).zip(m).zip(at) {
        // As bit masks, so that it vectorises.
        let take = (((v > *y) | v.is_nan()) as u32).wrapping_neg();
        *y = f32::from_bits((v.to_bits() & take) | (y.to_bits() & !take));
        *a = (c & take) | (*a & !take);
    }
}

/// The first largest of `values` (not empty) and its index, counted from `first`, or the last
/// NaN.
#[inline(always)]
fn first_largest(values: &[f32], first: u32) -> (f32, u32) {
    let (mut best, mut at) = (values[0], first);
    for (c, &v) in (first + 1..).zip(&values[1..]) {
        let take = v > best || v.is_nan();
        best = if take { v } else { best };
        at = if take { c } else { at };
    }
    (best, at)
}

/// The gradient of [`max_forward`]'s input: each output's gradient goes to the input it chose
/// (summed where windows overlap and chose the same one); the rest get none.
pub fn max_backward(pool: &MaxPool, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let MaxPool { planes, h, w, .. } = *pool;
    let [oh, ow] = pool.out();
    assert!(dx.len() == planes * h * w && dy.len() == planes * oh * ow && argmax.len() == dy.len());
    let per_plane = dy.par_chunks(oh * ow).zip(argmax.par_chunks(oh * ow));
    dx.par_chunks_mut(h * w).zip(per_plane).for_each(|(dx, (dy, argmax))| {
        dx.fill(0.0);
        for (&d, &at) in dy.iter().zip(argmax) {
            dx[at as usize] += d;
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_average_and_gradients_spread_in_quarters_with_odd_edges_left_out() {
        let (planes, h, w) = (3, 5, 7);
        let x: Vec<f32> = (0..planes * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0.0; planes * 2 * 3];
        super::forward(&x, planes, h, w, &mut y);
        for p in 0..planes {
            for i in 0..2 {
                for j in 0..3 {
                    let at = |r: usize, c: usize| x[(p * h + r) * w + c];
                    let mean = (at(2 * i, 2 * j)
                        + at(2 * i, 2 * j + 1)
                        + at(2 * i + 1, 2 * j)
                        + at(2 * i + 1, 2 * j + 1))
                        / 4.0;
                    assert!((y[(p * 2 + i) * 3 + j] - mean).abs() < 1e-6);
                }
            }
        }
        let dy: Vec<f32> = (0..y.len()).map(|i| i as f32).collect();
        let mut dx = vec![f32::NAN; x.len()];
        super::backward(&dy, planes, h, w, &mut dx);
        for p in 0..planes {
            for r in 0..h {
                for c in 0..w {
                    let expected = if r < 4 && c < 6 { dy[(p * 2 + r / 2) * 3 + c / 2] / 4.0 } else { 0.0 };
                    assert_eq!(dx[(p * h + r) * w + c], expected, "plane {p} ({r}, {c})");
                }
            }
        }
    }

    /// The largest of each window straight from the definition, over a padded plane where
    /// padding is −∞ and never chosen: `(value, index)`, first largest or last NaN.
    fn max_by_definition(
        pool: &super::MaxPool,
        x: &[f32],
        p: usize,
        i: usize,
        j: usize,
    ) -> (f32, Option<usize>) {
        let mut best: (f32, Option<usize>) = (f32::NEG_INFINITY, None);
        for a in 0..pool.kernel[0] {
            for b in 0..pool.kernel[1] {
                let (r, c) = ((i * pool.stride[0] + a) as isize, (j * pool.stride[1] + b) as isize);
                let (r, c) = (r - pool.padding[0] as isize, c - pool.padding[1] as isize);
                if r < 0 || c < 0 || r >= pool.h as isize || c >= pool.w as isize {
                    continue;
                }
                let at = r as usize * pool.w + c as usize;
                let v = x[p * pool.h * pool.w + at];
                if best.1.is_none() || v > best.0 || v.is_nan() {
                    best = (v, Some(at));
                }
            }
        }
        best
    }

    #[test]
    fn max_pooling_takes_each_windows_first_largest_and_routes_its_gradient_there() {
        // ResNet's 3×3 stride 2 padding 1 (overlapping windows) on odd and even sides, a 2×2
        // stride 2, and a 3×2 window with uneven strides; ties (zeros, as after a ReLU) and NaN.
        for (h, w, kernel, stride, padding) in [
            (7, 6, [3, 3], [2, 2], [1, 1]),
            (8, 8, [3, 3], [2, 2], [1, 1]),
            (5, 7, [2, 2], [2, 2], [0, 0]),
            (6, 5, [3, 2], [1, 2], [1, 0]),
        ] {
            let planes = 3;
            let pool = super::MaxPool { planes, h, w, kernel, stride, padding };
            let mut x: Vec<f32> = (0..planes * h * w).map(|i| (i as f32 * 0.71).sin().max(0.0)).collect();
            x[h * w + 3] = f32::NAN;
            let [oh, ow] = pool.out();
            let (mut y, mut argmax) = (vec![0.0; planes * oh * ow], vec![0; planes * oh * ow]);
            super::max_forward(&pool, &x, &mut y, &mut argmax);
            let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + i as f32).collect();
            let mut expected_dx = vec![0.0; x.len()];
            for p in 0..planes {
                for i in 0..oh {
                    for j in 0..ow {
                        let o = (p * oh + i) * ow + j;
                        let (value, at) = max_by_definition(&pool, &x, p, i, j);
                        assert!(value.to_bits() == y[o].to_bits(), "{pool:?} value at {o}");
                        assert_eq!(Some(argmax[o] as usize), at, "{pool:?} choice at {o}");
                        expected_dx[p * h * w + at.unwrap()] += dy[o];
                    }
                }
            }
            let mut dx = vec![f32::NAN; x.len()];
            super::max_backward(&pool, &dy, &argmax, &mut dx);
            assert_eq!(dx, expected_dx, "{pool:?} gradient");
        }
    }
}
