//! Batch normalization in training mode, forward and backward, over `[batch, channels, inner]`
//! (`inner` is the spatial size after a convolution, 1 after a linear layer).
//!
//! Burn's generic batch norm moves the channel axis first (`swap_dims` then `reshape`, a copy of
//! the whole activation) for each of its per-channel means, forward and backward. These read the
//! activation where it lies: one pass per channel for the statistics, one pass over the batch
//! for the output, split between rayon's threads.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

/// A batch's shape: `[batch, channels, inner]`.
pub type Shape = [usize; 3];

/// `Σ f(a[i])`, in 16 lanes so that it vectorises.
#[inline(always)]
fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = a.chunks_exact(16);
    for chunk in &mut chunks {
        let chunk: &[f32; 16] = chunk.try_into().expect("chunks of 16");
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// `Σ f(a[i], b[i], c[i])`, two sums at once, in 16 lanes each.
#[inline(always)]
fn sum_map3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> [f32; 2]) -> [f32; 2] {
    let mut lanes = [[0.0f32; 16]; 2];
    let (mut ca, mut cb, mut cc) = (a.chunks_exact(16), b.chunks_exact(16), c.chunks_exact(16));
    for ((x, y), z) in (&mut ca).zip(&mut cb).zip(&mut cc) {
        let (x, y, z): (&[f32; 16], &[f32; 16], &[f32; 16]) =
            (x.try_into().expect("16"), y.try_into().expect("16"), z.try_into().expect("16"));
        for i in 0..16 {
            let [s, t] = f(x[i], y[i], z[i]);
            lanes[0][i] += s;
            lanes[1][i] += t;
        }
    }
    let mut total = lanes.map(|l| l.iter().sum::<f32>());
    for ((&x, &y), &z) in ca.remainder().iter().zip(cb.remainder()).zip(cc.remainder()) {
        let [s, t] = f(x, y, z);
        total[0] += s;
        total[1] += t;
    }
    total
}

/// Per channel, `sum(span, channel)` added over the batch in f64, where `span` is the range of
/// one contiguous block (`inner` values) of that channel in the batch's buffers.
///
/// The blocks are summed item by item, each item's channels in memory order, and the items'
/// sums then added per channel in batch order: the same additions, in the same order, as
/// channel by channel, but each thread streams through memory instead of hopping a whole item
/// ahead for each block. On DenseNet's batch norms the hops left the sums waiting on memory.
fn per_channel<const N: usize>(
    shape: Shape,
    sum: impl Fn(Range<usize>, usize) -> [f32; N] + Sync,
) -> Vec<[f64; N]> {
    let [batch, channels, inner] = shape;
    let item = |(b, sums): (usize, &mut [[f32; N]])| {
        for (ch, s) in sums.iter_mut().enumerate() {
            let start = (b * channels + ch) * inner;
            *s = sum(start..start + inner, ch);
        }
    };
    let mut sums = vec![[0.0f32; N]; batch * channels];
    if batch * channels * inner < 1 << 15 {
        sums.chunks_mut(channels.max(1)).enumerate().for_each(item);
    } else {
        sums.par_chunks_mut(channels.max(1)).enumerate().for_each(item);
    }
    let mut totals = vec![[0.0f64; N]; channels];
    for item_sums in sums.chunks(channels.max(1)) {
        for (total, s) in totals.iter_mut().zip(item_sums) {
            for (t, &v) in total.iter_mut().zip(s) {
                *t += v as f64;
            }
        }
    }
    totals
}

/// For each contiguous block of one channel, `write(out block, span, channel)`, where `span` is
/// the block's range in the batch's buffers; one batch item per task.
fn per_block<T: Send>(shape: Shape, out: &mut [T], write: impl Fn(&mut [T], Range<usize>, usize) + Sync) {
    let [_, channels, inner] = shape;
    let item = channels * inner;
    out.par_chunks_mut(item).enumerate().for_each(|(b, out)| {
        for (ch, block) in out.chunks_mut(inner).enumerate() {
            let start = b * item + ch * inner;
            write(block, start..start + inner, ch);
        }
    });
}

/// The batch's statistics: its mean and biased variance per channel (what running statistics
/// are fed), from which the output is normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

/// The mean and biased variance of each channel (two passes: the variance of the centred
/// values, as Burn and PyTorch compute it).
pub fn statistics(x: &[f32], shape: Shape) -> Statistics {
    let [batch, channels, inner] = shape;
    assert!(x.len() == batch * channels * inner && batch * inner > 0);
    let count = (batch * inner) as f64;
    let sums = per_channel(shape, |span, _| [sum_map(&x[span], |v| v)]);
    let mean: Vec<f32> = sums.into_iter().map(|[s]| (s / count) as f32).collect();
    let variance = per_channel(shape, |span, ch| [sum_map(&x[span], |v| (v - mean[ch]) * (v - mean[ch]))]);
    Statistics { mean, variance: variance.into_iter().map(|[s]| (s / count) as f32).collect() }
}

/// `1 / sqrt(variance + epsilon)` per channel.
fn inverse_std(stats: &Statistics, epsilon: f32) -> Vec<f32> {
    stats.variance.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect()
}

/// Per channel, the `scale` and `shift` that normalize and apply `gamma` and `beta` in one
/// multiply-add, `x · scale + shift`.
fn affine(stats: &Statistics, gamma: &[f32], beta: &[f32], epsilon: f32) -> [Vec<f32>; 2] {
    let inv_std = inverse_std(stats, epsilon);
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift = beta.iter().zip(&scale).zip(&stats.mean).map(|((b, s), m)| b - m * s).collect();
    [scale, shift]
}

/// What the forward applies after the normalization, in the same pass: `relu(bn(x) + residual)`,
/// each part optional — a ResNet block's `relu(bn2(…) + shortcut)`, the `relu(bn(x))` before each
/// of DenseNet's convolutions. A ReLU keeps NaN, as Burn's does, so a diverging run still shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

/// `max(v, 0)`, NaN kept.
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v }
}

/// A normalization's input, its shape, the statistics it is normalized with, `gamma` and
/// `epsilon`: what the forward and its backward both read.
#[derive(Debug, Clone, Copy)]
pub struct Normalized<'a> {
    pub x: &'a [f32],
    pub shape: Shape,
    pub stats: &'a Statistics,
    pub gamma: &'a [f32],
    pub epsilon: f32,
}

/// `y = epilogue((x − mean) / sqrt(variance + epsilon) · gamma + beta)`, per channel.
pub fn forward(n: &Normalized<'_>, beta: &[f32], epilogue: Epilogue<'_>) -> Vec<f32> {
    let Normalized { x, shape, .. } = *n;
    assert!(x.len() == shape.iter().product::<usize>());
    // SAFETY: `per_block` hands out every block of `y` once, and each is written whole.
    unsafe { crate::written(x.len(), |y| normalize_into(n, beta, epilogue, y)) }
}

/// [`forward`] into `y`, every element written.
fn normalize_into(n: &Normalized<'_>, beta: &[f32], epilogue: Epilogue<'_>, y: &mut [MaybeUninit<f32>]) {
    let Normalized { x, shape, stats, gamma, epsilon } = *n;
    assert!(y.len() == x.len() && gamma.len() == shape[1] && beta.len() == shape[1]);
    assert!(epilogue.residual.is_none_or(|r| r.len() == x.len()));
    let [scale, shift] = affine(stats, gamma, beta, epsilon);
    let affine = |span: Range<usize>, ch: usize| {
        let (scale, shift) = (scale[ch], shift[ch]);
        x[span].iter().map(move |&v| v * scale + shift)
    };
    match (epilogue.residual, epilogue.relu) {
        (None, false) => per_block(shape, y, |out, span, ch| {
            out.iter_mut().zip(affine(span, ch)).for_each(|(o, v)| _ = o.write(v));
        }),
        (None, true) => per_block(shape, y, |out, span, ch| {
            out.iter_mut().zip(affine(span, ch)).for_each(|(o, v)| _ = o.write(relu(v)));
        }),
        (Some(res), relu_too) => per_block(shape, y, |out, span, ch| {
            let sums = affine(span.clone(), ch).zip(&res[span]);
            if relu_too {
                out.iter_mut().zip(sums).for_each(|(o, (v, &r))| _ = o.write(relu(v + r)));
            } else {
                out.iter_mut().zip(sums).for_each(|(o, (v, &r))| _ = o.write(v + r));
            }
        }),
    }
}

/// The gradients of [`forward`]'s `x`, `gamma` and `beta` from `dy`, the batch statistics
/// included (the mean and variance depend on `x`), and of the epilogue's `residual`: where the
/// epilogue had a ReLU, `dy` masked by it (`None` without one: the residual's gradient is `dy`).
pub struct Gradients {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub residual: Option<Vec<f32>>,
}

/// `dy` where the ReLU passed its input (`out`, its output, above zero or NaN), else 0.
#[inline(always)]
fn through_relu(d: f32, out: f32) -> f32 {
    if out <= 0.0 { 0.0 } else { d }
}

/// Where the forward's ReLU, if it had one, let the gradient through.
#[derive(Debug, Clone, Copy)]
pub enum Relu<'a> {
    /// The forward had no ReLU.
    None,
    /// Where the forward's output (given) is above zero or NaN.
    Output(&'a [f32]),
    /// Where `x · scale + shift`, recomputed from the forward's `beta` (given) exactly as the
    /// forward computed it, is above zero or NaN: for a ReLU without a residual, the same
    /// mask without reading the output, a third of the backward's reads.
    Recomputed(&'a [f32]),
}

/// The backward of [`forward`] from `dy`. `relu` says where the epilogue's ReLU let the
/// gradient through; `residual`, whether the epilogue had a residual (then `relu` may not be
/// [`Relu::Recomputed`]).
pub fn backward(n: &Normalized<'_>, dy: &[f32], relu: Relu<'_>, residual: bool) -> Gradients {
    match relu {
        Relu::None => backward_masked(n, dy, dy, |d, _, _| d, false),
        Relu::Output(out) => backward_masked(n, dy, out, |d, y, _| through_relu(d, y), residual),
        Relu::Recomputed(beta) => {
            assert!(!residual, "a ReLU after a residual is recomputed from the output only");
            let [scale, shift] = affine(n.stats, n.gamma, beta, n.epsilon);
            let mask = |d, v: f32, ch: usize| through_relu(d, v * scale[ch] + shift[ch]);
            backward_masked(n, dy, n.x, mask, false)
        }
    }
}

/// [`backward`] for the upstream gradient `mask(dy, out, channel)`, computed where it is read
/// (`out` may be `x` itself, read twice over the same cache lines). With `keep_masked`, that
/// gradient is also returned as the residual's.
fn backward_masked(
    n: &Normalized<'_>,
    dy: &[f32],
    out: &[f32],
    mask: impl Fn(f32, f32, usize) -> f32 + Sync + Copy,
    keep_masked: bool,
) -> Gradients {
    let Normalized { x, shape, stats, gamma, epsilon } = *n;
    let [batch, channels, inner] = shape;
    assert!(x.len() == dy.len() && out.len() == dy.len() && x.len() == batch * channels * inner);
    assert!(gamma.len() == channels);
    let inv_std = inverse_std(stats, epsilon);
    let mean = &stats.mean;
    // Per channel, in one pass: Σ g and Σ g·(x − μ), with g the masked upstream gradient.
    let sums = per_channel(shape, |span, ch| {
        sum_map3(&dy[span.clone()], &x[span.clone()], &out[span], |d, v, o| {
            let g = mask(d, o, ch);
            [g, g * (v - mean[ch])]
        })
    });
    let (d_beta, d_gamma): (Vec<f64>, Vec<f64>) =
        sums.iter().enumerate().map(|(ch, [b, g])| (*b, g * inv_std[ch] as f64)).unzip();
    let count = (batch * inner) as f64;
    // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)·σ⁻¹: per channel an affine
    // function p·g + q·x + r.
    let coefficients: Vec<[f32; 3]> = (0..channels)
        .map(|ch| {
            let (mean_g, mean_g_xhat) = ((d_beta[ch] / count) as f32, (d_gamma[ch] / count) as f32);
            let p = gamma[ch] * inv_std[ch];
            let q = -p * inv_std[ch] * mean_g_xhat;
            [p, q, -p * mean_g - q * mean[ch]]
        })
        .collect();
    // SAFETY (both): `per_block` hands out every block once, and each is written whole.
    let dx = unsafe {
        crate::written(x.len(), |dx| {
            per_block(shape, dx, |o, span, ch| {
                let [p, q, r] = coefficients[ch];
                let terms = dy[span.clone()].iter().zip(&x[span.clone()]).zip(&out[span]);
                o.iter_mut()
                    .zip(terms)
                    .for_each(|(o, ((&d, &v), &y))| _ = o.write(p * mask(d, y, ch) + q * v + r));
            })
        })
    };
    let residual = keep_masked.then(|| unsafe {
        crate::written(dy.len(), |masked| {
            per_block(shape, masked, |o, span, ch| {
                let terms = dy[span.clone()].iter().zip(&out[span]);
                o.iter_mut().zip(terms).for_each(|(o, (&d, &y))| _ = o.write(mask(d, y, ch)));
            })
        })
    });
    Gradients {
        x: dx,
        gamma: d_gamma.into_iter().map(|s| s as f32).collect(),
        beta: d_beta.into_iter().map(|s| s as f32).collect(),
        residual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relu_mask_recomputed_from_x_gives_the_gradients_the_output_gives() {
        // Blocks of 1, 9 and 37: the vector loops and their remainders; zeros and a NaN where
        // the ReLU decides.
        for (batch, channels, inner) in [(6, 5, 1), (4, 3, 9), (2, 2, 37)] {
            let shape = [batch, channels, inner];
            let n = batch * channels * inner;
            let mut x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
            x[n / 2] = f32::NAN;
            let dy: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.91).cos()).collect();
            let (gamma, beta) = (vec![0.5, -1.25, 2.0, 1.0, 0.75], vec![0.1, 0.0, -0.2, 0.3, 0.05]);
            let (gamma, beta) = (&gamma[..channels], &beta[..channels]);
            let stats = statistics(&x[..n / 2], [batch / 2, channels, inner]);
            let norm = Normalized { x: &x, shape, stats: &stats, gamma, epsilon: 1e-5 };
            let out = forward(&norm, beta, Epilogue { residual: None, relu: true });
            assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
            let from_output = backward(&norm, &dy, Relu::Output(&out), false);
            let recomputed = backward(&norm, &dy, Relu::Recomputed(beta), false);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&from_output.x), bits(&recomputed.x), "{shape:?}");
            assert_eq!(bits(&from_output.gamma), bits(&recomputed.gamma), "{shape:?}");
            assert_eq!(bits(&from_output.beta), bits(&recomputed.beta), "{shape:?}");
        }
    }

    #[test]
    fn batch_statistics_match_the_two_pass_definition_far_from_zero() {
        // A mean far above the spread (as after a convolution with a large bias) is where a
        // one-pass sum of squares would lose its digits; blocks of 1 (after a linear layer), 7 and 40.
        for (batch, channels, inner) in [(9, 4, 1), (5, 3, 7), (6, 2, 40)] {
            let x: Vec<f32> =
                (0..batch * channels * inner).map(|i| 1000.0 + ((i as f32) * 0.7).sin() * 0.01).collect();
            let Statistics { mean, variance } = statistics(&x, [batch, channels, inner]);
            for ch in 0..channels {
                let values: Vec<f64> = (0..batch)
                    .flat_map(|b| x[(b * channels + ch) * inner..(b * channels + ch + 1) * inner].iter())
                    .map(|&v| f64::from(v))
                    .collect();
                let m = values.iter().sum::<f64>() / values.len() as f64;
                let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
                assert!((f64::from(mean[ch]) - m).abs() <= 1e-4, "mean {} vs {m}", mean[ch]);
                assert!(
                    (f64::from(variance[ch]) - var).abs() <= 1e-4 * var,
                    "variance {} vs {var}",
                    variance[ch]
                );
            }
        }
    }
}
