//! The fused operations as a Burn backend extension, implemented for the CPU backend (flex) and
//! for autodiff over it: the sigmoid here, each one kernel of [`kiln_kernels`] forward and one
//! backward; a whole recurrent layer over a sequence in [`recurrent`], batch normalization,
//! pooling and the convolution in [`cnn`].
//!
//! Under autodiff the forward keeps what the kernel's backward reads (the sigmoid's output; a
//! layer's states and activated gates), so the backward computes no `exp` again, where Burn's
//! own sigmoid computes it twice.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, TensorData};
use kiln_kernels::sequence::Cell;

mod cnn;
mod recurrent;

pub use cnn::BATCH_NORM_EPSILON;

/// Operations with one fused kernel on flex. Shapes as in [`super`]'s functions.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `sigmoid(x)`, any shape.
    fn fused_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// An LSTM layer: `[steps + 1, batch, hidden]`, the hidden state after each step, then the
    /// last cell state.
    fn fused_lstm(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// A GRU layer: `[steps, batch, hidden]`.
    fn fused_gru(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bx: FloatTensor<Self>,
        bh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The book's RNN layer: `[steps, batch, hidden]`.
    fn fused_rnn(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The mean and biased variance of each channel of `x` (`[batch, channels, ...]`), as
    /// `[2, channels]`; no gradient flows through it.
    fn fused_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Batch normalization of `x` with its own batch's `stats` (from `fused_batch_stats`), with
    /// [`BATCH_NORM_EPSILON`], then a ReLU where `relu`; the gradient of `x` accounts for the
    /// statistics' dependence on it.
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// `relu(batch_norm(x) + residual)`, as `fused_batch_norm`; `residual` has `x`'s shape.
    fn fused_batch_norm_add_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// 2×2 average pooling with stride 2 of `x` (`[batch, channels, h, w]`).
    fn fused_avg_pool2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Max pooling of `x` (`[batch, channels, h, w]`) over `window` (kernel, stride and padding
    /// on each side; padded places are never chosen; no dilation).
    fn fused_max_pool2d(x: FloatTensor<Self>, window: [[usize; 2]; 3]) -> FloatTensor<Self>;
    /// 2-D convolution of `x` (`[batch, c_in, h, w]`) by `weight` (`[c_out, c_in, kh, kw]`)
    /// plus `bias`, with `stride` and zero `padding` (no dilation, one group).
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// The values of a float tensor, in row-major order.
fn values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => values.into(),
        None => tensor.to_contiguous().into_data().try_to_vec::<f32>().expect("kiln trains in f32").into(),
    }
}

fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn zeros(len: usize) -> Vec<f32> {
    kiln_kernels::zeros(len)
}

fn sigmoid(x: &FlexTensor) -> FlexTensor {
    let shape = x.shape();
    let mut y = zeros(shape.num_elements());
    kiln_kernels::sigmoid_forward(&values(x), &mut y);
    tensor(y, shape)
}

impl FusedOps for Flex {
    fn fused_sigmoid(x: FlexTensor) -> FlexTensor {
        sigmoid(&x)
    }

    fn fused_lstm(
        xp: FlexTensor,
        u: FlexTensor,
        bias: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
    ) -> FlexTensor {
        recurrent::LayerInputs { cell: Cell::Lstm, tensors: vec![&xp, &u, &bias, &h0, &c0] }.run().0
    }

    fn fused_gru(
        xp: FlexTensor,
        u: FlexTensor,
        bx: FlexTensor,
        bh: FlexTensor,
        h0: FlexTensor,
    ) -> FlexTensor {
        recurrent::LayerInputs { cell: Cell::Gru, tensors: vec![&xp, &u, &bx, &bh, &h0] }.run().0
    }

    fn fused_rnn(xp: FlexTensor, u: FlexTensor, bias: FlexTensor, h0: FlexTensor) -> FlexTensor {
        recurrent::LayerInputs { cell: Cell::Rnn, tensors: vec![&xp, &u, &bias, &h0] }.run().0
    }

    fn fused_batch_stats(x: FlexTensor) -> FlexTensor {
        cnn::batch_stats(&x)
    }

    fn fused_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        relu: bool,
    ) -> FlexTensor {
        cnn::BatchNormRun::new(&x, &gamma, &stats).forward(&beta, None, relu)
    }

    fn fused_batch_norm_add_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        residual: FlexTensor,
    ) -> FlexTensor {
        cnn::BatchNormRun::new(&x, &gamma, &stats).forward(&beta, Some(&residual), true)
    }

    fn fused_avg_pool2(x: FlexTensor) -> FlexTensor {
        cnn::avg_pool2(&x)
    }

    fn fused_max_pool2d(x: FlexTensor, window: [[usize; 2]; 3]) -> FlexTensor {
        cnn::MaxPoolRun::new(&x, window).1
    }

    fn fused_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        cnn::ConvRun::new(&x, &weight, stride, padding).forward(&bias)
    }
}

#[derive(Debug)]
struct SigmoidBackward;

impl Backward<Flex, 1> for SigmoidBackward {
    /// The output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let shape = grad.shape();
        let mut dx = zeros(shape.num_elements());
        kiln_kernels::sigmoid_backward(&values(&ops.state), &values(&grad), &mut dx);
        register(ops, grads, [Some(tensor(dx, shape))]);
    }
}

/// Hands each input's gradient to its parent node, in the inputs' order; an input whose node
/// takes no gradient (or that has none) is skipped.
fn register<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    values: impl IntoIterator<Item = Option<FlexTensor>>,
) {
    for (parent, value) in ops.parents.into_iter().zip(values) {
        if let (Some(parent), Some(value)) = (parent, value) {
            grads.register::<Flex>(parent.id, value);
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let kind = SigmoidBackward.prepare::<C>([x.node()]).compute_bound().stateful();
        let y = sigmoid(x.primitive());
        match kind {
            OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_lstm(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        recurrent::tracked_layer::<C, _>(Cell::Lstm, [xp, u, bias, h0, c0])
    }

    fn fused_gru(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bx: FloatTensor<Self>,
        bh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        recurrent::tracked_layer::<C, _>(Cell::Gru, [xp, u, bx, bh, h0])
    }

    fn fused_rnn(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        recurrent::tracked_layer::<C, _>(Cell::Rnn, [xp, u, bias, h0])
    }

    fn fused_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        cnn::tracked_stats::<C>(x)
    }

    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        cnn::tracked_batch_norm::<C, 4>([x, gamma, beta, stats], relu)
    }

    fn fused_batch_norm_add_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cnn::tracked_batch_norm::<C, 5>([x, gamma, beta, stats, residual], true)
    }

    fn fused_avg_pool2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        cnn::tracked_avg_pool2::<C>(x)
    }

    fn fused_max_pool2d(x: FloatTensor<Self>, window: [[usize; 2]; 3]) -> FloatTensor<Self> {
        cnn::tracked_max_pool2d::<C>(x, window)
    }

    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        cnn::tracked_conv2d::<C>([x, weight, bias], stride, padding)
    }
}
