//! The built-in image classifiers as layer lists: `lenet_bn`, `mlp_bn`, `resnet` and `densenet`
//! as the book writes them with `nn.Sequential`, in the layer kinds of [`super::sequential`].
//! A built-in kind is its preset: it is planned, built, trained and shown (in a job's view and
//! its dry run) exactly as the same list written out would be.

use super::sequential::{
    Conv2dLayer, DenseBlockLayer, LayerSpec, LinearLayer, NoSettings, PoolLayer, ResidualLayer,
    TransitionLayer,
};
use super::{Activation, ClassifierSpec};

fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv2d(Conv2dLayer { out, kernel, stride, padding, input: None })
}

fn linear(out: usize) -> LayerSpec {
    LayerSpec::Linear(LinearLayer { out, input: None })
}

fn none() -> NoSettings {
    NoSettings {}
}

/// Conv(out, 7×7, stride 2, pad 3) BN ReLU MaxPool(3, stride 2, pad 1): ResNet's and DenseNet's.
fn stem(out: usize) -> Vec<LayerSpec> {
    vec![
        conv(out, 7, 2, 3),
        LayerSpec::BatchNorm(none()),
        LayerSpec::Relu(none()),
        LayerSpec::MaxPool2d(PoolLayer { kernel: 3, stride: Some(2), padding: 1 }),
    ]
}

/// Global average pool, flatten and the classifier.
fn head(classes: usize) -> [LayerSpec; 3] {
    [LayerSpec::GlobalAvgPool(none()), LayerSpec::Flatten(none()), linear(classes)]
}

impl ClassifierSpec {
    /// The model as a layer list ending in `classes` values: a built-in kind's preset, or a
    /// `sequential` model's own list.
    pub fn as_layers(&self, classes: usize) -> Vec<LayerSpec> {
        match self {
            Self::LenetBn { batch_norm } => lenet(*batch_norm, classes),
            Self::MlpBn { hidden, activation, batch_norm } => mlp(hidden, *activation, *batch_norm, classes),
            Self::Resnet { widths, blocks, .. } => resnet(widths, blocks, classes),
            Self::Densenet { growth_rate, blocks, stem_channels } => {
                densenet(*growth_rate, blocks, *stem_channels, classes)
            }
            Self::Sequential { layers } => layers.clone(),
        }
    }
}

/// BatchNorm when `batch_norm`, then the activation.
fn normed(batch_norm: bool, activation: LayerSpec) -> Vec<LayerSpec> {
    let mut layers = Vec::with_capacity(2);
    if batch_norm {
        layers.push(LayerSpec::BatchNorm(none()));
    }
    layers.push(activation);
    layers
}

/// The book's §8.5: two 5×5 convolutions (6 and 16 channels) each with BatchNorm, sigmoid and a
/// 2×2 average pool, then 120 and 84 units, each with BatchNorm and sigmoid.
fn lenet(batch_norm: bool, classes: usize) -> Vec<LayerSpec> {
    let pool = || LayerSpec::AvgPool2d(PoolLayer { kernel: 2, stride: Some(2), padding: 0 });
    let sigmoid = || LayerSpec::Sigmoid(none());
    let mut layers = Vec::new();
    for out in [6, 16] {
        layers.push(conv(out, 5, 1, 0));
        layers.extend(normed(batch_norm, sigmoid()));
        layers.push(pool());
    }
    layers.push(LayerSpec::Flatten(none()));
    for out in [120, 84] {
        layers.push(linear(out));
        layers.extend(normed(batch_norm, sigmoid()));
    }
    layers.push(linear(classes));
    layers
}

/// Flatten, then per hidden width an affine layer, BatchNorm and the activation.
fn mlp(hidden: &[usize], activation: Activation, batch_norm: bool, classes: usize) -> Vec<LayerSpec> {
    let activation = || match activation {
        Activation::Relu => LayerSpec::Relu(none()),
        Activation::Sigmoid => LayerSpec::Sigmoid(none()),
    };
    let mut layers = vec![LayerSpec::Flatten(none())];
    for &width in hidden {
        layers.push(linear(width));
        layers.extend(normed(batch_norm, activation()));
    }
    layers.push(linear(classes));
    layers
}

/// The stem, then `blocks[i]` residual blocks of `widths[i]` channels per stage, the first of
/// every stage after the first with stride 2.
fn resnet(widths: &[usize], blocks: &[usize], classes: usize) -> Vec<LayerSpec> {
    let mut layers = stem(widths.first().copied().unwrap_or(64));
    for (stage, (&out, &n)) in widths.iter().zip(blocks).enumerate() {
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            layers.push(LayerSpec::Residual(ResidualLayer { out, stride }));
        }
    }
    layers.extend(head(classes));
    layers
}

/// The stem, dense blocks with a transition halving the channels between each two, then
/// BatchNorm and ReLU before the head.
fn densenet(growth: usize, blocks: &[usize], stem_channels: usize, classes: usize) -> Vec<LayerSpec> {
    let mut layers = stem(stem_channels);
    let mut channels = stem_channels;
    for (i, &convs) in blocks.iter().enumerate() {
        layers.push(LayerSpec::DenseBlock(DenseBlockLayer { convs, growth }));
        channels += convs * growth;
        if i + 1 < blocks.len() {
            channels /= 2;
            layers.push(LayerSpec::Transition(TransitionLayer { out: channels }));
        }
    }
    layers.extend([LayerSpec::BatchNorm(none()), LayerSpec::Relu(none())]);
    layers.extend(head(classes));
    layers
}

#[cfg(test)]
mod tests {
    use super::super::sequential::{Shape, plan};
    use super::*;
    use crate::data::ImageShape;

    const MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };

    #[test]
    fn presets_have_the_books_parameter_counts_and_their_built_modules_as_many() {
        let mlp = |hidden: Vec<usize>, activation, batch_norm| ClassifierSpec::MlpBn {
            hidden,
            activation,
            batch_norm,
        };
        let specs = [
            (ClassifierSpec::LenetBn { batch_norm: true }, 28, Some(44_878)),
            // Without its four BatchNorms' 2 × (6 + 16 + 120 + 84) scales and shifts.
            (ClassifierSpec::LenetBn { batch_norm: false }, 28, Some(44_426)),
            // 784·256 + 256 + 512, 256·128 + 128 + 256, 128·10 + 10.
            (mlp(vec![256, 128], Activation::Relu, true), 28, Some(235_914)),
            (mlp(vec![32], Activation::Sigmoid, false), 28, Some(784 * 32 + 32 + 32 * 10 + 10)),
            (ClassifierSpec::resnet18(), 96, Some(11_178_378)),
            (ClassifierSpec::Resnet { depth: 34, widths: vec![8, 16, 32], blocks: vec![3, 4, 6] }, 28, None),
            (ClassifierSpec::densenet_book(), 96, Some(758_226)),
            (
                ClassifierSpec::Densenet { growth_rate: 12, blocks: vec![3, 2, 5], stem_channels: 24 },
                64,
                None,
            ),
        ];
        let device = burn::tensor::Device::flex().autodiff();
        for (spec, side, expected) in specs {
            let shape = ImageShape { height: side, width: side, ..MNIST };
            let planned = plan(&spec.as_layers(10), Shape::Maps { channels: 1, side }, 10)
                .unwrap_or_else(|e| panic!("{spec:?}: {e:?}"));
            if let Some(expected) = expected {
                assert_eq!(planned.parameters(), expected, "{spec:?}");
            }
            let built = crate::models::materialize(&spec.init(shape, 10, &device));
            assert_eq!(built, planned.parameters(), "{spec:?}: the plan counts what the builder makes");
        }
    }

    #[test]
    fn the_books_densenet_goes_through_the_books_channel_counts() {
        let planned =
            plan(&ClassifierSpec::densenet_book().as_layers(10), Shape::Maps { channels: 1, side: 96 }, 10)
                .unwrap();
        let channels: Vec<usize> = planned
            .layers
            .iter()
            .filter(|l| {
                matches!(l.spec, LayerSpec::Conv2d(_) | LayerSpec::DenseBlock(_) | LayerSpec::Transition(_))
            })
            .map(|l| match l.output {
                Shape::Maps { channels, .. } => channels,
                Shape::Flat(n) => n,
            })
            .collect();
        assert_eq!(channels, [64, 192, 96, 224, 112, 240, 120, 248]);
    }
}
