//! The models kiln trains, each built from a Burn `Config`.
//!
//! [`ModelSpec`] is the `model` of a job definition: an image classifier ([`ClassifierSpec`],
//! built into a [`Classifier`] for a data set's image shape and class count) or a language model
//! ([`LanguageModelSpec`], built into an [`RnnLm`] for a vocabulary). Each gives its parameter
//! count without being built, so validation refuses models over the server's cap.

pub mod densenet;
pub mod lenet_bn;
pub mod mlp_bn;
pub mod resnet;
pub mod rnn_lm;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::ImageShape;
use densenet::{DenseNet, DenseNetConfig};
use lenet_bn::{LenetBn, LenetBnConfig};
use mlp_bn::{MlpBn, MlpBnConfig};
use resnet::{ResNet, ResNetConfig};
pub use rnn_lm::{Cell, RnnLm, RnnLmConfig};

/// The `model` of a job definition: what `kind` names decides which of the two it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelSpec {
    Classifier(ClassifierSpec),
    Language(LanguageModelSpec),
}

/// A language model of a job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LanguageModelSpec {
    /// A recurrent language model (the book's chapters 8 and 9): `hidden` units in each of
    /// `layers` layers of `cell`; tokens enter one-hot, or through an `embedding` that wide.
    RnnLm { cell: Cell, hidden: usize, layers: usize, embedding: Option<usize> },
}

impl LanguageModelSpec {
    /// The model's config for a vocabulary of `vocab` tokens.
    pub fn config(&self, vocab: usize) -> RnnLmConfig {
        let Self::RnnLm { cell, hidden, layers, embedding } = self;
        RnnLmConfig::new(vocab, *cell).with_hidden(*hidden).with_layers(*layers).with_embedding(*embedding)
    }
}

/// An image classifier of a job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClassifierSpec {
    /// LeNet with BatchNorm before each sigmoid (the book's §8.5), 44,878 parameters.
    LenetBn { batch_norm: bool },
    /// An MLP with BatchNorm between each affine layer and its activation.
    MlpBn { hidden: Vec<usize>, activation: Activation, batch_norm: bool },
    /// ResNet (the book's §8.6): `depth` 18 or 34 sets the defaults of `widths` (channels of
    /// each stage) and `blocks` (residual blocks of each stage).
    Resnet { depth: u32, widths: Vec<usize>, blocks: Vec<usize> },
    /// DenseNet (the book's §8.7): `blocks` conv blocks per dense block.
    Densenet { growth_rate: usize, blocks: Vec<usize>, stem_channels: usize },
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
    ResNet(ResNet),
    DenseNet(DenseNet),
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
            Self::ResNet(m) => m.forward(images),
            Self::DenseNet(m) => m.forward(images),
        }
    }
}

/// Side of a convolution's or pooling's output for an input `side` pixels wide, or `None` when
/// the kernel does not fit.
fn output_side(side: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    (side + 2 * pad).checked_sub(kernel).map(|d| d / stride + 1)
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

impl ClassifierSpec {
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

    fn resnet(shape: ImageShape, classes: usize, widths: &[usize], blocks: &[usize]) -> ResNetConfig {
        ResNetConfig::new()
            .with_channels(shape.channels)
            .with_classes(classes)
            .with_widths(widths.to_vec())
            .with_blocks(blocks.to_vec())
    }

    fn densenet(
        shape: ImageShape,
        classes: usize,
        growth_rate: usize,
        blocks: &[usize],
        stem_channels: usize,
    ) -> DenseNetConfig {
        DenseNetConfig::new()
            .with_channels(shape.channels)
            .with_classes(classes)
            .with_growth_rate(growth_rate)
            .with_blocks(blocks.to_vec())
            .with_stem_channels(stem_channels)
    }

    /// The book's ResNet-18.
    pub fn resnet18() -> Self {
        Self::Resnet { depth: 18, widths: vec![64, 128, 256, 512], blocks: vec![2, 2, 2, 2] }
    }

    /// The book's DenseNet.
    pub fn densenet_book() -> Self {
        Self::Densenet { growth_rate: 32, blocks: vec![4, 4, 4, 4], stem_channels: 64 }
    }

    /// Whether images `side` pixels square keep at least one pixel through every layer.
    pub fn fits(&self, side: usize) -> bool {
        let pooled = output_side;
        let stem = |s: usize| pooled(s, 7, 2, 3).and_then(|s| pooled(s, 3, 2, 1));
        let side = match self {
            Self::LenetBn { .. } => pooled(side, 5, 1, 0)
                .and_then(|s| pooled(s, 2, 2, 0))
                .and_then(|s| pooled(s, 5, 1, 0))
                .and_then(|s| pooled(s, 2, 2, 0)),
            Self::MlpBn { .. } => Some(side),
            Self::Resnet { .. } => stem(side),
            Self::Densenet { blocks, .. } => {
                (1..blocks.len()).try_fold(stem(side).unwrap_or(0), |s, _| pooled(s, 2, 2, 0))
            }
        };
        side.is_some_and(|s| s >= 1)
    }

    /// Floats of activation one example keeps alive through a training step: every layer's
    /// output, each kept for the backward pass and matched by a gradient of the same size.
    /// An estimate for admission control (with Burn's own workspace on top), not an accounting.
    pub fn activation_floats(&self, shape: ImageShape) -> usize {
        let out = |s, k, stride, pad| output_side(s, k, stride, pad).unwrap_or(0);
        let side = shape.height;
        let forward = match self {
            Self::LenetBn { .. } => {
                let c1 = side.saturating_sub(4);
                let c2 = (c1 / 2).saturating_sub(4);
                3 * 6 * c1 * c1
                    + 6 * (c1 / 2).pow(2)
                    + 3 * 16 * c2 * c2
                    + 16 * (c2 / 2).pow(2)
                    + 3 * (120 + 84)
                    + 10
            }
            Self::MlpBn { hidden, .. } => shape.len() + hidden.iter().map(|h| 3 * h).sum::<usize>() + 10,
            Self::Resnet { widths, blocks, .. } => {
                let a = out(side, 7, 2, 3);
                let mut s = out(a, 3, 2, 1);
                let mut total = 3 * widths[0] * a * a + widths[0] * s * s;
                for (cin, cout, stride) in Self::resnet(shape, 10, widths, blocks).layout() {
                    s = out(s, 3, stride, 1);
                    let projected = stride != 1 || cin != cout;
                    total += (7 + usize::from(projected)) * cout * s * s;
                }
                total + widths.last().copied().unwrap_or(0) + 10
            }
            Self::Densenet { growth_rate, blocks, stem_channels } => {
                let a = out(side, 7, 2, 3);
                let mut s = out(a, 3, 2, 1);
                let mut c = *stem_channels;
                let mut total = 3 * c * a * a + c * s * s;
                for (i, &n) in blocks.iter().enumerate() {
                    for _ in 0..n {
                        total += (3 * c + 2 * growth_rate) * s * s;
                        c += growth_rate;
                    }
                    if i + 1 < blocks.len() {
                        total += (2 * c + c / 2) * s * s;
                        c /= 2;
                        s /= 2;
                        total += c * s * s;
                    }
                }
                total + 2 * c * s * s + c + 10
            }
        };
        2 * forward
    }

    /// The smallest square image side the model can take.
    pub fn smallest_side(&self) -> usize {
        (1..4096).find(|s| self.fits(*s)).unwrap_or(4096)
    }

    /// Trainable parameters of the model for inputs of `shape` and 10 classes.
    pub fn parameter_count(&self, shape: ImageShape) -> usize {
        match self {
            Self::LenetBn { batch_norm } => Self::lenet(shape, 10, *batch_norm).parameter_count(),
            Self::MlpBn { hidden, activation, batch_norm } => {
                Self::mlp(shape, 10, hidden, *activation, *batch_norm).parameter_count()
            }
            Self::Resnet { widths, blocks, .. } => Self::resnet(shape, 10, widths, blocks).parameter_count(),
            Self::Densenet { growth_rate, blocks, stem_channels } => {
                Self::densenet(shape, 10, *growth_rate, blocks, *stem_channels).parameter_count()
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
            Self::Resnet { widths, blocks, .. } => {
                Classifier::ResNet(Self::resnet(shape, classes, widths, blocks).init(device))
            }
            Self::Densenet { growth_rate, blocks, stem_channels } => Classifier::DenseNet(
                Self::densenet(shape, classes, *growth_rate, blocks, *stem_channels).init(device),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
