//! The fused kernels on flex against the same equations in Burn's tensor operations, on the same
//! device: values, and every input's gradient through autodiff.

use burn::tensor::{Device, Tensor, TensorData, activation};

use super::*;

fn values(n: usize, seed: f32, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + seed) * 0.613).sin() * scale).collect()
}

/// A tracked 1-, 2- or 3-dimensional input, kept as its values and shape.
#[derive(Clone)]
struct Input(Vec<f32>, Vec<usize>);

impl Input {
    fn new(shape: &[usize], seed: f32, scale: f32) -> Self {
        Self(values(shape.iter().product(), seed, scale), shape.to_vec())
    }

    /// The input, flat and tracked, and shaped for the layer (the gradient reaches the flat one).
    fn tensor<const D: usize>(&self, device: &Device) -> (Tensor<1>, Tensor<D>) {
        let flat =
            Tensor::<1>::from_data(TensorData::new(self.0.clone(), [self.0.len()]), device).require_grad();
        let shape: [usize; D] = self.1.clone().try_into().expect("the rank the layer takes");
        (flat.clone(), flat.reshape(shape))
    }
}

/// A layer run on fresh tracked copies of `inputs`: its outputs, flattened, and the gradient of
/// a loss that weighs every output differently with respect to each input, flattened.
fn run(
    device: &Device,
    inputs: &[Input],
    layer: &dyn Fn(&[Input], &Device) -> (Vec<Tensor<1>>, Vec<Tensor<1>>),
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let (outputs, tracked) = layer(inputs, device);
    let loss = outputs
        .iter()
        .enumerate()
        .map(|(k, o)| o.clone().mul_scalar((k + 1) as f32).sin().sum())
        .reduce(|a, b| a + b)
        .unwrap();
    let grads = loss.backward();
    let flat: Vec<f32> =
        outputs.iter().flat_map(|o| o.clone().into_data().iter::<f32>().collect::<Vec<_>>()).collect();
    let grads = tracked
        .iter()
        .map(|t| t.grad(&grads).expect("a gradient").into_data().iter::<f32>().collect())
        .collect();
    (flat, grads)
}

fn assert_close(
    name: &str,
    (out_a, grads_a): (Vec<f32>, Vec<Vec<f32>>),
    (out_b, grads_b): (Vec<f32>, Vec<Vec<f32>>),
) {
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert_eq!(out_a.len(), out_b.len());
    assert!(diff(&out_a, &out_b) < 1e-5, "{name}: outputs differ by {}", diff(&out_a, &out_b));
    for (i, (a, b)) in grads_a.iter().zip(&grads_b).enumerate() {
        assert!(diff(a, b) < 1e-4, "{name}: gradient of input {i} differs by {}", diff(a, b));
    }
}

/// Flattens a tensor for comparison.
fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    t.reshape([-1])
}

#[test]
fn the_fused_layers_match_burns_operations_in_value_and_gradient() {
    let device = Device::flex().autodiff();
    let (steps, batch, hidden) = (4, 3, 5);
    let lstm_inputs = [
        Input::new(&[steps, batch, 4 * hidden], 0.0, 1.5),
        Input::new(&[hidden, 4 * hidden], 1.0, 0.5),
        Input::new(&[4 * hidden], 2.0, 0.3),
        Input::new(&[batch, hidden], 3.0, 0.5),
        Input::new(&[batch, hidden], 4.0, 0.5),
    ];
    let lstm_with =
        |f: fn(Tensor<3>, Tensor<2>, Tensor<1>, Tensor<2>, Tensor<2>) -> (Tensor<3>, Tensor<2>)| {
            move |i: &[Input], d: &Device| {
                let ((a, xp), (b, u), (c, bias), (e, h0), (g, c0)) = (
                    i[0].tensor::<3>(d),
                    i[1].tensor::<2>(d),
                    i[2].tensor::<1>(d),
                    i[3].tensor::<2>(d),
                    i[4].tensor::<2>(d),
                );
                let (h, cell) = f(xp, u, bias, h0, c0);
                (vec![flat(h), flat(cell)], vec![a, b, c, e, g])
            }
        };
    assert_close(
        "lstm",
        run(&device, &lstm_inputs, &lstm_with(lstm)),
        run(&device, &lstm_inputs, &lstm_with(lstm_composite)),
    );

    let gru_inputs = [
        Input::new(&[steps, batch, 3 * hidden], 5.0, 1.5),
        Input::new(&[hidden, 3 * hidden], 6.0, 0.5),
        Input::new(&[3 * hidden], 7.0, 0.3),
        Input::new(&[3 * hidden], 8.0, 0.3),
        Input::new(&[batch, hidden], 9.0, 0.5),
    ];
    let gru_with = |f: fn(Tensor<3>, Tensor<2>, Tensor<1>, Tensor<1>, Tensor<2>) -> Tensor<3>| {
        move |i: &[Input], d: &Device| {
            let ((a, xp), (b, u), (c, bx), (e, bh), (g, h0)) = (
                i[0].tensor::<3>(d),
                i[1].tensor::<2>(d),
                i[2].tensor::<1>(d),
                i[3].tensor::<1>(d),
                i[4].tensor::<2>(d),
            );
            (vec![flat(f(xp, u, bx, bh, h0))], vec![a, b, c, e, g])
        }
    };
    assert_close(
        "gru",
        run(&device, &gru_inputs, &gru_with(gru)),
        run(&device, &gru_inputs, &gru_with(gru_composite)),
    );

    let rnn_inputs = [
        Input::new(&[steps, batch, hidden], 10.0, 1.5),
        Input::new(&[hidden, hidden], 11.0, 0.5),
        Input::new(&[hidden], 12.0, 0.3),
        Input::new(&[batch, hidden], 13.0, 0.5),
    ];
    let rnn_with = |f: fn(Tensor<3>, Tensor<2>, Tensor<1>, Tensor<2>) -> Tensor<3>| {
        move |i: &[Input], d: &Device| {
            let ((a, xp), (b, u), (c, bias), (e, h0)) =
                (i[0].tensor::<3>(d), i[1].tensor::<2>(d), i[2].tensor::<1>(d), i[3].tensor::<2>(d));
            (vec![flat(f(xp, u, bias, h0))], vec![a, b, c, e])
        }
    };
    assert_close(
        "rnn",
        run(&device, &rnn_inputs, &rnn_with(rnn)),
        run(&device, &rnn_inputs, &rnn_with(rnn_composite)),
    );

    let x = [Input::new(&[4, 7], 14.0, 6.0)];
    let sigmoid_with = |f: fn(Tensor<2>) -> Tensor<2>| {
        move |i: &[Input], d: &Device| {
            let (a, x) = i[0].tensor::<2>(d);
            (vec![flat(f(x))], vec![a])
        }
    };
    assert_close(
        "sigmoid",
        run(&device, &x, &sigmoid_with(sigmoid)),
        run(&device, &x, &sigmoid_with(activation::sigmoid)),
    );
}

#[test]
fn without_autodiff_the_fused_layers_give_the_same_values() {
    let device = Device::flex();
    let t = |shape: &[usize], seed: f32| {
        Tensor::<3>::from_data(
            TensorData::new(values(shape.iter().product(), seed, 1.0), [shape[0], shape[1], shape[2]]),
            &device,
        )
    };
    let (xp, u, b, h0, c0) = (
        t(&[3, 2, 8], 0.0),
        t(&[1, 2, 8], 1.0).reshape([2, 8]),
        t(&[1, 1, 8], 2.0).reshape([8]),
        t(&[1, 2, 2], 3.0).reshape([2, 2]),
        t(&[1, 2, 2], 4.0).reshape([2, 2]),
    );
    let (h1, c1) = lstm(xp.clone(), u.clone(), b.clone(), h0.clone(), c0.clone());
    let (h2, c2) = lstm_composite(xp, u, b, h0, c0);
    let d: f32 = (h1 - h2).abs().max().into_scalar();
    let e: f32 = (c1 - c2).abs().max().into_scalar();
    assert!(d < 1e-6 && e < 1e-6, "{d} {e}");
}

/// A batch norm of `channels` on `device` whose `gamma` and `beta` are the given tracked tensors.
fn batch_norm_with(channels: usize, gamma: Tensor<1>, beta: Tensor<1>, device: &Device) -> BatchNorm {
    let mut bn = burn::nn::BatchNormConfig::new(channels).init(device);
    bn.gamma = burn::module::Param::from_tensor(gamma);
    bn.beta = burn::module::Param::from_tensor(beta);
    bn
}

/// What follows a batch norm in [`batch_norm_run`].
#[derive(Clone, Copy, Debug)]
enum After {
    Nothing,
    Relu,
    /// `relu(bn(x) + residual)`, the residual being the fourth input.
    AddRelu,
}

/// Batch norm of a `D`-dimensional input followed by `after`, fused or Burn's: its output, the
/// gradients of `x`, `gamma`, `beta` (and the residual), and the running statistics after the step.
fn batch_norm_run<const D: usize>(
    inputs: &[Input],
    after: After,
    fused: bool,
) -> ((Vec<f32>, Vec<Vec<f32>>), Vec<f32>) {
    let device = Device::flex().autodiff();
    let channels = inputs[1].1[0];
    let running = std::cell::RefCell::new(Vec::new());
    let layer = |i: &[Input], d: &Device| {
        // `gamma` and `beta` are leaves (a parameter must be): the flat tensors themselves.
        let ((a, x), (b, _), (c, _)) = (i[0].tensor::<D>(d), i[1].tensor::<1>(d), i[2].tensor::<1>(d));
        let bn = batch_norm_with(channels, b.clone(), c.clone(), d);
        let (residual, r) = i[3].tensor::<D>(d);
        let y = match (after, fused) {
            (After::Nothing, true) => batch_norm(&bn, x),
            (After::Relu, true) => batch_norm_relu(&bn, x),
            (After::AddRelu, true) => batch_norm_add_relu(&bn, x, r),
            (After::Nothing, false) => bn.forward(x),
            (After::Relu, false) => activation::relu(bn.forward(x)),
            (After::AddRelu, false) => activation::relu(bn.forward(x) + r),
        };
        let stats = Tensor::cat(vec![bn.running_mean.value(), bn.running_var.value()], 0);
        *running.borrow_mut() = stats.into_data().iter::<f32>().collect();
        let mut tracked = vec![a, b, c];
        tracked.extend(matches!(after, After::AddRelu).then_some(residual));
        (vec![flat(y)], tracked)
    };
    let result = run(&device, inputs, &layer);
    (result, running.into_inner())
}

#[test]
fn fused_batch_norm_and_pooling_match_burns_in_value_gradient_and_running_statistics() {
    // Shapes as after a convolution and after a linear layer; each alone, with the ReLU after
    // it, and with a residual added before the ReLU (a ResNet block's end).
    for shape in [vec![6, 3, 5, 4], vec![9, 7]] {
        let c = shape[1];
        let inputs = [
            Input::new(&shape, 20.0, 2.0),
            Input::new(&[c], 21.0, 1.0),
            Input::new(&[c], 22.0, 0.5),
            Input::new(&shape, 24.0, 1.0),
        ];
        for after in [After::Nothing, After::Relu, After::AddRelu] {
            let (fused, burns) = if shape.len() == 4 {
                (batch_norm_run::<4>(&inputs, after, true), batch_norm_run::<4>(&inputs, after, false))
            } else {
                (batch_norm_run::<2>(&inputs, after, true), batch_norm_run::<2>(&inputs, after, false))
            };
            let zeroed = fused.0.0.iter().filter(|&&v| v == 0.0).count();
            let relu = !matches!(after, After::Nothing);
            assert!(!relu || zeroed > fused.0.0.len() / 10, "{after:?}: the ReLU zeroed {zeroed} outputs");
            assert_close(&format!("batch norm {shape:?}, then {after:?}"), fused.0, burns.0);
            let diff = fused.1.iter().zip(&burns.1).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(fused.1.len() == 2 * c && diff < 1e-6, "running statistics differ by {diff}");
        }
    }

    // An odd width: the last column is left out, as Burn's pooling leaves it.
    let x = [Input::new(&[3, 4, 6, 7], 23.0, 1.0)];
    let pool = burn::nn::pool::AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    let pool_with = |fused: bool| {
        let pool = pool.clone();
        move |i: &[Input], d: &Device| {
            let (a, x) = i[0].tensor::<4>(d);
            let y = if fused { avg_pool2(&pool, x) } else { pool.forward(x) };
            (vec![flat(y)], vec![a])
        }
    };
    let device = Device::flex().autodiff();
    assert_close("avg pool", run(&device, &x, &pool_with(true)), run(&device, &x, &pool_with(false)));
    let plain = Device::flex();
    let x = Tensor::<4>::from_data(TensorData::new(x[0].0.clone(), [3, 4, 6, 7]), &plain);
    let d: f32 = (avg_pool2(&pool, x.clone()) - pool.forward(x)).abs().max().into_scalar();
    assert!(d < 1e-6, "without autodiff: {d}");
}

#[test]
fn the_fused_max_pooling_matches_burns_in_value_and_gradient() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::pool::MaxPool2dConfig;
    // The stem's 3×3 stride 2 padding 1 (overlapping windows) on odd and even sides, a 2×2 with
    // stride 2 on an odd side, and a 3×2 window with its own strides. Values after a ReLU (a
    // third are zero, so windows tie) check that both take the first largest.
    for (shape, kernel, stride, padding) in [
        ([2, 3, 9, 9], [3, 3], [2, 2], [1, 1]),
        ([2, 3, 8, 10], [3, 3], [2, 2], [1, 1]),
        ([3, 2, 7, 5], [2, 2], [2, 2], [0, 0]),
        ([2, 2, 6, 7], [3, 2], [1, 2], [1, 0]),
    ] {
        let x = [Input::new(&shape, 40.0, 1.0)];
        let padding = PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]);
        let pool = MaxPool2dConfig::new(kernel).with_strides(stride).with_padding(padding).init();
        let pool_with = |fused: bool| {
            let pool = pool.clone();
            move |i: &[Input], d: &Device| {
                let (a, x) = i[0].tensor::<4>(d);
                let x = activation::relu(x);
                let y = if fused { max_pool2d(&pool, x) } else { pool.forward(x) };
                (vec![flat(y)], vec![a])
            }
        };
        let device = Device::flex().autodiff();
        let (fused, burns) = (run(&device, &x, &pool_with(true)), run(&device, &x, &pool_with(false)));
        assert!(fused.1[0].iter().filter(|&&g| g != 0.0).count() > 0, "some input gets a gradient");
        assert_close(&format!("max pool {shape:?} {kernel:?}"), fused, burns);
        let plain = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(x[0].0.clone(), shape), &plain);
        let d: f32 = (max_pool2d(&pool, x.clone()) - pool.forward(x)).abs().max().into_scalar();
        assert!(d == 0.0, "without autodiff: {d}");
    }
}

#[test]
fn the_fused_convolution_matches_burns_in_value_and_gradient() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    let device = Device::flex().autodiff();
    // LeNet's first convolution (5×5, padding 2), a 3×3 "same" one at stride 1 (wide enough,
    // with channels enough, for one product per kernel offset), a strided 3×3 one with padding
    // (ResNet's), a 1×1 shortcut with stride 2, a 7×7 stem with stride 2 and padding 3 on an odd size, and
    // small outputs whose samples share a product (seven samples in groups of five and two);
    // and a 3×3 "same" one at stride 1 with 16 channels in and out (Winograd's F(2×2, 3×3)).
    for (batch, c_in, side, c_out, kernel, stride, padding) in [
        (3, 1, 12, 4, 5, 1, 2),
        (2, 16, 10, 4, 3, 1, 1),
        (3, 16, 7, 16, 3, 1, 1),
        (2, 3, 9, 5, 3, 2, 1),
        (2, 4, 8, 6, 1, 2, 0),
        (2, 3, 11, 4, 7, 2, 3),
        (7, 2, 5, 3, 3, 1, 1),
    ] {
        let inputs = [
            Input::new(&[batch, c_in, side, side], 30.0, 1.0),
            Input::new(&[c_out, c_in, kernel, kernel], 31.0, 0.4),
            Input::new(&[c_out], 32.0, 0.2),
        ];
        let with = |fused: bool| {
            move |i: &[Input], d: &Device| {
                let ((a, x), (b, w), (c, bias)) =
                    (i[0].tensor::<4>(d), i[1].tensor::<4>(d), i[2].tensor::<1>(d));
                let y = if fused {
                    fused_conv2d(x, w, bias, [stride; 2], [padding; 2])
                } else {
                    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
                    conv2d(x, w, Some(bias), options)
                };
                (vec![flat(y)], vec![a, b, c])
            }
        };
        let name = format!("conv {kernel}×{kernel} stride {stride} padding {padding}");
        assert_close(&name, run(&device, &inputs, &with(true)), run(&device, &inputs, &with(false)));
    }
}
