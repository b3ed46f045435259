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
mod tests {
    use super::*;

    const MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };

    #[test]
    fn lenet_bn_has_the_books_44878_parameters() {
        let spec = ClassifierSpec::LenetBn { batch_norm: true };
        let model = spec.init(MNIST, 10, &Device::flex().autodiff());
        assert_eq!(materialize(&model), 44_878);
        assert_eq!(spec.parameter_count(MNIST), 44_878);
        // Burn's own count includes the running mean and variance of the four BatchNorms.
        assert_eq!(model.num_params(), 44_878 + 2 * (6 + 16 + 120 + 84));
    }

    #[test]
    fn resnet18_and_densenet_have_the_books_parameter_counts() {
        let device = Device::flex().autodiff();
        for (spec, expected) in
            [(ClassifierSpec::resnet18(), 11_178_378), (ClassifierSpec::densenet_book(), 758_226)]
        {
            assert_eq!(spec.parameter_count(MNIST), expected, "{spec:?}");
            assert_eq!(materialize(&spec.init(MNIST, 10, &device)), expected, "{spec:?}");
        }
    }

    #[test]
    fn resnet_and_densenet_classify_28_and_96_pixel_images() {
        let device = Device::flex();
        let small_resnet = ClassifierSpec::Resnet { depth: 18, widths: vec![8, 16], blocks: vec![1, 1] };
        let small_densenet =
            ClassifierSpec::Densenet { growth_rate: 4, blocks: vec![2, 2], stem_channels: 8 };
        assert!(!ClassifierSpec::densenet_book().fits(28), "four dense blocks pool 28 pixels away");
        assert_eq!(ClassifierSpec::LenetBn { batch_norm: true }.smallest_side(), 16);
        for spec in
            [ClassifierSpec::resnet18(), ClassifierSpec::densenet_book(), small_resnet, small_densenet]
        {
            let model = spec.init(MNIST, 10, &device);
            for side in [28, 96].into_iter().filter(|s| spec.fits(*s)) {
                let logits = model.forward(Tensor::zeros([2, 1, side, side], &device));
                assert_eq!(logits.dims(), [2, 10], "{spec:?} at {side}");
            }
        }
    }

    #[test]
    fn parameter_counts_match_the_built_modules() {
        let specs = [
            ClassifierSpec::Resnet { depth: 34, widths: vec![8, 16, 32], blocks: vec![3, 4, 6] },
            ClassifierSpec::Densenet { growth_rate: 12, blocks: vec![3, 2, 5], stem_channels: 24 },
            ClassifierSpec::LenetBn { batch_norm: false },
            ClassifierSpec::MlpBn { hidden: vec![256, 128], activation: Activation::Relu, batch_norm: true },
            ClassifierSpec::MlpBn { hidden: vec![32], activation: Activation::Sigmoid, batch_norm: false },
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
            ClassifierSpec::LenetBn { batch_norm: true },
            ClassifierSpec::MlpBn { hidden: vec![16], activation: Activation::Relu, batch_norm: true },
        ] {
            let logits = spec.init(MNIST, 10, &device).forward(Tensor::zeros([3, 1, 28, 28], &device));
            assert_eq!(logits.dims(), [3, 10], "{spec:?}");
        }
    }

    #[test]
    fn activation_estimates_grow_with_image_size_and_depth() {
        let at = |side| ImageShape { channels: 1, height: side, width: side };
        let resnet = ClassifierSpec::resnet18();
        assert!(resnet.activation_floats(at(96)) > 10 * resnet.activation_floats(at(28)));
        let deeper =
            ClassifierSpec::Resnet { depth: 34, widths: vec![64, 128, 256, 512], blocks: vec![3, 4, 6, 3] };
        assert!(deeper.activation_floats(at(96)) > resnet.activation_floats(at(96)));
        let lenet = ClassifierSpec::LenetBn { batch_norm: true };
        assert!(lenet.activation_floats(MNIST) < resnet.activation_floats(MNIST));
        for spec in [resnet, ClassifierSpec::densenet_book(), lenet] {
            println!("{spec:?}: {} floats per example at 96", spec.activation_floats(at(96)));
        }
    }
}
