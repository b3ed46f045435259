//! Fused operations: a whole recurrent layer over a sequence, the sigmoid, batch normalization
//! in training (with the ReLU, and a residual block's sum, that follow it) and 2×2 average
//! pooling, as one operation each.
//!
//! On the CPU (Burn's flex backend) each is one kernel forward and one backward ([`flex`],
//! over [`kiln_kernels`]), where Burn's tensor operations would take a dozen or more per time
//! step, each a pass over memory and a node of the autodiff graph, with `exp` computed one
//! element at a time, and one small weight-gradient product per step. On any other device they
//! are the same equations written with Burn's tensor operations, step by step, which a GPU
//! backend fuses itself. Tests check the two paths against each other, values and gradients.
//!
//! A layer takes the input's products for every step at once, `xp` (`[steps, batch,
//! gates·hidden]`, time-major), the gates' hidden weights side by side, `u` (`[hidden,
//! gates·hidden]`), the biases and the first state, and returns the hidden state after each step
//! (`[steps, batch, hidden]`). Gate blocks are in the order each function names.

use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::tensor::activation;
use burn::tensor::{Device, Tensor};

mod flex;

use flex::FusedOps;

fn on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.device() == Device::flex()
}

/// `bn.forward(x)`. In training on flex, two fused kernels ([`kiln_kernels::batch_norm`]): the
/// batch's statistics, then the normalization, whose backward accounts for them; the running
/// statistics are updated as Burn's `BatchNorm` updates them. Anywhere else, Burn's own.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    normalize(bn, x, Then::Nothing)
}

/// `relu(bn.forward(x))`: on flex in training, the ReLU is applied in the normalization's pass
/// and its mask in the backward's, where Burn's ReLU is a pass over memory each way.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    normalize(bn, x, Then::Relu)
}

/// `relu(bn.forward(x) + residual)` (a residual block's end), in one pass as [`batch_norm_relu`].
pub fn batch_norm_add_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
    normalize(bn, x, Then::AddRelu(residual))
}

/// What follows a batch norm in the same kernel.
enum Then<const D: usize> {
    Nothing,
    Relu,
    AddRelu(Tensor<D>),
}

/// `bn.forward(x)` followed by `then`; see [`batch_norm`].
fn normalize<const D: usize>(bn: &BatchNorm, x: Tensor<D>, then: Then<D>) -> Tensor<D> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    if !(training && on_flex(&x) && bn.epsilon == flex::BATCH_NORM_EPSILON) {
        let y = bn.forward(x);
        return match then {
            Then::Nothing => y,
            Then::Relu => activation::relu(y),
            Then::AddRelu(residual) => activation::relu(y + residual),
        };
    }
    let stats: Tensor<2> =
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_batch_stats(x.clone().detach().into_dispatch()));
    let (x, gamma, beta) = (x.into_dispatch(), bn.gamma.val().into_dispatch(), bn.beta.val().into_dispatch());
    let stats_in = stats.clone().into_dispatch();
    let y = Tensor::from_dispatch(match then {
        Then::Nothing | Then::Relu => {
            <Dispatch as FusedOps>::fused_batch_norm(x, gamma, beta, stats_in, matches!(then, Then::Relu))
        }
        Then::AddRelu(residual) => <Dispatch as FusedOps>::fused_batch_norm_add_relu(
            x,
            gamma,
            beta,
            stats_in,
            residual.into_dispatch(),
        ),
    });
    let [_, channels] = stats.dims();
    let (mean, variance) =
        (stats.clone().narrow(0, 0, 1).reshape([channels]), stats.narrow(0, 1, 1).reshape([channels]));
    let (device, momentum) = (y.device(), bn.momentum);
    let running = |state: Tensor<1>, batch: Tensor<1>| {
        state.to_device(&device).mul_scalar(1.0 - momentum).add(batch.mul_scalar(momentum)).detach()
    };
    bn.running_mean.update(running(bn.running_mean.value_sync(), mean));
    bn.running_var.update(running(bn.running_var.value_sync(), variance));
    y
}

/// `[rows, columns]` of a padding that is the same on both sides of each axis.
fn symmetric(padding: &PaddingConfig2d) -> Option<[usize; 2]> {
    match *padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// `conv.forward(x)`. On flex, with symmetric zero padding, no dilation, one group and a bias
/// (every convolution kiln's models build), one fused kernel forward and one backward
/// ([`kiln_kernels::conv`]); otherwise Burn's.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match (&conv.bias, symmetric(&conv.padding)) {
        (Some(bias), Some(padding)) if on_flex(&x) && conv.dilation == [1, 1] && conv.groups == 1 => {
            fused_conv2d(x, conv.weight.val(), bias.val(), conv.stride, padding)
        }
        _ => conv.forward(x),
    }
}

/// The fused convolution on flex tensors.
fn fused_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// `pool.forward(x)`. For a 2×2 average pooling with stride 2 and no padding (LeNet's) on flex,
/// one kernel forward and one backward, where Burn's CPU pooling runs a general 3-D loop; any
/// other pooling, or device, Burn's own.
pub fn avg_pool2(pool: &AvgPool2d, x: Tensor<4>) -> Tensor<4> {
    let halves = pool.kernel_size == [2, 2] && pool.stride == [2, 2];
    if halves && matches!(pool.padding, PaddingConfig2d::Valid) && on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_avg_pool2(x.into_dispatch()))
    } else {
        pool.forward(x)
    }
}

/// `pool.forward(x)`. On flex, for symmetric padding narrower than the window, without
/// dilation or ceiling mode (every max pooling kiln's models build), one kernel forward and one
/// backward that keeps each output's choice as a `u32`, where Burn's CPU pooling runs a general
/// 3-D loop, one task per output, and keeps `i64` indices; otherwise Burn's own.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let plain = pool.dilation == [1, 1] && !pool.ceil_mode;
    match symmetric(&pool.padding) {
        Some(padding) if on_flex(&x) && plain && (0..2).all(|d| padding[d] < pool.kernel_size[d]) => {
            let window = [pool.kernel_size, pool.stride, padding];
            Tensor::from_dispatch(<Dispatch as FusedOps>::fused_max_pool2d(x.into_dispatch(), window))
        }
        _ => pool.forward(x),
    }
}

/// `sigmoid(x)`.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_sigmoid(x.into_dispatch()))
    } else {
        activation::sigmoid(x)
    }
}

/// An LSTM layer (blocks input, forget, cell candidate, output; `bias` is the sum of both
/// products' biases): the hidden state after each step and the last cell state.
pub fn lstm(
    xp: Tensor<3>,
    u: Tensor<2>,
    bias: Tensor<1>,
    h0: Tensor<2>,
    c0: Tensor<2>,
) -> (Tensor<3>, Tensor<2>) {
    let [steps, batch, _] = xp.dims();
    let [_, hidden] = h0.dims();
    if on_flex(&xp) {
        let out: Tensor<3> = Tensor::from_dispatch(<Dispatch as FusedOps>::fused_lstm(
            xp.into_dispatch(),
            u.into_dispatch(),
            bias.into_dispatch(),
            h0.into_dispatch(),
            c0.into_dispatch(),
        ));
        let cell = out.clone().narrow(0, steps, 1).reshape([batch, hidden]);
        return (out.narrow(0, 0, steps), cell);
    }
    lstm_composite(xp, u, bias, h0, c0)
}

/// [`lstm`] in Burn's tensor operations.
fn lstm_composite(
    xp: Tensor<3>,
    u: Tensor<2>,
    bias: Tensor<1>,
    h0: Tensor<2>,
    c0: Tensor<2>,
) -> (Tensor<3>, Tensor<2>) {
    let [steps, batch, _] = xp.dims();
    let [_, hidden] = h0.dims();
    let (mut h, mut c) = (h0, c0);
    let mut outputs = Vec::with_capacity(steps);
    for xp_t in xp.iter_dim(0) {
        let pre = xp_t.reshape([batch, 4 * hidden]) + h.matmul(u.clone());
        (h, c) = lstm_step(pre, bias.clone(), c);
        outputs.push(h.clone());
    }
    (Tensor::stack(outputs, 0), c)
}

/// One LSTM step in Burn's tensor operations, from the summed products `pre`.
fn lstm_step(pre: Tensor<2>, bias: Tensor<1>, c_prev: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let [_, hidden] = c_prev.dims();
    let gates = pre + bias.unsqueeze::<2>();
    let block = |k: usize| gates.clone().narrow(1, k * hidden, hidden);
    let input = activation::sigmoid(block(0));
    let forget = activation::sigmoid(block(1));
    let output = activation::sigmoid(block(3));
    let cell = forget * c_prev + input * block(2).tanh();
    (output * cell.clone().tanh(), cell)
}

/// A GRU layer (blocks update, reset, new; the reset gate applied after the hidden product, as
/// PyTorch's and Burn's default), `bx` and `bh` the two products' biases: the hidden state after
/// each step.
pub fn gru(xp: Tensor<3>, u: Tensor<2>, bx: Tensor<1>, bh: Tensor<1>, h0: Tensor<2>) -> Tensor<3> {
    if on_flex(&xp) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gru(
            xp.into_dispatch(),
            u.into_dispatch(),
            bx.into_dispatch(),
            bh.into_dispatch(),
            h0.into_dispatch(),
        ));
    }
    gru_composite(xp, u, bx, bh, h0)
}

/// [`gru`] in Burn's tensor operations.
fn gru_composite(xp: Tensor<3>, u: Tensor<2>, bx: Tensor<1>, bh: Tensor<1>, h0: Tensor<2>) -> Tensor<3> {
    let [_, batch, width] = xp.dims();
    let hidden = width / 3;
    let mut h = h0;
    let mut outputs = Vec::new();
    for xp_t in xp.iter_dim(0) {
        let x = xp_t.reshape([batch, width]) + bx.clone().unsqueeze::<2>();
        let hp = h.clone().matmul(u.clone()) + bh.clone().unsqueeze::<2>();
        let block = |t: &Tensor<2>, k: usize| t.clone().narrow(1, k * hidden, hidden);
        let update = activation::sigmoid(block(&x, 0) + block(&hp, 0));
        let reset = activation::sigmoid(block(&x, 1) + block(&hp, 1));
        let new = (block(&x, 2) + reset * block(&hp, 2)).tanh();
        h = new * update.clone().neg().add_scalar(1.0) + update * h;
        outputs.push(h.clone());
    }
    Tensor::stack(outputs, 0)
}

/// The book's RNN layer, `h_t = tanh(xp_t + h_{t−1} u + bias)`: the hidden state after each
/// step.
pub fn rnn(xp: Tensor<3>, u: Tensor<2>, bias: Tensor<1>, h0: Tensor<2>) -> Tensor<3> {
    if on_flex(&xp) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rnn(
            xp.into_dispatch(),
            u.into_dispatch(),
            bias.into_dispatch(),
            h0.into_dispatch(),
        ));
    }
    rnn_composite(xp, u, bias, h0)
}

/// [`rnn`] in Burn's tensor operations.
fn rnn_composite(xp: Tensor<3>, u: Tensor<2>, bias: Tensor<1>, h0: Tensor<2>) -> Tensor<3> {
    let [_, batch, hidden] = xp.dims();
    let mut h = h0;
    let mut outputs = Vec::new();
    for xp_t in xp.iter_dim(0) {
        h = (xp_t.reshape([batch, hidden]) + h.matmul(u.clone()) + bias.clone().unsqueeze::<2>()).tanh();
        outputs.push(h.clone());
    }
    Tensor::stack(outputs, 0)
}

#[cfg(test)]
mod tests;
