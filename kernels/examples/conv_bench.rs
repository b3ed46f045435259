//! Times the convolution kernels on the shapes of the book's ResNet-18 or DenseNet at 96×96,
//! batch 32, or LeNet at 28×28, batch 256 (the `resnet18:32`, `densenet:32` and `lenet_bn:256`
//! workloads of `bench/cpu-vs-torch.sh`): forward,
//! and backward with the input's gradient, per layer, with the rate in GFLOP/s (a multiply-add
//! counts two), and the sum over a training step.
//!
//! `cargo run --release -p kiln-kernels --example conv_bench [resnet18|densenet|lenet_bn] [repeats] [layer]`
//!
//! `layer`, when given, keeps only the layers whose names contain it (to profile one).

mod common;

use common::{best, values};
use kiln_kernels::conv::{self, Conv};

fn conv(batch: usize, c_in: usize, side: usize, c_out: usize, kernel: usize, stride: usize) -> Conv {
    let pad = kernel / 2;
    Conv { batch, c_in, h: side, w: side, c_out, kernel: [kernel; 2], stride: [stride; 2], padding: [pad; 2] }
}

/// ResNet-18's convolutions: (name, shapes, how many times a step runs it).
fn resnet18(b: usize) -> Vec<(String, Conv, usize)> {
    let mut layers = vec![("7x7 s2 1->64 @96".to_string(), conv(b, 1, 96, 64, 7, 2), 1)];
    layers.push(("3x3 64->64 @24".into(), conv(b, 64, 24, 64, 3, 1), 4));
    for (c, side) in [(64, 24), (128, 12), (256, 6)] {
        layers.push((format!("3x3 s2 {c}->{} @{side}", 2 * c), conv(b, c, side, 2 * c, 3, 2), 1));
        layers.push((format!("1x1 s2 {c}->{} @{side}", 2 * c), conv(b, c, side, 2 * c, 1, 2), 1));
        layers.push((
            format!("3x3 {}->{} @{}", 2 * c, 2 * c, side / 2),
            conv(b, 2 * c, side / 2, 2 * c, 3, 1),
            3,
        ));
    }
    layers
}

/// The book's DenseNet's convolutions (growth 32, four blocks of four, transitions halving).
fn densenet(b: usize) -> Vec<(String, Conv, usize)> {
    let mut layers = vec![("7x7 s2 1->64 @96".to_string(), conv(b, 1, 96, 64, 7, 2), 1)];
    let (mut c, mut side) = (64, 24);
    for block in 0..4 {
        for _ in 0..4 {
            layers.push((format!("3x3 {c}->32 @{side}"), conv(b, c, side, 32, 3, 1), 1));
            c += 32;
        }
        if block < 3 {
            layers.push((format!("1x1 {c}->{} @{side}", c / 2), conv(b, c, side, c / 2, 1, 1), 1));
            (c, side) = (c / 2, side / 2);
        }
    }
    layers
}

/// LeNet's two convolutions (the book's, with BatchNorm) at batch 256, 28×28.
fn lenet(b: usize) -> Vec<(String, Conv, usize)> {
    let mut second = conv(b, 6, 14, 16, 5, 1);
    second.padding = [0, 0];
    vec![
        ("5x5 1->6 @28".to_string(), conv(b, 1, 28, 6, 5, 1), 1),
        ("5x5 6->16 @14 no pad".to_string(), second, 1),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "resnet18".into());
    let repeats: usize = args.next().map_or(5, |a| a.parse().expect("repeats: a number"));
    let mut layers = match model.as_str() {
        "resnet18" => resnet18(32),
        "densenet" => densenet(32),
        "lenet_bn" => lenet(256),
        other => panic!("model: resnet18, densenet or lenet_bn, not {other}"),
    };
    if let Some(only) = args.next() {
        layers.retain(|(name, _, _)| name.contains(&only));
    }
    println!("{:<22} {:>9} {:>9} {:>9} {:>9}", "layer", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s");
    let (mut total_fwd, mut total_bwd) = (0.0, 0.0);
    for (name, c, times) in &layers {
        let (c, times) = (*c, *times);
        let [oh, ow] = c.out();
        let x = values(c.batch * c.c_in * c.h * c.w, 1);
        let w = values(c.c_out * c.c_in * c.kernel[0] * c.kernel[1], 2);
        let bias = values(c.c_out, 3);
        let dy = values(c.batch * c.c_out * oh * ow, 4);
        let flop = 2.0 * (c.batch * c.c_out * oh * ow * c.c_in * c.kernel[0] * c.kernel[1]) as f64;
        let fwd = best(repeats, || {
            std::hint::black_box(conv::forward(&c, &x, &w, &bias));
        });
        let input_grad = c.c_in > 1;
        let bwd = best(repeats, || {
            std::hint::black_box(conv::backward(&c, &x, &w, &dy, input_grad));
        });
        let bwd_flop = flop * if input_grad { 2.0 } else { 1.0 };
        println!(
            "{name:<22} {:>9.2} {:>9.1} {:>9.2} {:>9.1}",
            fwd * 1e3,
            flop / fwd / 1e9,
            bwd * 1e3,
            bwd_flop / bwd / 1e9
        );
        total_fwd += fwd * times as f64;
        total_bwd += bwd * times as f64;
    }
    println!(
        "per step (each layer as often as the model runs it): forward {:.1} ms, backward {:.1} ms",
        total_fwd * 1e3,
        total_bwd * 1e3
    );
}
