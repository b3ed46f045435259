//! kiln's fused CPU kernels: the pointwise work of the recurrent cells and of the sigmoid, over
//! plain `f32` slices.
//!
//! Burn's CPU backend runs each tensor operation as its own pass over memory and computes
//! `exp` and `tanh` one element at a time through libm; an LSTM step is some twenty such
//! operations forward and more backward, each on a small `[batch, hidden]` tensor. These
//! kernels do one step's gates, state update and their gradients in one pass each, with an
//! `exp` written in plain arithmetic (range reduction and a polynomial, as Cephes' `expf`) that
//! the compiler vectorises. kiln wires them into Burn as custom operations (`src/fused`).
//!
//! Layouts are row-major. A gate block is `hidden` wide, in the order each function names.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `exp(x)`, within a few ulp of libm's `expf` over the range where the result is a normal
/// number; inputs beyond it are clamped. Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·ln2 is exact in the first part (Cody and Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer, which lands in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    // Cephes writes 5.0000001e-1, which is 0.5 in f32 (clippy's excessive_precision).
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2ⁿ from the integer in `shifted`'s mantissa.
    let n_bits = shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) as i32;
    e_r * f32::from_bits(((n_bits + 127) << 23) as u32)
}

/// `1 / (1 + exp(-x))`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 - 2 / (exp(2x) + 1)`: absolute error about 1e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Elements below which a pass runs on one thread.
const PARALLEL_FROM: usize = 1 << 16;
const CHUNK: usize = 1 << 14;

/// `out = sigmoid(x)`.
pub fn sigmoid_forward(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    let run = |(x, out): (&[f32], &mut [f32])| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = sigmoid(v);
        }
    };
    if x.len() < PARALLEL_FROM {
        run((x, out));
    } else {
        x.par_chunks(CHUNK).zip(out.par_chunks_mut(CHUNK)).for_each(run);
    }
}

/// `dx = dy · y · (1 − y)`, from the sigmoid's output `y`.
pub fn sigmoid_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(y.len() == dy.len() && y.len() == dx.len());
    let run = |((y, dy), dx): ((&[f32], &[f32]), &mut [f32])| {
        for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
            *d = g * y * (1.0 - y);
        }
    };
    if y.len() < PARALLEL_FROM {
        run(((y, dy), dx));
    } else {
        y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)).zip(dx.par_chunks_mut(CHUNK)).for_each(run);
    }
}

/// Adds every row of `rows` (`[_, width]`) into `sums` (`[width]`).
fn add_rows(rows: &[f32], sums: &mut [f32]) {
    for row in rows.chunks_exact(sums.len()) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// `n` zeros, written by rayon's threads from 64 Ki floats on (below, by the caller). An
/// output zeroed by the calling thread alone leaves the other cores idle meanwhile: perf on a
/// DenseNet step (batch 32, 2 cores) found 5% of all samples in `memset` on the training thread.
pub fn zeros(n: usize) -> Vec<f32> {
    if n < 1 << 16 {
        return vec![0.0; n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

/// `n` floats, every one of them written by `fill`, without zeroing them first: for a kernel
/// whose output covers its whole buffer, the pass over memory that [`zeros`] makes is wasted
/// (in a DenseNet step, batch norm's outputs and gradients alone are some 250 MB of it).
///
/// # Safety
/// `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's `fill` wrote all `n`, within the capacity.
    unsafe { v.set_len(n) };
    v
}

/// `slice`, read as the floats written into it.
///
/// # Safety
/// Every element of `slice` must have been written.
unsafe fn assume_written(slice: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller wrote every element.
    unsafe { &mut *(slice as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `slice` as floats a kernel may overwrite, for tests that hand a kernel initialised buffers.
#[cfg(test)]
fn as_unwritten(slice: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the kernels only write initialised floats into it.
    unsafe { &mut *(slice as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// One LSTM step into fresh buffers, for tests: `[h, c, acts, tanh_c]` ([`lstm_forward`]).
#[cfg(test)]
fn lstm_step(pre: &[f32], bias: &[f32], c_prev: &[f32]) -> [Vec<f32>; 4] {
    let n = c_prev.len();
    let [mut h, mut c, mut acts, mut tanh_c] = [n, n, 4 * n, n].map(|len| vec![0.0; len]);
    let outputs = (as_unwritten(&mut h), as_unwritten(&mut c), as_unwritten(&mut acts));
    lstm_forward(pre, bias, c_prev, outputs.0, outputs.1, outputs.2, as_unwritten(&mut tanh_c));
    [h, c, acts, tanh_c]
}

pub mod batch_norm;
mod cells;
pub mod conv;
mod linalg;
pub mod pool;
pub mod sequence;
pub mod simd;

pub use cells::*;

#[cfg(test)]
mod tests;
