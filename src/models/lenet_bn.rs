//! LeNet with batch normalization, as in *Dive into Deep Learning* §8.5.
//!
//! Conv(1→6, 5x5) BN2d Sigmoid AvgPool(2) · Conv(6→16, 5x5) BN2d Sigmoid AvgPool(2) · Flatten ·
//! Linear(256→120) BN1d Sigmoid · Linear(120→84) BN1d Sigmoid · Linear(84→classes): 44,878
//! parameters for 1x28x28 inputs and 10 classes. Each BatchNorm sits between the affine or
//! convolution layer and its activation. `batch_norm = false` builds the same net without them.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

/// Builds a [`LenetBn`].
#[derive(Config, Debug)]
pub struct LenetBnConfig {
    /// Input channels.
    #[config(default = 1)]
    pub channels: usize,
    /// Input height and width (square images).
    #[config(default = 28)]
    pub size: usize,
    /// Output classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Whether to put BatchNorm layers before each sigmoid.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// The network.
#[derive(Module, Debug)]
pub struct LenetBn {
    conv1: Conv2d,
    bn1: Option<BatchNorm>,
    conv2: Conv2d,
    bn2: Option<BatchNorm>,
    pool: AvgPool2d,
    fc1: Linear,
    bn3: Option<BatchNorm>,
    fc2: Linear,
    bn4: Option<BatchNorm>,
    fc3: Linear,
}

impl LenetBnConfig {
    /// Side of the feature maps after the second pooling.
    fn final_side(&self) -> usize {
        ((self.size - 4) / 2 - 4) / 2
    }

    fn flat(&self) -> usize {
        16 * self.final_side() * self.final_side()
    }

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let bn = |n: usize| if self.batch_norm { 2 * n } else { 0 };
        let conv = (6 * self.channels * 25 + 6) + bn(6) + (16 * 6 * 25 + 16) + bn(16);
        let dense = (self.flat() * 120 + 120)
            + bn(120)
            + (120 * 84 + 84)
            + bn(84)
            + (84 * self.classes + self.classes);
        conv + dense
    }

    /// Builds the net on `device` with fresh weights.
    pub fn init(&self, device: &Device) -> LenetBn {
        let bn = |n: usize| self.batch_norm.then(|| BatchNormConfig::new(n).init(device));
        let conv = |cin, cout| super::book_conv(Conv2dConfig::new([cin, cout], [5, 5]), device);
        let linear = |din, dout| super::book_linear(din, dout, device);
        LenetBn {
            conv1: conv(self.channels, 6),
            bn1: bn(6),
            conv2: conv(6, 16),
            bn2: bn(16),
            pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: linear(self.flat(), 120),
            bn3: bn(120),
            fc2: linear(120, 84),
            bn4: bn(84),
            fc3: linear(84, self.classes),
        }
    }
}

/// Applies an optional BatchNorm.
fn norm<const D: usize>(bn: &Option<BatchNorm>, x: Tensor<D>) -> Tensor<D> {
    match bn {
        Some(bn) => bn.forward(x),
        None => x,
    }
}

impl LenetBn {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, size, size]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(sigmoid(norm(&self.bn1, self.conv1.forward(images))));
        let x = self.pool.forward(sigmoid(norm(&self.bn2, self.conv2.forward(x))));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = sigmoid(norm(&self.bn3, self.fc1.forward(x)));
        let x = sigmoid(norm(&self.bn4, self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}
