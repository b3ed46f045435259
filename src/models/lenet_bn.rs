//! LeNet with batch normalization, as in *Dive into Deep Learning* §8.5.
//!
//! Conv(1→6, 5x5) BN2d Sigmoid AvgPool(2) · Conv(6→16, 5x5) BN2d Sigmoid AvgPool(2) · Flatten ·
//! Linear(256→120) BN1d Sigmoid · Linear(120→84) BN1d Sigmoid · Linear(84→classes): 44,878
//! parameters for 1x28x28 inputs and 10 classes. Each BatchNorm sits between the affine or
//! convolution layer and its activation. `batch_norm = false` builds the same net without them.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::AvgPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::{Window, pixels};
use crate::fused::{avg_pool2, conv2d, sigmoid};

/// The two 5x5 convolutions, without padding.
const CONV: Window = Window::new(5, 1, 0);
/// The 2x2 average pooling after each convolution.
const POOL: Window = Window::new(2, 2, 0);
/// Channels out of the two convolutions.
const CHANNELS: [usize; 2] = [6, 16];
/// Units of the two hidden dense layers.
const UNITS: [usize; 2] = [120, 84];

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
    /// Sides of the feature maps out of conv1, pool1, conv2 and pool2 for `side`-pixel inputs:
    /// `None` from the first layer whose kernel does not fit.
    fn sides(side: usize) -> [Option<usize>; 4] {
        let conv1 = CONV.output_side(side);
        let pool1 = POOL.after(conv1);
        let conv2 = CONV.after(pool1);
        [conv1, pool1, conv2, POOL.after(conv2)]
    }

    /// Side of the feature maps the two convolutions and poolings leave from `side`-pixel
    /// inputs, or `None` when a kernel does not fit.
    pub fn feature_side(&self, side: usize) -> Option<usize> {
        Self::sides(side)[3]
    }

    /// Values the flatten hands the first dense layer (none when the images are too small).
    fn flat(&self) -> usize {
        CHANNELS[1] * pixels(self.feature_side(self.size))
    }

    /// Floats of activation one example keeps through a training step (see
    /// [`ClassifierSpec::activation_floats`](super::ClassifierSpec::activation_floats)): each
    /// convolution's, BatchNorm's and sigmoid's outputs and the pooled map, each dense layer's,
    /// BatchNorm's and sigmoid's outputs, and the logits, each with its gradient.
    pub fn activation_floats(&self) -> usize {
        let [conv1, pool1, conv2, pool2] = Self::sides(self.size).map(pixels);
        let [c1, c2] = CHANNELS;
        let maps = 3 * c1 * conv1 + c1 * pool1 + 3 * c2 * conv2 + c2 * pool2;
        2 * (maps + 3 * UNITS.iter().sum::<usize>() + self.classes)
    }

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let bn = |n: usize| if self.batch_norm { 2 * n } else { 0 };
        let conv = |cin: usize, cout: usize| cout * cin * CONV.area() + cout + bn(cout);
        let dense = |din: usize, dout: usize| din * dout + dout;
        let ([c1, c2], [u1, u2]) = (CHANNELS, UNITS);
        conv(self.channels, c1)
            + conv(c1, c2)
            + (dense(self.flat(), u1) + bn(u1))
            + (dense(u1, u2) + bn(u2))
            + dense(u2, self.classes)
    }

    /// Builds the net on `device` with fresh weights.
    pub fn init(&self, device: &Device) -> LenetBn {
        let bn = |n: usize| self.batch_norm.then(|| BatchNormConfig::new(n).init(device));
        let conv = |cin, cout| super::book_conv(CONV.conv(cin, cout), device);
        let linear = |din, dout| super::book_linear(din, dout, device);
        let ([c1, c2], [u1, u2]) = (CHANNELS, UNITS);
        LenetBn {
            conv1: conv(self.channels, c1),
            bn1: bn(c1),
            conv2: conv(c1, c2),
            bn2: bn(c2),
            pool: POOL.avg_pool().init(),
            fc1: linear(self.flat(), u1),
            bn3: bn(u1),
            fc2: linear(u1, u2),
            bn4: bn(u2),
            fc3: linear(u2, self.classes),
        }
    }
}

/// Applies an optional BatchNorm.
fn norm<const D: usize>(bn: &Option<BatchNorm>, x: Tensor<D>) -> Tensor<D> {
    match bn {
        Some(bn) => crate::fused::batch_norm(bn, x),
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
        let x = avg_pool2(&self.pool, sigmoid(norm(&self.bn1, conv2d(&self.conv1, images))));
        let x = avg_pool2(&self.pool, sigmoid(norm(&self.bn2, conv2d(&self.conv2, x))));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = sigmoid(norm(&self.bn3, self.fc1.forward(x)));
        let x = sigmoid(norm(&self.bn4, self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}
