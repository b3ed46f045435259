//! Batch normalization in training mode, forward and backward, over `[batch, channels, inner]`
//! (`inner` is the spatial size after a convolution, 1 after a linear layer).
//!
//! Burn's generic batch norm moves the channel axis first (`swap_dims` then `reshape`, a copy of
//! the whole activation) for each of its per-channel means, forward and backward. These read the
//! activation where it lies: one pass per channel for the statistics, one pass over the batch
//! for the output, split between rayon's threads.

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

/// `Σ f(a[i], b[i])`, in 16 lanes.
#[inline(always)]
fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (x, y): (&[f32; 16], &[f32; 16]) = (x.try_into().expect("16"), y.try_into().expect("16"));
        for ((lane, &u), &v) in lanes.iter_mut().zip(x).zip(y) {
            *lane += f(u, v);
        }
    }
    let rest: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&u, &v)| f(u, v)).sum();
    lanes.iter().sum::<f32>() + rest
}

/// Per channel, `sum(blocks of x, blocks of y, channel)` added over the batch in f64; `sum` gets
/// one contiguous block (`inner` values) of each buffer at a time.
fn per_channel(
    shape: Shape,
    x: &[f32],
    y: &[f32],
    sum: impl Fn(&[f32], &[f32], usize) -> f32 + Sync,
) -> Vec<f64> {
    let [batch, channels, inner] = shape;
    let work = |ch: usize| -> f64 {
        (0..batch)
            .map(|b| {
                let span = (b * channels + ch) * inner..(b * channels + ch + 1) * inner;
                sum(&x[span.clone()], y.get(span).unwrap_or(&[]), ch) as f64
            })
            .sum()
    };
    if batch * channels * inner < 1 << 15 {
        (0..channels).map(work).collect()
    } else {
        (0..channels).into_par_iter().map(work).collect()
    }
}

/// For each contiguous block of one channel, `write(out block, x block, y block, channel)`, one
/// batch item per task.
fn per_block(
    shape: Shape,
    out: &mut [f32],
    x: &[f32],
    y: &[f32],
    write: impl Fn(&mut [f32], &[f32], &[f32], usize) + Sync,
) {
    let [_, channels, inner] = shape;
    let item = channels * inner;
    out.par_chunks_mut(item).enumerate().for_each(|(b, out)| {
        for (ch, block) in out.chunks_mut(inner).enumerate() {
            let span = b * item + ch * inner..b * item + (ch + 1) * inner;
            write(block, &x[span.clone()], y.get(span).unwrap_or(&[]), ch);
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
    let sums = per_channel(shape, x, &[], |block, _, _| sum_map(block, |v| v));
    let mean: Vec<f32> = sums.into_iter().map(|s| (s / count) as f32).collect();
    let variance =
        per_channel(shape, x, &[], |block, _, ch| sum_map(block, |v| (v - mean[ch]) * (v - mean[ch])));
    Statistics { mean, variance: variance.into_iter().map(|s| (s / count) as f32).collect() }
}

/// `1 / sqrt(variance + epsilon)` per channel.
fn inverse_std(stats: &Statistics, epsilon: f32) -> Vec<f32> {
    stats.variance.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect()
}

/// `y = (x − mean) / sqrt(variance + epsilon) · gamma + beta`, per channel.
pub fn forward(
    x: &[f32],
    shape: Shape,
    stats: &Statistics,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
) {
    assert!(y.len() == x.len() && gamma.len() == shape[1] && beta.len() == shape[1]);
    let inv_std = inverse_std(stats, epsilon);
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = beta.iter().zip(&scale).zip(&stats.mean).map(|((b, s), m)| b - m * s).collect();
    per_block(shape, y, x, &[], |out, x, _, ch| {
        let (scale, shift) = (scale[ch], shift[ch]);
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * scale + shift);
    });
}

/// The gradients of [`forward`]'s `x`, `gamma` and `beta` from `dy`, the batch statistics
/// included (the mean and variance depend on `x`).
pub struct Gradients {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// The backward of [`forward`] with the statistics it used.
pub fn backward(
    x: &[f32],
    shape: Shape,
    stats: &Statistics,
    gamma: &[f32],
    epsilon: f32,
    dy: &[f32],
) -> Gradients {
    let [batch, channels, inner] = shape;
    assert!(x.len() == dy.len() && x.len() == batch * channels * inner && gamma.len() == channels);
    let inv_std = inverse_std(stats, epsilon);
    let mean = &stats.mean;
    let d_beta = per_channel(shape, dy, &[], |dy, _, _| sum_map(dy, |d| d));
    let d_gamma =
        per_channel(shape, dy, x, |dy, x, ch| sum_map2(dy, x, |d, v| d * (v - mean[ch])) * inv_std[ch]);
    let count = (batch * inner) as f64;
    // dx = γ·σ⁻¹·(dy − mean(dy) − x̂·mean(dy·x̂)), with x̂ = (x − μ)·σ⁻¹: per channel an affine
    // function p·dy + q·x + r.
    let coefficients: Vec<[f32; 3]> = (0..channels)
        .map(|ch| {
            let (mean_dy, mean_dy_xhat) = ((d_beta[ch] / count) as f32, (d_gamma[ch] / count) as f32);
            let p = gamma[ch] * inv_std[ch];
            let q = -p * inv_std[ch] * mean_dy_xhat;
            [p, q, -p * mean_dy - q * mean[ch]]
        })
        .collect();
    let mut dx = crate::zeros(x.len());
    per_block(shape, &mut dx, dy, x, |out, dy, x, ch| {
        let [p, q, r] = coefficients[ch];
        out.iter_mut().zip(dy).zip(x).for_each(|((o, &d), &v)| *o = p * d + q * v + r);
    });
    Gradients {
        x: dx,
        gamma: d_gamma.into_iter().map(|s| s as f32).collect(),
        beta: d_beta.into_iter().map(|s| s as f32).collect(),
    }
}
