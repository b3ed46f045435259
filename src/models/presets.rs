//! The built-in image classifiers written as layer lists: `lenet_bn`, `mlp_bn`, `resnet` and
//! `densenet` as the book writes them with `nn.Sequential`, in the layer kinds of
//! [`super::sequential`]. A job's view and its dry run show a built-in model through its list;
//! tests check that each list has the built-in module's exact parameter count, and
//! (`train/fit/tests.rs`) that LeNet-BN's list trains to the very same step losses as its module.

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
    fn each_preset_has_its_modules_exact_parameter_count() {
        let specs = [
            (ClassifierSpec::LenetBn { batch_norm: true }, 28),
            (ClassifierSpec::LenetBn { batch_norm: false }, 28),
            (
                ClassifierSpec::MlpBn {
                    hidden: vec![256, 128],
                    activation: Activation::Relu,
                    batch_norm: true,
                },
                28,
            ),
            (
                ClassifierSpec::MlpBn {
                    hidden: vec![32],
                    activation: Activation::Sigmoid,
                    batch_norm: false,
                },
                28,
            ),
            (ClassifierSpec::resnet18(), 96),
            (ClassifierSpec::Resnet { depth: 34, widths: vec![8, 16, 32], blocks: vec![3, 4, 6] }, 28),
            (ClassifierSpec::densenet_book(), 96),
            (ClassifierSpec::Densenet { growth_rate: 12, blocks: vec![3, 2, 5], stem_channels: 24 }, 64),
        ];
        for (spec, side) in specs {
            let shape = ImageShape { height: side, width: side, ..MNIST };
            let planned = plan(&spec.as_layers(10), Shape::Maps { channels: 1, side }, 10)
                .unwrap_or_else(|e| panic!("{spec:?}: {e:?}"));
            assert_eq!(planned.parameters(), spec.parameter_count(shape, 10), "{spec:?}");
        }
        let book = |spec: ClassifierSpec| {
            plan(&spec.as_layers(10), Shape::Maps { channels: 1, side: 96 }, 10).unwrap().parameters()
        };
        assert_eq!(book(ClassifierSpec::resnet18()), 11_178_378);
        assert_eq!(book(ClassifierSpec::densenet_book()), 758_226);
        let lenet = plan(&lenet(true, 10), Shape::Maps { channels: 1, side: 28 }, 10).unwrap();
        assert_eq!(lenet.parameters(), 44_878);
    }
}
