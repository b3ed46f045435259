//! ResNet, as in *Dive into Deep Learning* §8.6, for small grey images.
//!
//! Stem: Conv(64, 7x7, stride 2, pad 3) BN ReLU MaxPool(3, stride 2, pad 1). Then stages of
//! residual blocks — conv3x3 BN ReLU conv3x3 BN, plus the shortcut, then ReLU — whose first block
//! halves the resolution (except in the first stage) with a 1x1 convolution on the shortcut
//! wherever the shape changes. Global average pool, Linear(classes). The book's ResNet-18 has
//! widths 64/128/256/512 and two blocks a stage: 11,178,378 parameters for 10 classes.

use crate::fused::{batch_norm, conv2d};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d};
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{Window, book_conv, book_linear, pixels};

/// Builds a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Input channels.
    #[config(default = 1)]
    pub channels: usize,
    /// Output classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Channels of each stage.
    #[config(default = "vec![64, 128, 256, 512]")]
    pub widths: Vec<usize>,
    /// Residual blocks in each stage.
    #[config(default = "vec![2, 2, 2, 2]")]
    pub blocks: Vec<usize>,
}

/// One residual block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct Residual {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// A 1x1 convolution when the block changes the shape; the identity otherwise.
    shortcut: Option<Conv2d>,
}

impl Residual {
    /// The block's 3x3 convolutions, padded by one: the first has the block's `stride`, the
    /// second 1, so it keeps the side.
    fn conv3(stride: usize) -> Window {
        Window::new(3, stride, 1)
    }

    /// The 1x1 convolution on the shortcut, with the block's `stride`.
    fn projection(stride: usize) -> Window {
        Window::new(1, stride, 0)
    }

    /// Whether a block from `cin` to `cout` channels with `stride` changes the shape, and so
    /// projects its shortcut.
    fn projects(cin: usize, cout: usize, stride: usize) -> bool {
        stride != 1 || cin != cout
    }

    /// A block from `cin` to `cout` channels with `stride` on its first convolution.
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let conv3 = |cin, stride| book_conv(Self::conv3(stride).conv(cin, cout), device);
        let shortcut = Self::projects(cin, cout, stride)
            .then(|| book_conv(Self::projection(stride).conv(cin, cout), device));
        Self {
            conv1: conv3(cin, stride),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv3(cout, 1),
            bn2: BatchNormConfig::new(cout).init(device),
            shortcut,
        }
    }

    /// Trainable parameters of a block from `cin` to `cout` channels.
    pub fn parameter_count(cin: usize, cout: usize, stride: usize) -> usize {
        let shortcut = if Self::projects(cin, cout, stride) {
            cin * cout * Self::projection(stride).area() + cout
        } else {
            0
        };
        let k = Self::conv3(stride).area();
        (cout * cin * k + cout) + 2 * cout + (cout * cout * k + cout) + 2 * cout + shortcut
    }

    /// Side of the block's output for an input `side` (`None` when a kernel does not fit).
    pub(crate) fn output_side(stride: usize, side: Option<usize>) -> Option<usize> {
        Self::conv3(1).after(Self::conv3(stride).after(side))
    }

    /// Floats a block from `cin` to `cout` channels keeps for one example whose output is
    /// `side` pixels wide: both convolutions' and BatchNorms' outputs, the first ReLU's, the sum
    /// and its ReLU, and the projected shortcut where there is one.
    pub(crate) fn activation_floats(cin: usize, cout: usize, stride: usize, side: Option<usize>) -> usize {
        (7 + usize::from(Self::projects(cin, cout, stride))) * cout * pixels(side)
    }

    /// # Shapes
    /// - `x`: `[batch, cin, h, w]`
    /// - output: `[batch, cout, h / stride, w / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_branch(x.clone(), self.residual(x))
    }

    /// The residual branch `bn2(conv2(relu(bn1(conv1(x)))))`.
    pub fn residual(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(batch_norm(&self.bn1, conv2d(&self.conv1, x)));
        batch_norm(&self.bn2, conv2d(&self.conv2, y))
    }

    /// `relu(branch + shortcut(x))`: the block's output given its residual branch.
    pub fn forward_branch(&self, x: Tensor<4>, branch: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.shortcut {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        relu(branch + shortcut)
    }
}

/// The network.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Stem,
    blocks: Vec<Residual>,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

/// The stem shared with DenseNet: Conv(out, 7x7, stride 2, pad 3) BN ReLU MaxPool(3, 2, pad 1).
#[derive(Module, Debug)]
pub struct Stem {
    conv: Conv2d,
    bn: BatchNorm,
    pool: MaxPool2d,
}

impl Stem {
    /// The 7x7 convolution with stride 2, padded by 3.
    const CONV: Window = Window::new(7, 2, 3);
    /// The 3x3 max pooling with stride 2, padded by 1.
    const POOL: Window = Window::new(3, 2, 1);

    /// A stem from `cin` to `out` channels.
    pub fn new(cin: usize, out: usize, device: &Device) -> Self {
        let conv = Self::CONV.conv(cin, out);
        let pool = Self::POOL.max_pool().init();
        Self { conv: book_conv(conv, device), bn: BatchNormConfig::new(out).init(device), pool }
    }

    /// Sides of the convolution's and the pooling's outputs for `side`-pixel images: `None`
    /// from the first whose kernel does not fit.
    fn sides(side: usize) -> [Option<usize>; 2] {
        let conv = Self::CONV.output_side(side);
        [conv, Self::POOL.after(conv)]
    }

    /// Side of the stem's output for `side`-pixel images (`None` when a kernel does not fit).
    pub(crate) fn output_side(side: usize) -> Option<usize> {
        Self::sides(side)[1]
    }

    /// Floats a stem to `out` channels keeps for one `side`-pixel image: the convolution's,
    /// BatchNorm's and ReLU's outputs and the pooled map.
    pub(crate) fn activation_floats(out: usize, side: usize) -> usize {
        let [conv, pooled] = Self::sides(side).map(pixels);
        3 * out * conv + out * pooled
    }

    /// # Shapes
    /// - `images`: `[batch, cin, h, w]`
    /// - output: `[batch, out, ~h / 4, ~w / 4]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        self.pool.forward(relu(batch_norm(&self.bn, conv2d(&self.conv, images))))
    }
}

/// Trainable parameters of a [`Stem`].
pub(crate) fn stem_parameter_count(cin: usize, out: usize) -> usize {
    out * cin * Stem::CONV.area() + out + 2 * out
}

impl ResNetConfig {
    /// The (input channels, output channels, stride) of every block, in order.
    fn layout(&self) -> Vec<(usize, usize, usize)> {
        let mut layout = Vec::new();
        let mut cin = self.widths[0];
        for (stage, (&width, &n)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                layout.push((cin, width, stride));
                cin = width;
            }
        }
        layout
    }

    /// Side of the feature maps the stem and the residual blocks leave from `side`-pixel
    /// images, or `None` when a kernel does not fit.
    pub fn feature_side(&self, side: usize) -> Option<usize> {
        let stem = Stem::output_side(side);
        self.layout().into_iter().fold(stem, |s, (_, _, stride)| Residual::output_side(stride, s))
    }

    /// Floats of activation one `side`-pixel example keeps through a training step (see
    /// [`ClassifierSpec::activation_floats`](super::ClassifierSpec::activation_floats)): the
    /// stem's and every block's outputs, the pooled features and the logits, each with its
    /// gradient.
    pub fn activation_floats(&self, side: usize) -> usize {
        let last = *self.widths.last().expect("at least one stage");
        let mut s = Stem::output_side(side);
        let mut total = Stem::activation_floats(self.widths[0], side);
        for (cin, cout, stride) in self.layout() {
            s = Residual::output_side(stride, s);
            total += Residual::activation_floats(cin, cout, stride, s);
        }
        2 * (total + last + self.classes)
    }

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let last = *self.widths.last().expect("at least one stage");
        stem_parameter_count(self.channels, self.widths[0])
            + self
                .layout()
                .into_iter()
                .map(|(cin, cout, s)| Residual::parameter_count(cin, cout, s))
                .sum::<usize>()
            + last * self.classes
            + self.classes
    }

    /// Builds the net on `device` with fresh weights.
    pub fn init(&self, device: &Device) -> ResNet {
        let last = *self.widths.last().expect("at least one stage");
        ResNet {
            stem: Stem::new(self.channels, self.widths[0], device),
            blocks: self
                .layout()
                .into_iter()
                .map(|(cin, cout, s)| Residual::new(cin, cout, s, device))
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: book_linear(last, self.classes, device),
        }
    }
}

impl ResNet {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(images);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn a_block_whose_residual_branch_is_zero_returns_relu_of_its_shortcut() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let zero = Tensor::<4>::zeros([2, 4, 6, 6], &device);
        let identity = Residual::new(4, 4, 1, &device);
        let out = identity.forward_branch(x.clone(), zero);
        assert!((out - relu(x.clone())).abs().max().into_scalar::<f32>() < 1e-6);

        // With a projection, the output is relu of the 1x1 convolution of the input.
        let down = Residual::new(4, 8, 2, &device);
        let zero = Tensor::<4>::zeros([2, 8, 3, 3], &device);
        let projected = down.shortcut.as_ref().expect("a shape change projects").forward(x.clone());
        let out = down.forward_branch(x.clone(), zero);
        assert!((out - relu(projected)).abs().max().into_scalar::<f32>() < 1e-6);
        assert_eq!(down.forward(x).dims(), [2, 8, 3, 3]);
    }
}
