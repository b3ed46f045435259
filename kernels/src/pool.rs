//! 2×2 average pooling with stride 2 (LeNet's), forward and backward, over `[planes, h, w]`.
//! An odd last row or column is left out, as a 2×2 window with stride 2 and no padding does.
//!
//! Burn's CPU pooling runs every window through a general 3-D loop; this one reads each plane
//! once, row pair by row pair, and splits the planes between rayon's threads.

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
}
