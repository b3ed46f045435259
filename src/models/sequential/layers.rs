//! The Burn module of a layer list: one [`Layer`] per [`LayerSpec`], built from a [`Plan`] (so
//! every input width is known) and applied in order.
//!
//! Layers initialise as the book's PyTorch code does (Xavier weights, PyTorch's default biases),
//! and the convolution, batch normalization (with the ReLU that follows it), sigmoid and 2×2
//! average pooling go through [`crate::fused`]: kiln's fused kernels on the CPU. Dropout and
//! BatchNorm follow the model's mode: off and running statistics in evaluation.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Gelu, Linear, Relu, Tanh};
use burn::tensor::{Device, Tensor};

use super::super::dense::{DenseBlock, Transition};
use super::super::residual::Residual;
use super::super::{Window, book_conv, book_linear};
use super::{
    Conv2dLayer, DenseBlockLayer, DropoutLayer, LayerSpec, LinearLayer, Plan, PoolLayer, ResidualLayer,
    Shape, TransitionLayer,
};
use crate::fused::{avg_pool2, batch_norm, batch_norm_relu, conv2d, max_pool2d, sigmoid};

/// `flatten`: no parameters.
#[derive(Module, Debug, Default)]
pub struct Flatten;

/// `global_avg_pool`: no parameters.
#[derive(Module, Debug, Default)]
pub struct GlobalAvgPool;

/// `sigmoid`, through the fused kernel on the CPU: no parameters.
#[derive(Module, Debug, Default)]
pub struct Sigmoid;

/// One built layer.
#[derive(Module, Debug)]
pub enum Layer {
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Linear(Linear),
    Sigmoid(Sigmoid),
    Relu(Relu),
    Tanh(Tanh),
    Gelu(Gelu),
    AvgPool2d(AvgPool2d),
    MaxPool2d(MaxPool2d),
    GlobalAvgPool(GlobalAvgPool),
    Flatten(Flatten),
    Dropout(Dropout),
    Residual(Residual),
    DenseBlock(DenseBlock),
    Transition(Transition),
}

/// What flows between layers: feature maps or flat vectors, a batch of them.
pub enum Activations {
    /// `[batch, channels, height, width]`
    Maps(Tensor<4>),
    /// `[batch, features]`
    Flat(Tensor<2>),
}

/// The network: its layers in order.
#[derive(Module, Debug)]
pub struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    /// Builds `plan`'s layers on `device` with fresh weights.
    pub fn new(plan: &Plan, device: &Device) -> Self {
        Self { layers: plan.layers.iter().map(|l| build(&l.spec, l.input, device)).collect() }
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, side, side]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = Activations::Maps(images);
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            x = match (layer, layers.peek()) {
                // A batch norm and the ReLU after it run as one kernel (`crate::fused`).
                (Layer::BatchNorm(bn), Some(Layer::Relu(_))) => {
                    layers.next();
                    each(x, |x| batch_norm_relu(bn, x), |x| batch_norm_relu(bn, x))
                }
                _ => layer.forward(x),
            };
        }
        match x {
            Activations::Flat(logits) => logits,
            // A plan ends in the class count, flat: a list that does not was refused at submit.
            Activations::Maps(maps) => maps.flatten(1, 3),
        }
    }
}

/// The window a pooling layer's settings give.
fn pool_window(kernel: usize, stride: Option<usize>, padding: usize) -> Window {
    Window::new(kernel, stride.unwrap_or(kernel), padding)
}

/// The layer `spec` names, for inputs of `input`'s shape.
fn build(spec: &LayerSpec, input: Shape, device: &Device) -> Layer {
    let channels = match input {
        Shape::Maps { channels, .. } => channels,
        Shape::Flat(n) => n,
    };
    match spec {
        LayerSpec::Conv2d(Conv2dLayer { out, kernel, stride, padding, .. }) => {
            Layer::Conv2d(book_conv(Window::new(*kernel, *stride, *padding).conv(channels, *out), device))
        }
        LayerSpec::BatchNorm(_) => Layer::BatchNorm(BatchNormConfig::new(channels).init(device)),
        LayerSpec::Linear(LinearLayer { out, .. }) => Layer::Linear(book_linear(channels, *out, device)),
        LayerSpec::Sigmoid(_) => Layer::Sigmoid(Sigmoid),
        LayerSpec::Relu(_) => Layer::Relu(Relu),
        LayerSpec::Tanh(_) => Layer::Tanh(Tanh),
        LayerSpec::Gelu(_) => Layer::Gelu(Gelu::new()),
        LayerSpec::AvgPool2d(PoolLayer { kernel, stride, padding }) => {
            Layer::AvgPool2d(pool_window(*kernel, *stride, *padding).avg_pool().init())
        }
        LayerSpec::MaxPool2d(PoolLayer { kernel, stride, padding }) => {
            Layer::MaxPool2d(pool_window(*kernel, *stride, *padding).max_pool().init())
        }
        LayerSpec::GlobalAvgPool(_) => Layer::GlobalAvgPool(GlobalAvgPool),
        LayerSpec::Flatten(_) => Layer::Flatten(Flatten),
        LayerSpec::Dropout(DropoutLayer { p }) => Layer::Dropout(DropoutConfig::new(*p).init()),
        LayerSpec::Residual(ResidualLayer { out, stride }) => {
            Layer::Residual(Residual::new(channels, *out, *stride, device))
        }
        LayerSpec::DenseBlock(DenseBlockLayer { convs, growth }) => {
            Layer::DenseBlock(DenseBlock::new(*convs, channels, *growth, device))
        }
        LayerSpec::Transition(TransitionLayer { out }) => {
            Layer::Transition(Transition::new(channels, *out, device))
        }
    }
}

/// A layer that needs feature maps got flat vectors: [`super::plan`] refuses such a list.
fn maps(x: Activations, layer: &str) -> Tensor<4> {
    match x {
        Activations::Maps(x) => x,
        Activations::Flat(_) => panic!("{layer} got flat input: the layer list was not planned"),
    }
}

impl Layer {
    fn forward(&self, x: Activations) -> Activations {
        use Activations::{Flat, Maps};
        match self {
            Self::Conv2d(conv) => Maps(conv2d(conv, maps(x, "conv2d"))),
            Self::Linear(linear) => match x {
                Flat(x) => Flat(linear.forward(x)),
                Maps(_) => panic!("linear got feature maps: the layer list was not planned"),
            },
            Self::AvgPool2d(pool) => Maps(avg_pool2(pool, maps(x, "avg_pool2d"))),
            Self::MaxPool2d(pool) => Maps(max_pool2d(pool, maps(x, "max_pool2d"))),
            Self::GlobalAvgPool(_) => Maps(maps(x, "global_avg_pool").mean_dim(3).mean_dim(2)),
            Self::Flatten(_) => match x {
                Maps(x) => Flat(x.flatten(1, 3)),
                flat => flat,
            },
            Self::Residual(block) => Maps(block.forward(maps(x, "residual"))),
            Self::DenseBlock(block) => Maps(block.forward(maps(x, "dense_block"))),
            Self::Transition(block) => Maps(block.forward(maps(x, "transition"))),
            Self::BatchNorm(bn) => each(x, |x| batch_norm(bn, x), |x| batch_norm(bn, x)),
            Self::Sigmoid(_) => each(x, sigmoid, sigmoid),
            Self::Relu(relu) => each(x, |x| relu.forward(x), |x| relu.forward(x)),
            Self::Tanh(tanh) => each(x, |x| tanh.forward(x), |x| tanh.forward(x)),
            Self::Gelu(gelu) => each(x, |x| gelu.forward(x), |x| gelu.forward(x)),
            Self::Dropout(dropout) => each(x, |x| dropout.forward(x), |x| dropout.forward(x)),
        }
    }
}

/// Applies a layer that takes either shape (Rust's const generics need one function per rank).
fn each(
    x: Activations,
    on_maps: impl FnOnce(Tensor<4>) -> Tensor<4>,
    on_flat: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Activations {
    match x {
        Activations::Maps(x) => Activations::Maps(on_maps(x)),
        Activations::Flat(x) => Activations::Flat(on_flat(x)),
    }
}
