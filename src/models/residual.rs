//! The book's residual block (*Dive into Deep Learning* §8.6), the `residual` layer of a layer
//! list: conv3x3 BN ReLU conv3x3 BN, plus the shortcut, then ReLU. A block that changes the shape
//! (a stride, or other channels) takes its shortcut through a 1x1 convolution. ResNet is a stem,
//! stages of these blocks and a head ([`super::presets`]); the book's ResNet-18 has widths
//! 64/128/256/512 and two blocks a stage: 11,178,378 parameters for 10 classes.

use crate::fused::{batch_norm_add_relu, batch_norm_relu, conv2d};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use super::{Window, book_conv, pixels};

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
        let y = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x.clone()));
        batch_norm_add_relu(&self.bn2, conv2d(&self.conv2, y), self.shortcut(x))
    }

    /// The shortcut: `x`, or its 1×1 projection where the block changes shape.
    fn shortcut(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.shortcut {
            Some(conv) => conv2d(conv, x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;

    /// The block as its definition reads, in Burn's own layers and operations.
    fn definition(block: &Residual, x: Tensor<4>) -> Tensor<4> {
        let y = relu(block.bn1.forward(block.conv1.forward(x.clone())));
        let branch = block.bn2.forward(block.conv2.forward(y));
        let shortcut = block.shortcut.as_ref().map_or(x.clone(), |conv| conv.forward(x));
        relu(branch + shortcut)
    }

    #[test]
    fn a_block_computes_relu_of_its_branch_plus_its_shortcut_in_training_and_in_evaluation() {
        // Training on flex takes the fused kernels (the batch norm with its ReLU, and with the
        // sum and ReLU that end the block); without autodiff, Burn's layers.
        for device in [Device::flex().autodiff(), Device::flex()] {
            let x = Tensor::<4>::random([3, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
            for (block, side) in [(Residual::new(4, 4, 1, &device), 6), (Residual::new(4, 8, 2, &device), 3)]
            {
                let out = block.forward(x.clone());
                assert_eq!(out.dims()[2], side);
                let d: f32 = (out.clone() - definition(&block, x.clone())).abs().max().into_scalar();
                assert!(d < 1e-5, "{device:?}: differs from the definition by {d}");
                let zeros: f32 = out.lower_equal_elem(0.0).float().mean().into_scalar();
                assert!(zeros > 0.1 && zeros < 0.9, "the ReLU zeroes a share of the outputs: {zeros}");
            }
        }
    }
}
