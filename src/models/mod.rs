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
mod init;
pub mod lenet_bn;
pub mod mlp_bn;
mod presets;
pub mod resnet;
pub mod rnn_lm;
pub mod sequential;
mod window;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::ImageShape;
use densenet::{DenseNet, DenseNetConfig};
pub use init::materialize;
pub(crate) use init::{book_conv, book_linear};
use lenet_bn::{LenetBn, LenetBnConfig};
use mlp_bn::{MlpBn, MlpBnConfig};
use resnet::{ResNet, ResNetConfig};
pub use rnn_lm::{Cell, RnnLm, RnnLmConfig};
pub use sequential::{LayerProblem, LayerSpec, Plan, Sequential, Shape};
pub(crate) use window::{Window, pixels};

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

    /// A `sequential` model's list walked from `shape` to `classes` values: the plan or every
    /// problem, by layer; `None` for the built-in kinds (their sizes are their modules').
    pub fn plan(&self, shape: ImageShape, classes: usize) -> Option<Result<Plan, Vec<LayerProblem>>> {
        matches!(self, Self::Sequential { .. }).then(|| self.layer_plan(shape, classes))
    }

    /// The model as a layer list ([`Self::as_layers`], a built-in kind's preset) walked from
    /// `shape` to `classes` values ([`sequential::plan`]).
    pub fn layer_plan(&self, shape: ImageShape, classes: usize) -> Result<Plan, Vec<LayerProblem>> {
        let input = Shape::Maps { channels: shape.channels, side: shape.height };
        sequential::plan(&self.as_layers(classes), input, classes)
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
