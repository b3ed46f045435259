//! The book's dense block and transition block (*Dive into Deep Learning* §8.7), the
//! `dense_block` and `transition` layers of a layer list. A dense block's conv blocks (BN ReLU
//! Conv3x3 to `growth` channels) each concatenate their output onto their input along the
//! channels; a transition is BN ReLU Conv1x1 AvgPool(2, stride 2). DenseNet is a stem, dense
//! blocks with a transition halving the channels between each two, BN ReLU and a head
//! ([`super::presets`]): the book's net (stem 64, growth 32, four blocks of four) goes
//! 64→192→96→224→112→240→120→248 channels, 758,226 parameters for 10 classes.

use crate::fused::{avg_pool2, batch_norm_relu, conv2d};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::AvgPool2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use super::{Window, book_conv, pixels};

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
            let y = conv2d(&block.conv, batch_norm_relu(&block.bn, x.clone()));
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
        avg_pool2(&self.pool, conv2d(&self.conv, batch_norm_relu(&self.bn, x)))
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
}
