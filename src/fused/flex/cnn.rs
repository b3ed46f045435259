//! The convolutional networks' fused operations on flex: the convolution, batch normalization
//! in training (the batch's statistics, then the normalization), 2×2 average pooling and max
//! pooling, each one kernel of [`kiln_kernels`] forward and one backward, recorded for autodiff.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::Shape;
use kiln_kernels::batch_norm;
use kiln_kernels::conv::{self, Conv};
use kiln_kernels::pool::{self, MaxPool};

use super::{register, tensor, values, zeros};

/// The `epsilon` of the fused batch norm: Burn's and PyTorch's default.
pub const BATCH_NORM_EPSILON: f64 = 1e-5;

/// `[batch, channels, inner]` of a `[batch, channels, ...]` tensor.
fn batch_shape(x: &FlexTensor) -> batch_norm::Shape {
    let shape = x.shape();
    [shape[0], shape[1], (2..shape.num_dims()).map(|d| shape[d]).product()]
}

pub(super) fn batch_stats(x: &FlexTensor) -> FlexTensor {
    let stats = batch_norm::statistics(&values(x), batch_shape(x));
    let channels = stats.mean.len();
    tensor([stats.mean, stats.variance].concat(), [2, channels])
}

/// What a batch norm's backward needs: its input, `gamma` and statistics, whether it added a
/// residual, and where it ended in a ReLU, what shows where the ReLU passed: its output after a
/// residual, else `beta`, from which the kernel recomputes it.
#[derive(Debug)]
pub(super) struct BatchNormRun {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: batch_norm::Statistics,
    relu_mask: Option<FlexTensor>,
    residual: bool,
}

impl BatchNormRun {
    pub(super) fn new(x: &FlexTensor, gamma: &FlexTensor, stats: &FlexTensor) -> Self {
        let values = values(stats);
        let (mean, variance) = values.split_at(values.len() / 2);
        let stats = batch_norm::Statistics { mean: mean.to_vec(), variance: variance.to_vec() };
        Self { x: x.clone(), gamma: gamma.clone(), stats, relu_mask: None, residual: false }
    }

    /// The kernels' view of this run, over `x`'s and `gamma`'s values.
    fn normalized<'a>(&'a self, x: &'a [f32], gamma: &'a [f32]) -> batch_norm::Normalized<'a> {
        let epsilon = BATCH_NORM_EPSILON as f32;
        batch_norm::Normalized { x, shape: batch_shape(&self.x), stats: &self.stats, gamma, epsilon }
    }

    /// `relu(bn(x) + residual)`, with the residual and the ReLU where asked; the run keeps what
    /// its backward needs of them.
    pub(super) fn forward(
        &mut self,
        beta_tensor: &FlexTensor,
        residual: Option<&FlexTensor>,
        relu: bool,
    ) -> FlexTensor {
        let shape = self.x.shape();
        let (x, gamma, beta) = (values(&self.x), values(&self.gamma), values(beta_tensor));
        let residual_values = residual.map(values);
        let epilogue = batch_norm::Epilogue { residual: residual_values.as_deref(), relu };
        let normalized = self.normalized(&x, &gamma);
        let y = tensor(batch_norm::forward(&normalized, &beta, epilogue), shape);
        self.relu_mask = relu.then(|| if residual.is_some() { y.clone() } else { beta_tensor.clone() });
        self.residual = residual.is_some();
        y
    }

    /// The gradients of `x`, `gamma`, `beta`, none for the statistics, and the residual's where
    /// there was one.
    fn backward(&self, grad: &FlexTensor) -> Vec<Option<FlexTensor>> {
        let (x, gamma, dy) = (values(&self.x), values(&self.gamma), values(grad));
        let mask = self.relu_mask.as_ref().map(values);
        let relu = match mask.as_deref() {
            None => batch_norm::Relu::None,
            Some(out) if self.residual => batch_norm::Relu::Output(out),
            Some(beta) => batch_norm::Relu::Recomputed(beta),
        };
        let normalized = self.normalized(&x, &gamma);
        let g = batch_norm::backward(&normalized, &dy, relu, self.residual);
        let channels = g.gamma.len();
        let residual = match g.residual {
            Some(masked) => Some(tensor(masked, self.x.shape())),
            None => self.residual.then(|| grad.clone()),
        };
        let gradients =
            [tensor(g.x, self.x.shape()), tensor(g.gamma, [channels]), tensor(g.beta, [channels])];
        gradients.into_iter().map(Some).chain([None, residual]).collect()
    }
}

/// The backward of [`FusedOps::fused_batch_stats`]: none (its input is detached).
#[derive(Debug)]
struct NoGradient;

impl Backward<Flex, 1> for NoGradient {
    type State = ();

    fn backward(self, _: Ops<(), 1>, _: &mut Gradients, _: &mut Checkpointer) {}
}

/// The backward of a batch norm: `x`, `gamma`, `beta`, nothing for the statistics, and the
/// residual where it added one (`N` = 5).
#[derive(Debug)]
struct BatchNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for BatchNormBackward<N> {
    type State = Arc<BatchNormRun>;

    fn backward(self, ops: Ops<Arc<BatchNormRun>, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let inputs = ops.state.backward(&grad);
        register(ops, grads, inputs);
    }
}

/// Records [`super::FusedOps::fused_batch_stats`] on an autodiff tensor (detached: no gradient).
pub(super) fn tracked_stats<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let stats = batch_stats(x.primitive());
    NoGradient.prepare::<C>([x.node()]).compute_bound().stateless(stats)
}

/// Records [`super::FusedOps::fused_batch_norm`] (`[x, gamma, beta, stats]`) or
/// [`super::FusedOps::fused_batch_norm_add_relu`] (the same and the residual) on autodiff tensors.
pub(super) fn tracked_batch_norm<C: CheckpointStrategy, const N: usize>(
    inputs: [FloatTensor<Autodiff<Flex, C>>; N],
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    let kind =
        BatchNormBackward::<N>.prepare::<C>(inputs.each_ref().map(|t| t.node())).compute_bound().stateful();
    let [x, gamma, beta, stats] = [0, 1, 2, 3].map(|i| inputs[i].primitive());
    let mut run = BatchNormRun::new(x, gamma, stats);
    let y = run.forward(beta, inputs.get(4).map(|r| r.primitive()), relu);
    match kind {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(run), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// `[planes, h, w]` of a `[batch, channels, h, w]` tensor.
fn planes(shape: &Shape) -> [usize; 3] {
    [shape[0] * shape[1], shape[2], shape[3]]
}

pub(super) fn avg_pool2(x: &FlexTensor) -> FlexTensor {
    let shape = x.shape();
    let [p, h, w] = planes(&shape);
    let mut y = zeros(p * (h / 2) * (w / 2));
    pool::forward(&values(x), p, h, w, &mut y);
    tensor(y, [shape[0], shape[1], h / 2, w / 2])
}

/// The backward of 2×2 average pooling: the input's shape is all it needs.
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = Shape;

    fn backward(self, ops: Ops<Shape, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [p, h, w] = planes(&ops.state);
        let mut dx = zeros(p * h * w);
        pool::backward(&values(&grad), p, h, w, &mut dx);
        let dx = tensor(dx, ops.state.clone());
        register(ops, grads, [Some(dx)]);
    }
}

/// Records [`super::FusedOps::fused_avg_pool2`] on an autodiff tensor.
pub(super) fn tracked_avg_pool2<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let kind = PoolBackward.prepare::<C>([x.node()]).compute_bound().stateful();
    let y = avg_pool2(x.primitive());
    match kind {
        OpsKind::Tracked(prep) => prep.finish(x.primitive().shape(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A max pooling's shapes and the input each output chose: what its backward reads.
#[derive(Debug)]
pub(super) struct MaxPoolRun {
    pool: MaxPool,
    argmax: Vec<u32>,
    input: Shape,
}

impl MaxPoolRun {
    /// Pools `x` over `[kernel, stride, padding]`: the run, and the output.
    pub(super) fn new(x: &FlexTensor, [kernel, stride, padding]: [[usize; 2]; 3]) -> (Self, FlexTensor) {
        let input = x.shape();
        let [planes, h, w] = planes(&input);
        let pool = MaxPool { planes, h, w, kernel, stride, padding };
        let [oh, ow] = pool.out();
        let (mut y, mut argmax) = (zeros(planes * oh * ow), vec![0; planes * oh * ow]);
        pool::max_forward(&pool, &values(x), &mut y, &mut argmax);
        (Self { pool, argmax, input: input.clone() }, tensor(y, [input[0], input[1], oh, ow]))
    }
}

/// The backward of max pooling: each output's gradient to the input it chose.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = Arc<MaxPoolRun>;

    fn backward(self, ops: Ops<Arc<MaxPoolRun>, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let run = &ops.state;
        let mut dx = zeros(run.input.num_elements());
        pool::max_backward(&run.pool, &values(&grad), &run.argmax, &mut dx);
        let dx = tensor(dx, run.input.clone());
        register(ops, grads, [Some(dx)]);
    }
}

/// Records [`super::FusedOps::fused_max_pool2d`] on an autodiff tensor.
pub(super) fn tracked_max_pool2d<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    window: [[usize; 2]; 3],
) -> FloatTensor<Autodiff<Flex, C>> {
    let kind = MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful();
    let (run, y) = MaxPoolRun::new(x.primitive(), window);
    match kind {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(run), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A convolution's shapes and operands, for its forward and backward.
#[derive(Debug)]
pub(super) struct ConvRun {
    conv: Conv,
    x: FlexTensor,
    weight: FlexTensor,
}

impl ConvRun {
    pub(super) fn new(x: &FlexTensor, weight: &FlexTensor, stride: [usize; 2], padding: [usize; 2]) -> Self {
        let (xs, ws) = (x.shape(), weight.shape());
        let conv = Conv {
            batch: xs[0],
            c_in: xs[1],
            h: xs[2],
            w: xs[3],
            c_out: ws[0],
            kernel: [ws[2], ws[3]],
            stride,
            padding,
        };
        Self { conv, x: x.clone(), weight: weight.clone() }
    }

    pub(super) fn forward(&self, bias: &FlexTensor) -> FlexTensor {
        let out = conv::forward(&self.conv, &values(&self.x), &values(&self.weight), &values(bias));
        let [oh, ow] = self.conv.out();
        tensor(out, [self.conv.batch, self.conv.c_out, oh, ow])
    }
}

/// The backward of a convolution: `x` (when it needs a gradient), `weight`, `bias`.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = Arc<ConvRun>;

    fn backward(self, ops: Ops<Arc<ConvRun>, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let run = &ops.state;
        let input_grad = ops.parents[0].is_some();
        let g = conv::backward(&run.conv, &values(&run.x), &values(&run.weight), &values(&grad), input_grad);
        let channels = g.bias.len();
        let inputs = [
            g.x.map(|dx| tensor(dx, run.x.shape())),
            Some(tensor(g.weight, run.weight.shape())),
            Some(tensor(g.bias, [channels])),
        ];
        register(ops, grads, inputs);
    }
}

/// Records [`super::FusedOps::fused_conv2d`] on autodiff tensors `[x, weight, bias]`.
pub(super) fn tracked_conv2d<C: CheckpointStrategy>(
    inputs: [FloatTensor<Autodiff<Flex, C>>; 3],
    stride: [usize; 2],
    padding: [usize; 2],
) -> FloatTensor<Autodiff<Flex, C>> {
    let kind = ConvBackward.prepare::<C>(inputs.each_ref().map(|t| t.node())).compute_bound().stateful();
    let [x, weight, bias] = &inputs;
    let run = ConvRun::new(x.primitive(), weight.primitive(), stride, padding);
    let y = run.forward(bias.primitive());
    match kind {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(run), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
