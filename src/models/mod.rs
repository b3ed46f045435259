//! The models kiln trains, each built from a spec.
//!
//! [`ModelSpec`] is the `model` of a job definition: an image classifier ([`ClassifierSpec`],
//! built into a [`Classifier`] for a data set's image shape and class count) or a language model
//! ([`LanguageModelSpec`], built into an [`RnnLm`] for a vocabulary). Each gives its parameter
//! count without being built, so validation refuses models over the server's cap.
//!
//! Every image classifier is a layer list: a `sequential` model's own, or a built-in kind's
//! preset ([`presets`]: LeNet-BN, the MLP, ResNet and DenseNet as the book writes them). One
//! [`sequential::plan`] of that list for the image shape knows the layers' shapes, parameters
//! and activation, and one builder ([`Sequential`]) makes the module; [`legacy`] names the
//! weights of checkpoints written before, when the built-in kinds were modules of their own.

pub mod dense;
mod init;
pub mod legacy;
mod presets;
pub mod residual;
pub mod rnn_lm;
pub mod sequential;
mod window;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::ImageShape;
pub use init::materialize;
pub(crate) use init::{book_conv, book_linear};
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
            Self::Classifier(spec) => spec.kind(),
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

/// An image classifier of any kind kiln trains: the network of its layer list.
pub type Classifier = Sequential;

impl ClassifierSpec {
    /// The `kind` a job definition names it by.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LenetBn { .. } => "lenet_bn",
            Self::MlpBn { .. } => "mlp_bn",
            Self::Resnet { .. } => "resnet",
            Self::Densenet { .. } => "densenet",
            Self::Sequential { .. } => "sequential",
        }
    }

    /// The book's ResNet-18.
    pub fn resnet18() -> Self {
        Self::Resnet { depth: 18, widths: vec![64, 128, 256, 512], blocks: vec![2, 2, 2, 2] }
    }

    /// The book's DenseNet.
    pub fn densenet_book() -> Self {
        Self::Densenet { growth_rate: 32, blocks: vec![4, 4, 4, 4], stem_channels: 64 }
    }

    /// A `sequential` model's list walked from `shape` to `classes` values: the plan or every
    /// problem, by layer; `None` for the built-in kinds, whose presets fit any image they take
    /// (an image too small for one is refused by its smallest side instead).
    pub fn plan(&self, shape: ImageShape, classes: usize) -> Option<Result<Plan, Vec<LayerProblem>>> {
        matches!(self, Self::Sequential { .. }).then(|| self.layer_plan(shape, classes))
    }

    /// The model as a layer list ([`Self::as_layers`], a built-in kind's preset) walked from
    /// `shape` to `classes` values ([`sequential::plan`]).
    pub fn layer_plan(&self, shape: ImageShape, classes: usize) -> Result<Plan, Vec<LayerProblem>> {
        let input = Shape::Maps { channels: shape.channels, side: shape.height };
        sequential::plan(&self.as_layers(classes), input, classes)
    }

    /// Whether images of `shape` go through every layer of the model for `classes` classes.
    pub fn fits(&self, shape: ImageShape, classes: usize) -> bool {
        self.layer_plan(shape, classes).is_ok()
    }

    /// The smallest square image side the model (for images of `shape`'s channels and
    /// `classes` classes) can take.
    pub fn smallest_side(&self, shape: ImageShape, classes: usize) -> usize {
        let fits = |side| self.fits(ImageShape { height: side, width: side, ..shape }, classes);
        (1..4096).find(|s| fits(*s)).unwrap_or(4096)
    }

    /// Floats of activation one example keeps alive through a training step: every layer's
    /// output, each kept for the backward pass and matched by a gradient of the same size.
    /// An estimate for admission control (with Burn's own workspace on top), not an accounting;
    /// 0 for images the model does not fit.
    pub fn activation_floats(&self, shape: ImageShape, classes: usize) -> usize {
        self.layer_plan(shape, classes).map_or(0, |plan| plan.activation_floats())
    }

    /// Trainable parameters of the model for inputs of `shape` and `classes` classes; 0 for
    /// images it does not fit.
    pub fn parameter_count(&self, shape: ImageShape, classes: usize) -> usize {
        self.layer_plan(shape, classes).map_or(0, |plan| plan.parameters())
    }

    /// Builds the model with fresh weights on `device`, layer by layer in the list's order.
    ///
    /// # Panics
    /// When the list does not fit `shape`: validation refuses such a job before anything builds.
    pub fn init(&self, shape: ImageShape, classes: usize, device: &Device) -> Classifier {
        let plan = self.layer_plan(shape, classes).unwrap_or_else(|problems| {
            panic!("{} does not fit {shape:?}, validation refuses it: {problems:?}", self.kind())
        });
        Sequential::new(&plan, device)
    }
}

#[cfg(test)]
mod tests;
