//! ResNet, as in *Dive into Deep Learning* §8.6, for small grey images.
//!
//! Stem: Conv(64, 7x7, stride 2, pad 3) BN ReLU MaxPool(3, stride 2, pad 1). Then stages of
//! residual blocks — conv3x3 BN ReLU conv3x3 BN, plus the shortcut, then ReLU — whose first block
//! halves the resolution (except in the first stage) with a 1x1 convolution on the shortcut
//! wherever the shape changes. Global average pool, Linear(classes). The book's ResNet-18 has
//! widths 64/128/256/512 and two blocks a stage: 11,178,378 parameters for 10 classes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{book_conv, book_linear};

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
    /// A block from `cin` to `cout` channels with `stride` on its first convolution.
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let conv3 = |cin, stride| {
            let config = Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
            book_conv(config, device)
        };
        let shortcut = (stride != 1 || cin != cout)
            .then(|| book_conv(Conv2dConfig::new([cin, cout], [1, 1]).with_stride([stride, stride]), device));
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
        let shortcut = if stride != 1 || cin != cout { cin * cout + cout } else { 0 };
        (cout * cin * 9 + cout) + 2 * cout + (cout * cout * 9 + cout) + 2 * cout + shortcut
    }

    /// # Shapes
    /// - `x`: `[batch, cin, h, w]`
    /// - output: `[batch, cout, h / stride, w / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_branch(x.clone(), self.residual(x))
    }

    /// The residual branch `bn2(conv2(relu(bn1(conv1(x)))))`.
    pub fn residual(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        self.bn2.forward(self.conv2.forward(y))
    }

    /// `relu(branch + shortcut(x))`: the block's output given its residual branch.
    pub fn forward_branch(&self, x: Tensor<4>, branch: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(x),
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
    /// A stem from `cin` to `out` channels.
    pub fn new(cin: usize, out: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([cin, out], [7, 7])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3));
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        Self { conv: book_conv(conv, device), bn: BatchNormConfig::new(out).init(device), pool }
    }

    /// # Shapes
    /// - `images`: `[batch, cin, h, w]`
    /// - output: `[batch, out, ~h / 4, ~w / 4]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        self.pool.forward(relu(self.bn.forward(self.conv.forward(images))))
    }
}

/// Trainable parameters of a [`Stem`].
pub(crate) fn stem_parameter_count(cin: usize, out: usize) -> usize {
    out * cin * 49 + out + 2 * out
}

impl ResNetConfig {
    /// The (input channels, output channels, stride) of every block, in order.
    pub(crate) fn layout(&self) -> Vec<(usize, usize, usize)> {
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
