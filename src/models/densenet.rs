//! DenseNet, as in *Dive into Deep Learning* §8.7, for small grey images.
//!
//! The ResNet stem; dense blocks whose conv blocks (BN ReLU Conv3x3 to `growth_rate` channels)
//! each concatenate their output onto their input along channels; between blocks, transitions
//! BN ReLU Conv1x1 (halving the channels) AvgPool(2, stride 2); then BN ReLU, global average
//! pool, Linear(classes). The book's net (stem 64, growth 32, four blocks of four) goes
//! 64→192→96→224→112→240→120→248 channels: 758,226 parameters for 10 classes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::resnet::{Stem, stem_parameter_count};
use super::{book_conv, book_linear};

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
    /// `n` conv blocks on `cin` input channels, each adding `growth`.
    pub fn new(n: usize, cin: usize, growth: usize, device: &Device) -> Self {
        let convs = (0..n)
            .map(|i| {
                let c = cin + i * growth;
                let conv = Conv2dConfig::new([c, growth], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
                ConvBlock { bn: BatchNormConfig::new(c).init(device), conv: book_conv(conv, device) }
            })
            .collect();
        Self { convs }
    }

    fn parameter_count(n: usize, cin: usize, growth: usize) -> usize {
        (0..n).map(|i| cin + i * growth).map(|c| 2 * c + growth * c * 9 + growth).sum()
    }

    /// # Shapes
    /// - `x`: `[batch, cin, h, w]`
    /// - output: `[batch, cin + n * growth, h, w]`
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for block in &self.convs {
            let y = block.conv.forward(relu(block.bn.forward(x.clone())));
            x = Tensor::cat(vec![x, y], 1);
        }
        x
    }
}

/// BN ReLU Conv1x1 (to half the channels) AvgPool(2, stride 2).
#[derive(Module, Debug)]
struct Transition {
    bn: BatchNorm,
    conv: Conv2d,
    pool: AvgPool2d,
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

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let mut total = stem_parameter_count(self.channels, self.stem_channels);
        let mut c = self.stem_channels;
        for (i, &n) in self.blocks.iter().enumerate() {
            total += DenseBlock::parameter_count(n, c, self.growth_rate);
            c += n * self.growth_rate;
            if i + 1 < self.blocks.len() {
                total += 2 * c + (c / 2) * c + c / 2;
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
                transitions.push(Transition {
                    bn: BatchNormConfig::new(c).init(device),
                    conv: book_conv(Conv2dConfig::new([c, c / 2], [1, 1]), device),
                    pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                });
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
                x = t.pool.forward(t.conv.forward(relu(t.bn.forward(x))));
            }
        }
        let x = relu(self.bn.forward(x));
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
