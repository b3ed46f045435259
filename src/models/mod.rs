//! The models kiln trains, each built from a Burn `Config`.
//!
//! [`ModelSpec`] is the `model` of a job definition: an image classifier ([`ClassifierSpec`],
//! built into a [`Classifier`] for a data set's image shape and class count) or a language model
//! ([`LanguageModelSpec`], built into an [`RnnLm`] for a vocabulary). Each gives its parameter
//! count without being built, so validation refuses models over the server's cap.
//!
//! Each model's config is the one place that knows its layers: it builds them, counts their
//! parameters, and computes from the same kernel windows and widths the image sides they take and
//! the activation they keep; [`ClassifierSpec`] only picks the config and asks it.

pub mod densenet;
pub mod lenet_bn;
pub mod mlp_bn;
mod presets;
pub mod resnet;
pub mod rnn_lm;
pub mod sequential;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::ImageShape;
use densenet::{DenseNet, DenseNetConfig};
use lenet_bn::{LenetBn, LenetBnConfig};
use mlp_bn::{MlpBn, MlpBnConfig};
use resnet::{ResNet, ResNetConfig};
pub use rnn_lm::{Cell, RnnLm, RnnLmConfig};
pub use sequential::{LayerProblem, LayerSpec, Plan, Sequential, Shape};

/// The `model` of a job definition: what `kind` names decides which of the two it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelSpec {
    Classifier(ClassifierSpec),
    Language(LanguageModelSpec),
}

impl ModelSpec {
    /// The `kind` a job definition names it by (`lenet_bn`, `rnn_lm` ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Classifier(ClassifierSpec::LenetBn { .. }) => "lenet_bn",
            Self::Classifier(ClassifierSpec::MlpBn { .. }) => "mlp_bn",
            Self::Classifier(ClassifierSpec::Resnet { .. }) => "resnet",
            Self::Classifier(ClassifierSpec::Densenet { .. }) => "densenet",
            Self::Classifier(ClassifierSpec::Sequential { .. }) => "sequential",
            Self::Language(LanguageModelSpec::RnnLm { .. }) => "rnn_lm",
        }
    }
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
    /// A network written as a list of layers ([`sequential`]), input widths inferred.
    Sequential { layers: Vec<LayerSpec> },
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
    Sequential(Sequential),
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
            Self::Sequential(m) => m.forward(images),
        }
    }
}

/// The square window of a convolution or a pooling: kernel side, stride and padding. A model's
/// config builds its layers from its windows and computes from the same windows the sides those
/// layers leave, so each layer's geometry is written once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl Window {
    pub(crate) const fn new(kernel: usize, stride: usize, pad: usize) -> Self {
        Self { kernel, stride, pad }
    }

    /// Side of the output for an input `side` pixels wide, or `None` when the kernel does not fit.
    pub(crate) fn output_side(self, side: usize) -> Option<usize> {
        (side + 2 * self.pad).checked_sub(self.kernel).map(|d| d / self.stride + 1)
    }

    /// [`Self::output_side`] after a layer that may itself have left nothing.
    pub(crate) fn after(self, side: Option<usize>) -> Option<usize> {
        side.and_then(|s| self.output_side(s))
    }

    /// Weights of the kernel between one input and one output channel.
    pub(crate) fn area(self) -> usize {
        self.kernel * self.kernel
    }

    fn padding(self) -> PaddingConfig2d {
        match self.pad {
            0 => PaddingConfig2d::Valid,
            p => PaddingConfig2d::Explicit(p, p, p, p),
        }
    }

    /// A convolution from `cin` to `cout` channels over this window.
    pub(crate) fn conv(self, cin: usize, cout: usize) -> Conv2dConfig {
        Conv2dConfig::new([cin, cout], [self.kernel; 2])
            .with_stride([self.stride; 2])
            .with_padding(self.padding())
    }

    /// An average pooling over this window.
    pub(crate) fn avg_pool(self) -> AvgPool2dConfig {
        AvgPool2dConfig::new([self.kernel; 2]).with_strides([self.stride; 2]).with_padding(self.padding())
    }

    /// A max pooling over this window.
    pub(crate) fn max_pool(self) -> MaxPool2dConfig {
        MaxPool2dConfig::new([self.kernel; 2]).with_strides([self.stride; 2]).with_padding(self.padding())
    }
}

/// Values in one channel of a square feature map `side` pixels wide; none where a layer whose
/// kernel did not fit left no map (an activation estimate counts the layers that do fit).
pub(crate) fn pixels(side: Option<usize>) -> usize {
    side.map_or(0, |s| s * s)
}

/// The config a [`ClassifierSpec`] builds for one image shape and class count: the one place
/// that knows the model's layers, and so its parameters, the sides it takes and the activation
/// it keeps.
enum ClassifierConfig {
    LenetBn(LenetBnConfig),
    MlpBn(MlpBnConfig),
    ResNet(ResNetConfig),
    DenseNet(DenseNetConfig),
    /// A layer list's plan for the image shape, `None` when the list does not fit it.
    Sequential(Option<Plan>),
}

impl ClassifierConfig {
    /// Side of the feature maps the model's feature extractor leaves from `side`-pixel images,
    /// or `None` when a kernel does not fit.
    fn feature_side(&self, side: usize) -> Option<usize> {
        match self {
            Self::LenetBn(c) => c.feature_side(side),
            Self::MlpBn(c) => c.feature_side(side),
            Self::ResNet(c) => c.feature_side(side),
            Self::DenseNet(c) => c.feature_side(side),
            // A plan exists only for the side it was made for (see `ClassifierSpec::fits`).
            Self::Sequential(plan) => plan.as_ref().map(|_| side),
        }
    }

    /// Whether images `side` pixels square keep at least one pixel through every layer.
    fn fits(&self, side: usize) -> bool {
        self.feature_side(side).is_some_and(|s| s >= 1)
    }

    /// See [`ClassifierSpec::activation_floats`]; LeNet and the MLP know their input size from
    /// their config, ResNet and DenseNet take any `side`.
    fn activation_floats(&self, side: usize) -> usize {
        match self {
            Self::LenetBn(c) => c.activation_floats(),
            Self::MlpBn(c) => c.activation_floats(),
            Self::ResNet(c) => c.activation_floats(side),
            Self::DenseNet(c) => c.activation_floats(side),
            Self::Sequential(plan) => plan.as_ref().map_or(0, Plan::activation_floats),
        }
    }

    fn parameter_count(&self) -> usize {
        match self {
            Self::LenetBn(c) => c.parameter_count(),
            Self::MlpBn(c) => c.parameter_count(),
            Self::ResNet(c) => c.parameter_count(),
            Self::DenseNet(c) => c.parameter_count(),
            Self::Sequential(plan) => plan.as_ref().map_or(0, Plan::parameters),
        }
    }

    fn init(&self, device: &Device) -> Classifier {
        match self {
            Self::LenetBn(c) => Classifier::LenetBn(c.init(device)),
            Self::MlpBn(c) => Classifier::MlpBn(c.init(device)),
            Self::ResNet(c) => Classifier::ResNet(c.init(device)),
            Self::DenseNet(c) => Classifier::DenseNet(c.init(device)),
            Self::Sequential(plan) => {
                let plan = plan.as_ref().expect("a layer list is planned at submit before it is built");
                Classifier::Sequential(Sequential::new(plan, device))
            }
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

    /// The model's config for images of `shape` and `classes` classes.
    fn config(&self, shape: ImageShape, classes: usize) -> ClassifierConfig {
        match self {
            Self::LenetBn { batch_norm } => {
                ClassifierConfig::LenetBn(Self::lenet(shape, classes, *batch_norm))
            }
            Self::MlpBn { hidden, activation, batch_norm } => {
                ClassifierConfig::MlpBn(Self::mlp(shape, classes, hidden, *activation, *batch_norm))
            }
            Self::Resnet { widths, blocks, .. } => {
                ClassifierConfig::ResNet(Self::resnet(shape, classes, widths, blocks))
            }
            Self::Densenet { growth_rate, blocks, stem_channels } => ClassifierConfig::DenseNet(
                Self::densenet(shape, classes, *growth_rate, blocks, *stem_channels),
            ),
            Self::Sequential { .. } => {
                ClassifierConfig::Sequential(self.plan(shape, classes).and_then(Result::ok))
            }
        }
    }

    /// A layer list walked from `shape` to `classes` values ([`sequential::plan`]): the plan or
    /// every problem, by layer; `None` for the built-in kinds.
    pub fn plan(&self, shape: ImageShape, classes: usize) -> Option<Result<Plan, Vec<LayerProblem>>> {
        let Self::Sequential { layers } = self else {
            return None;
        };
        let input = Shape::Maps { channels: shape.channels, side: shape.height };
        Some(sequential::plan(layers, input, classes))
    }

    /// Whether images of `shape` keep at least one pixel through every layer of the model for
    /// `classes` classes.
    pub fn fits(&self, shape: ImageShape, classes: usize) -> bool {
        self.config(shape, classes).fits(shape.height)
    }

    /// The smallest square image side the model (for images of `shape`'s channels and
    /// `classes` classes) can take.
    pub fn smallest_side(&self, shape: ImageShape, classes: usize) -> usize {
        if matches!(self, Self::Sequential { .. }) {
            let fits = |side| self.fits(ImageShape { height: side, width: side, ..shape }, classes);
            return (1..4096).find(|s| fits(*s)).unwrap_or(4096);
        }
        let config = self.config(shape, classes);
        (1..4096).find(|s| config.fits(*s)).unwrap_or(4096)
    }

    /// Floats of activation one example keeps alive through a training step: every layer's
    /// output, each kept for the backward pass and matched by a gradient of the same size.
    /// An estimate for admission control (with Burn's own workspace on top), not an accounting.
    pub fn activation_floats(&self, shape: ImageShape, classes: usize) -> usize {
        self.config(shape, classes).activation_floats(shape.height)
    }

    /// Trainable parameters of the model for inputs of `shape` and `classes` classes.
    pub fn parameter_count(&self, shape: ImageShape, classes: usize) -> usize {
        self.config(shape, classes).parameter_count()
    }

    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, shape: ImageShape, classes: usize, device: &Device) -> Classifier {
        self.config(shape, classes).init(device)
    }
}

#[cfg(test)]
mod tests;
