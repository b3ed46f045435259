//! Times a recurrent layer's forward and backward (`kiln_kernels::sequence`) on the shapes of
//! `bench/cpu-vs-torch.sh`'s language-model workloads: 35 steps, batch 32, 256 hidden units. That
//! is the layer's part of a training step; the input's and output's products, the loss and the
//! update are the rest.
//!
//! `cargo run --release -p kiln-kernels --example lstm_bench [repeats] [steps] [batch] [hidden] [cell]`
//! (`cell`: rnn, gru or lstm; all three without it)

mod common;

use common::{best, values};
use kiln_kernels::sequence::{self, Cell, Layer};

fn main() {
    let arg =
        |i: usize, default: usize| std::env::args().nth(i).map_or(default, |a| a.parse().expect("a number"));
    let (repeats, steps, batch, hidden) = (arg(1, 20), arg(2, 35), arg(3, 32), arg(4, 256));
    println!("{steps} steps, batch {batch}, hidden {hidden}, {} threads", rayon::current_num_threads());
    println!("{:<6} {:>9} {:>9} {:>9}", "cell", "fwd ms", "bwd ms", "GFLOP/s");
    let only = std::env::args().nth(5).map(|c| c.to_lowercase());
    assert!(only.as_deref().is_none_or(|c| ["rnn", "gru", "lstm"].contains(&c)), "cell: rnn, gru or lstm");
    for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
        if only.as_ref().is_some_and(|c| *c != format!("{cell:?}").to_lowercase()) {
            continue;
        }
        let width = cell.gates() * hidden;
        let (u, bias) = (values(hidden * width, 1), values(width, 2));
        let u: Vec<f32> = u.iter().map(|v| v * 0.1).collect();
        let hidden_bias = if cell == Cell::Gru { values(width, 3) } else { Vec::new() };
        let layer = Layer { cell, steps, batch, hidden, u: &u, bias: &bias, hidden_bias: &hidden_bias };
        let (xp, h0) = (values(steps * batch * width, 4), values(batch * hidden, 5));
        let c0 = if cell == Cell::Lstm { values(batch * hidden, 6) } else { Vec::new() };
        let d_out = values(steps * batch * hidden, 7);
        let d_c_last = if cell == Cell::Lstm { values(batch * hidden, 8) } else { Vec::new() };
        let run = sequence::forward(&layer, &xp, &h0, &c0);
        let fwd = best(repeats, || _ = std::hint::black_box(sequence::forward(&layer, &xp, &h0, &c0)));
        let bwd = best(repeats, || {
            _ = std::hint::black_box(sequence::backward(&layer, &run, &h0, &d_out, &d_c_last));
        });
        // The products: one per step forward, one per step and the weight's gradient backward.
        let flops = 2.0 * (steps * batch * hidden * width) as f64 * 3.0;
        println!(
            "{:<6} {:>9.2} {:>9.2} {:>9.1}",
            format!("{cell:?}"),
            fwd * 1e3,
            bwd * 1e3,
            flops / (fwd + bwd) / 1e9
        );
    }
}
