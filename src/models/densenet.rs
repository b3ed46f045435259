//! DenseNet, as in *Dive into Deep Learning* §8.7, for small grey images.
//!
//! The ResNet stem; dense blocks whose conv blocks (BN ReLU Conv3x3 to `growth_rate` channels)
//! each concatenate their output onto their input along channels; between blocks, transitions
//! BN ReLU Conv1x1 (halving the channels) AvgPool(2, stride 2); then BN ReLU, global average
//! pool, Linear(classes). The book's net (stem 64, growth 32, four blocks of four) goes
//! 64→192→96→224→112→240→120→248 channels: 758,226 parameters for 10 classes.

use crate::fused::{batch_norm, conv2d};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d};
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::resnet::{Stem, stem_parameter_count};
use super::{Window, book_conv, book_linear, pixels};

/// Builds a [`DenseNet`].
#[derive(Config, Debug)]
pub struct DenseNetConfig {
    /// Input channels.
    #[config(default = 1)]
    pub channels: usize,
    /// Output classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Channels out of the stem.
    #[config(default = 64)]
    pub stem_channels: usize,
    /// Channels each conv block adds.
    #[config(default = 32)]
    pub growth_rate: usize,
    /// Conv blocks in each dense block.
    #[config(default = "vec![4, 4, 4, 4]")]
    pub blocks: Vec<usize>,
}

/// BN ReLU Conv3x3 to `growth` channels.
#[derive(Module, Debug)]
struct ConvBlock {
    bn: BatchNorm,
    conv: Conv2d,
}

/// Conv blocks whose outputs pile up along the channels.
#[derive(Module, Debug)]
pub struct DenseBlock {
    convs: Vec<ConvBlock>,
}

impl DenseBlock {
    /// The 3x3 convolution of each conv block, padded by one, so it keeps the side.
    const CONV: Window = Window::new(3, 1, 1);

    /// `n` conv blocks on `cin` input channels, each adding `growth`.
    pub fn new(n: usize, cin: usize, growth: usize, device: &Device) -> Self {
        let convs = (0..n)
            .map(|i| {
                let c = cin + i * growth;
                let conv = Self::CONV.conv(c, growth);
                ConvBlock { bn: BatchNormConfig::new(c).init(device), conv: book_conv(conv, device) }
            })
            .collect();
        Self { convs }
    }

    pub(crate) fn parameter_count(n: usize, cin: usize, growth: usize) -> usize {
        (0..n).map(|i| cin + i * growth).map(|c| 2 * c + growth * c * Self::CONV.area() + growth).sum()
    }

    /// Side of the output of `n` conv blocks for an input `side` (`None` when a kernel does not
    /// fit).
    fn output_side(n: usize, side: Option<usize>) -> Option<usize> {
        (0..n).fold(side, |s, _| Self::CONV.after(s))
    }

    /// Floats `n` conv blocks on `cin` channels keep for one example `side` pixels wide: each
    /// conv block's BatchNorm and ReLU outputs, its convolution's and the concatenation.
    pub(crate) fn activation_floats(n: usize, cin: usize, growth: usize, side: Option<usize>) -> usize {
        let (input, output) = (pixels(side), pixels(Self::CONV.after(side)));
        (0..n).map(|i| cin + i * growth).map(|c| 2 * c * input + (growth + (c + growth)) * output).sum()
    }

    /// # Shapes
    /// - `x`: `[batch, cin, h, w]`
    /// - output: `[batch, cin + n * growth, h, w]`
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for block in &self.convs {
            let y = conv2d(&block.conv, relu(batch_norm(&block.bn, x.clone())));
            x = Tensor::cat(vec![x, y], 1);
        }
        x
    }
}

/// BN ReLU Conv1x1 AvgPool(2, stride 2): DenseNet's halves the channels, a layer list's goes to
/// any number.
#[derive(Module, Debug)]
pub struct Transition {
    bn: BatchNorm,
    conv: Conv2d,
    pool: AvgPool2d,
}

impl Transition {
    /// The 1x1 convolution.
    const CONV: Window = Window::new(1, 1, 0);
    /// The 2x2 average pooling with stride 2.
    const POOL: Window = Window::new(2, 2, 0);

    /// A transition from `cin` channels to `cout`.
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            bn: BatchNormConfig::new(cin).init(device),
            conv: book_conv(Self::CONV.conv(cin, cout), device),
            pool: Self::POOL.avg_pool().init(),
        }
    }

    /// Trainable parameters of a transition from `cin` channels to `cout`.
    pub(crate) fn parameter_count(cin: usize, cout: usize) -> usize {
        2 * cin + cout * cin * Self::CONV.area() + cout
    }

    /// Sides of the convolution's and the pooling's outputs for an input `side`: `None` from
    /// the first whose kernel does not fit.
    pub(crate) fn sides(side: Option<usize>) -> [Option<usize>; 2] {
        let conv = Self::CONV.after(side);
        [conv, Self::POOL.after(conv)]
    }

    /// Floats a transition from `cin` to `cout` channels keeps for one example `side` pixels
    /// wide: the BatchNorm's and ReLU's outputs, the convolution's and the pooled map.
    pub(crate) fn activation_floats(cin: usize, cout: usize, side: Option<usize>) -> usize {
        let [conv, pooled] = Self::sides(side).map(pixels);
        2 * cin * pixels(side) + cout * conv + cout * pooled
    }

    /// # Shapes
    /// - `x`: `[batch, cin, h, w]`
    /// - output: `[batch, cout, h / 2, w / 2]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(conv2d(&self.conv, relu(batch_norm(&self.bn, x))))
    }
}

/// The network.
#[derive(Module, Debug)]
pub struct DenseNet {
    stem: Stem,
    dense: Vec<DenseBlock>,
    transitions: Vec<Transition>,
    bn: BatchNorm,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl DenseNetConfig {
    /// Channels after the last dense block.
    fn final_channels(&self) -> usize {
        let mut c = self.stem_channels;
        for (i, &n) in self.blocks.iter().enumerate() {
            c += n * self.growth_rate;
            if i + 1 < self.blocks.len() {
                c /= 2;
            }
        }
        c
    }

    /// Side of the feature maps the stem, the dense blocks and the transitions leave from
    /// `side`-pixel images, or `None` when a kernel does not fit.
    pub fn feature_side(&self, side: usize) -> Option<usize> {
        let mut s = Stem::output_side(side);
        for (i, &n) in self.blocks.iter().enumerate() {
            s = DenseBlock::output_side(n, s);
            if i + 1 < self.blocks.len() {
                s = Transition::sides(s)[1];
            }
        }
        s
    }

    /// Floats of activation one `side`-pixel example keeps through a training step (see
    /// [`ClassifierSpec::activation_floats`](super::ClassifierSpec::activation_floats)): the
    /// stem's, every dense block's and transition's outputs, the last BatchNorm's and ReLU's,
    /// the pooled features and the logits, each with its gradient.
    pub fn activation_floats(&self, side: usize) -> usize {
        let mut s = Stem::output_side(side);
        let mut total = Stem::activation_floats(self.stem_channels, side);
        let mut c = self.stem_channels;
        for (i, &n) in self.blocks.iter().enumerate() {
            total += DenseBlock::activation_floats(n, c, self.growth_rate, s);
            s = DenseBlock::output_side(n, s);
            c += n * self.growth_rate;
            if i + 1 < self.blocks.len() {
                total += Transition::activation_floats(c, c / 2, s);
                s = Transition::sides(s)[1];
                c /= 2;
            }
        }
        2 * (total + 2 * c * pixels(s) + c + self.classes)
    }

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let mut total = stem_parameter_count(self.channels, self.stem_channels);
        let mut c = self.stem_channels;
        for (i, &n) in self.blocks.iter().enumerate() {
            total += DenseBlock::parameter_count(n, c, self.growth_rate);
            c += n * self.growth_rate;
            if i + 1 < self.blocks.len() {
                total += Transition::parameter_count(c, c / 2);
                c /= 2;
            }
        }
        total + 2 * c + c * self.classes + self.classes
    }

    /// Builds the net on `device` with fresh weights.
    pub fn init(&self, device: &Device) -> DenseNet {
        let mut dense = Vec::new();
        let mut transitions = Vec::new();
        let mut c = self.stem_channels;
        for (i, &n) in self.blocks.iter().enumerate() {
            dense.push(DenseBlock::new(n, c, self.growth_rate, device));
            c += n * self.growth_rate;
            if i + 1 < self.blocks.len() {
                transitions.push(Transition::new(c, c / 2, device));
                c /= 2;
            }
        }
        DenseNet {
            stem: Stem::new(self.channels, self.stem_channels, device),
            dense,
            transitions,
            bn: BatchNormConfig::new(c).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: book_linear(self.final_channels(), self.classes, device),
        }
    }
}

impl DenseNet {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(images);
        for (i, block) in self.dense.iter().enumerate() {
            x = block.forward(x);
            if let Some(t) = self.transitions.get(i) {
                x = t.forward(x);
            }
        }
        let x = relu(batch_norm(&self.bn, x));
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dense_block_adds_growth_channels_per_conv_block_and_keeps_its_input() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([2, 5, 7, 7], &device);
        let block = DenseBlock::new(3, 5, 4, &device);
        let y = block.forward(x.clone());
        assert_eq!(y.dims(), [2, 5 + 3 * 4, 7, 7]);
        let kept = y.slice([0..2, 0..5]);
        assert!((kept - x).abs().max().into_scalar::<f32>() < 1e-6, "the input is passed through");
    }

    #[test]
    fn transitions_halve_the_channels_as_the_book_lists_them() {
        let config = DenseNetConfig::new();
        assert_eq!(config.final_channels(), 248);
    }
}
