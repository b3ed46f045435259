//! Weights as the book's PyTorch code initialises them, and drawing a model's lazily initialised
//! parameters at once.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Initialisation as the book's PyTorch code does it: `xavier_uniform_` on the weights, and
/// PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the biases (Burn would otherwise draw
/// the biases from the weights' Xavier distribution).
fn book_bias(fan_in: usize, len: usize, device: &Device) -> Param<Tensor<1>> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Initializer::Uniform { min: -bound, max: bound }.init([len], device)
}

/// A linear layer initialised as the book does.
pub(crate) fn book_linear(inputs: usize, outputs: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(inputs, outputs)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    linear.bias = Some(book_bias(inputs, outputs, device));
    linear
}

/// A convolution initialised as the book does; `config` sets everything but the initialiser.
pub(crate) fn book_conv(config: Conv2dConfig, device: &Device) -> Conv2d {
    let fan_in = config.channels[0] / config.groups * config.kernel_size[0] * config.kernel_size[1];
    let out = config.channels[1];
    let mut conv = config.with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device);
    if conv.bias.is_some() {
        conv.bias = Some(book_bias(fan_in, out, device));
    }
    conv
}

/// Draws every parameter's initial value now (Burn initialises lazily, on first use) and
/// counts the trainable values — BatchNorm's running statistics are state, not parameters.
/// The model must be on an autodiff device for the count to see which values train.
pub fn materialize<M: Module>(model: &M) -> usize {
    struct Visitor(usize);
    impl ModuleVisitor for Visitor {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut visitor = Visitor(0);
    model.visit(&mut visitor);
    visitor.0
}
