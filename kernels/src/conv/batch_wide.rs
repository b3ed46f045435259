//! The backward on small maps, batch-wide: where a sample has fewer output positions than
//! gemm's tile and there are channels enough (ResNet-18's last two stages at 96×96), the whole
//! batch's patches form one matrix, position-major (`[batch · p, k]`), and each product is split
//! between threads by its own output rows: the weight's gradient by output channels, the
//! patches' gradient by samples.
//!
//! Split by samples instead, each thread made a partial weight gradient (`c_out · k` floats, 9 MB
//! for ResNet-18's 512 channels) to be summed with the others, its products only a group of
//! samples deep, and the groups divided unevenly between the threads (three groups of 14, 14 and
//! 4 samples on two cores).

use rayon::prelude::*;

use super::{Conv, Gradients};
use crate::linalg::{matmul, matmul_columns_transposed, transpose};

/// Whether [`backward`] takes this convolution: fewer output positions a sample than gemm's
/// tile, and output channels enough to fill it. With fewer (DenseNet's 32), the grouped
/// products' transposed weight gradient needs no transposed patches and measured faster:
/// `kernels/examples/conv_bench`, DenseNet's 3×3 112→32 at 6×6, backward 2.0–2.2 ms grouped,
/// 3.4–3.5 batch-wide.
pub(super) fn applies(conv: &Conv) -> bool {
    conv.p() < super::TILE_ROWS && conv.c_out >= super::TILE_ROWS
}

/// [`super::backward`] batch-wide.
pub(super) fn backward(conv: &Conv, x: &[f32], weight: &[f32], dy: &[f32], input_grad: bool) -> Gradients {
    let (k, p, c_out, batch) = (conv.k(), conv.p(), conv.c_out, conv.batch);
    let (n, sample) = (batch * p, conv.c_in * conv.h * conv.w);
    let threads = rayon::current_num_threads().max(1);
    // `dy` as `[c_out, batch · p]`, and the bias's gradient, its row sums.
    let mut dy_rows = vec![0.0; c_out * n];
    let mut d_bias = vec![0.0; c_out];
    dy_rows.par_chunks_mut(n.max(1)).zip(d_bias.par_iter_mut()).enumerate().for_each(|(co, (row, db))| {
        for (b, row) in row.chunks_exact_mut(p).enumerate() {
            row.copy_from_slice(&dy[(b * c_out + co) * p..][..p]);
        }
        *db = row.iter().sum();
    });
    // Sample b's patches, `[p, k]`, from its im2col's `[k, p]`.
    let mut patches = vec![0.0; n * k];
    patches.par_chunks_mut((p * k).max(1)).enumerate().for_each_init(
        || vec![0.0; k * p],
        |col, (b, block)| {
            conv.im2col(&x[b * sample..(b + 1) * sample], col, p, 0);
            transpose(col, k, p, block);
        },
    );
    // dW = dy · patches, each thread its own output channels.
    let mut d_weight = vec![0.0; c_out * k];
    let rows = c_out.div_ceil(threads);
    d_weight.par_chunks_mut((rows * k).max(1)).enumerate().for_each(|(t, dw)| {
        let m = dw.len() / k;
        matmul([m, n, k], (&dy_rows[t * rows * n..][..m * n], false), (&patches, false), dw, false, false);
    });
    let dx = input_grad.then(|| input_gradient(conv, weight, &dy_rows, threads));
    Gradients { x: dx, weight: d_weight, bias: d_bias }
}

/// The input's gradient from `dy_rows` (`[c_out, batch · p]`): the patches' gradient,
/// `dyᵀ · W`, each thread for its own samples, summed back into each input (col2im).
fn input_gradient(conv: &Conv, weight: &[f32], dy_rows: &[f32], threads: usize) -> Vec<f32> {
    let (k, p, batch, sample) = (conv.k(), conv.p(), conv.batch, conv.c_in * conv.h * conv.w);
    let mut dx = crate::zeros(batch * sample);
    let per = batch.div_ceil(threads);
    dx.par_chunks_mut((per * sample).max(1)).enumerate().for_each(|(t, dx)| {
        let first = t * per * p;
        let positions = first..first + dx.len() / sample * p;
        let mut d_patches = vec![0.0; positions.len() * k];
        matmul_columns_transposed((dy_rows, batch * p, positions), (weight, k), &mut d_patches);
        let mut d_col = vec![0.0; k * p];
        for (s, dx) in dx.chunks_exact_mut(sample).enumerate() {
            transpose(&d_patches[s * p * k..][..p * k], p, k, &mut d_col);
            conv.col2im(&d_col, p, 0, dx);
        }
    });
    dx
}
