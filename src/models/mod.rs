//! The models kiln trains, each built from a Burn `Config`.
//!
//! [`ModelSpec`] is the `model` of a job definition; [`ModelSpec::init`] builds a [`Classifier`]
//! for a data set's image shape and class count, and [`ModelSpec::parameter_count`] gives its
//! size without building it (validation refuses models over the server's cap).

pub mod lenet_bn;
pub mod mlp_bn;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::ImageShape;
use lenet_bn::{LenetBn, LenetBnConfig};
use mlp_bn::{MlpBn, MlpBnConfig};

/// The `model` of a job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// LeNet with BatchNorm before each sigmoid (the book's §8.5), 44,878 parameters.
    LenetBn { batch_norm: bool },
    /// An MLP with BatchNorm between each affine layer and its activation.
    MlpBn { hidden: Vec<usize>, activation: Activation, batch_norm: bool },
}

/// Activation of hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Sigmoid,
}

/// An image classifier of any kind kiln trains.
#[derive(Module, Debug)]
pub enum Classifier {
    LenetBn(LenetBn),
    MlpBn(MlpBn),
}

impl Classifier {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::LenetBn(m) => m.forward(images),
            Self::MlpBn(m) => m.forward(images),
        }
    }
}

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
pub fn materialize(model: &Classifier) -> usize {
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

impl ModelSpec {
    fn lenet(shape: ImageShape, classes: usize, batch_norm: bool) -> LenetBnConfig {
        LenetBnConfig::new()
            .with_channels(shape.channels)
            .with_size(shape.height)
            .with_classes(classes)
            .with_batch_norm(batch_norm)
    }

    fn mlp(
        shape: ImageShape,
        classes: usize,
        hidden: &[usize],
        activation: Activation,
        batch_norm: bool,
    ) -> MlpBnConfig {
        MlpBnConfig::new(shape.len(), hidden.to_vec())
            .with_classes(classes)
            .with_activation(activation)
            .with_batch_norm(batch_norm)
    }

    /// Trainable parameters of the model for inputs of `shape` and 10 classes.
    pub fn parameter_count(&self, shape: ImageShape) -> usize {
        match self {
            Self::LenetBn { batch_norm } => Self::lenet(shape, 10, *batch_norm).parameter_count(),
            Self::MlpBn { hidden, activation, batch_norm } => {
                Self::mlp(shape, 10, hidden, *activation, *batch_norm).parameter_count()
            }
        }
    }

    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, shape: ImageShape, classes: usize, device: &Device) -> Classifier {
        match self {
            Self::LenetBn { batch_norm } => {
                Classifier::LenetBn(Self::lenet(shape, classes, *batch_norm).init(device))
            }
            Self::MlpBn { hidden, activation, batch_norm } => {
                Classifier::MlpBn(Self::mlp(shape, classes, hidden, *activation, *batch_norm).init(device))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };

    #[test]
    fn lenet_bn_has_the_books_44878_parameters() {
        let spec = ModelSpec::LenetBn { batch_norm: true };
        let model = spec.init(MNIST, 10, &Device::flex().autodiff());
        assert_eq!(materialize(&model), 44_878);
        assert_eq!(spec.parameter_count(MNIST), 44_878);
        // Burn's own count includes the running mean and variance of the four BatchNorms.
        assert_eq!(model.num_params(), 44_878 + 2 * (6 + 16 + 120 + 84));
    }

    #[test]
    fn parameter_counts_match_the_built_modules() {
        let specs = [
            ModelSpec::LenetBn { batch_norm: false },
            ModelSpec::MlpBn { hidden: vec![256, 128], activation: Activation::Relu, batch_norm: true },
            ModelSpec::MlpBn { hidden: vec![32], activation: Activation::Sigmoid, batch_norm: false },
        ];
        for spec in specs {
            let model = spec.init(MNIST, 10, &Device::flex().autodiff());
            assert_eq!(materialize(&model), spec.parameter_count(MNIST), "{spec:?}");
        }
    }

    #[test]
    fn classifiers_map_a_batch_of_images_to_class_logits() {
        let device = Device::flex();
        for spec in [
            ModelSpec::LenetBn { batch_norm: true },
            ModelSpec::MlpBn { hidden: vec![16], activation: Activation::Relu, batch_norm: true },
        ] {
            let logits = spec.init(MNIST, 10, &device).forward(Tensor::zeros([3, 1, 28, 28], &device));
            assert_eq!(logits.dims(), [3, 10], "{spec:?}");
        }
    }
}
