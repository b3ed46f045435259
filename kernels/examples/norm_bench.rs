//! Times batch normalization in training mode (statistics, the forward with a ReLU, the
//! backward through it, as DenseNet runs them) on the shapes of the book's DenseNet at 96×96, batch 32 (the
//! `densenet:32` workload of `bench/cpu-vs-torch.sh`): per shape, with the rate in GB/s of the
//! floats each pass must read and write, and the sum over a training step.
//!
//! `cargo run --release -p kiln-kernels --example norm_bench [repeats]`

mod common;

use common::{best, values};
use kiln_kernels::batch_norm::{self, Epilogue, Normalized, Relu, Shape};

/// The batch norms of the book's DenseNet at 96×96: the stem's, one before each convolution of
/// the four dense blocks (growth 32) and of the three transitions, and the last.
fn densenet(b: usize) -> Vec<Shape> {
    let mut shapes = vec![[b, 64, 48 * 48]];
    let (mut c, mut side) = (64, 24);
    for block in 0..4 {
        for _ in 0..4 {
            shapes.push([b, c, side * side]);
            c += 32;
        }
        shapes.push([b, c, side * side]);
        if block < 3 {
            (c, side) = (c / 2, side / 2);
        }
    }
    shapes
}

fn main() {
    let repeats: usize = std::env::args().nth(1).map_or(5, |a| a.parse().expect("repeats: a number"));
    println!("{:<18} {:>9} {:>9} {:>9} {:>9}", "shape", "fwd ms", "GB/s", "bwd ms", "GB/s");
    let (mut total_fwd, mut total_bwd) = (0.0, 0.0);
    for shape in densenet(32) {
        let [batch, channels, inner] = shape;
        let n = batch * channels * inner;
        let (x, dy) = (values(n, 1), values(n, 2));
        let (gamma, beta) = (values(channels, 3), values(channels, 4));
        let stats = batch_norm::statistics(&x, shape);
        let norm = Normalized { x: &x, shape, stats: &stats, gamma: &gamma, epsilon: 1e-5 };
        let relu = Epilogue { residual: None, relu: true };
        let fwd = best(repeats, || {
            let stats = batch_norm::statistics(&x, shape);
            let norm = Normalized { stats: &stats, ..norm };
            std::hint::black_box(batch_norm::forward(&norm, &beta, relu));
        });
        let bwd = best(repeats, || {
            std::hint::black_box(batch_norm::backward(&norm, &dy, Relu::Recomputed(&beta), false));
        });
        // Floats moved: forward reads x twice for the statistics, once more and writes y; the
        // backward (its ReLU's mask recomputed from x) reads dy and x twice (sums, then dx)
        // and writes dx.
        let gb = |floats: usize, seconds: f64| (floats * n * 4) as f64 / seconds / 1e9;
        let name = format!("{batch}x{channels}x{inner}");
        println!("{name:<18} {:>9.2} {:>9.1} {:>9.2} {:>9.1}", fwd * 1e3, gb(4, fwd), bwd * 1e3, gb(5, bwd));
        total_fwd += fwd;
        total_bwd += bwd;
    }
    println!("per step: forward {:.1} ms, backward {:.1} ms", total_fwd * 1e3, total_bwd * 1e3);
}
