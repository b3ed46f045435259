//! A multilayer perceptron with batch normalization between each affine layer and its
//! activation: Flatten · [Linear BN1d act] per hidden width · Linear(classes).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::Activation;
use crate::fused::sigmoid;

/// Builds an [`MlpBn`].
#[derive(Config, Debug)]
pub struct MlpBnConfig {
    /// Values in one flattened input.
    pub inputs: usize,
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// Output classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Activation after each hidden layer.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Whether to put BatchNorm layers before each activation.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// One hidden layer: affine, optional BatchNorm.
#[derive(Module, Debug)]
struct Hidden {
    linear: Linear,
    bn: Option<BatchNorm>,
}

/// The network.
#[derive(Module, Debug)]
pub struct MlpBn {
    hidden: Vec<Hidden>,
    output: Linear,
    sigmoid: bool,
}

impl MlpBnConfig {
    /// Side of the feature maps the net's feature extractor leaves from `side`-pixel images: it
    /// has none, and flattens the image as it comes.
    pub fn feature_side(&self, side: usize) -> Option<usize> {
        Some(side)
    }

    /// Floats of activation one example keeps through a training step (see
    /// [`ClassifierSpec::activation_floats`](super::ClassifierSpec::activation_floats)): the
    /// flattened input, each hidden layer's affine, BatchNorm and activation outputs, and the
    /// logits, each with its gradient.
    pub fn activation_floats(&self) -> usize {
        2 * (self.inputs + 3 * self.hidden.iter().sum::<usize>() + self.classes)
    }

    /// Trainable parameters of the net this config builds.
    pub fn parameter_count(&self) -> usize {
        let mut total = 0;
        let mut width = self.inputs;
        for &h in &self.hidden {
            total += width * h + h + if self.batch_norm { 2 * h } else { 0 };
            width = h;
        }
        total + width * self.classes + self.classes
    }

    /// Builds the net on `device` with fresh weights.
    pub fn init(&self, device: &Device) -> MlpBn {
        let mut width = self.inputs;
        let mut hidden = Vec::new();
        for &h in &self.hidden {
            hidden.push(Hidden {
                linear: super::book_linear(width, h, device),
                bn: self.batch_norm.then(|| BatchNormConfig::new(h).init(device)),
            });
            width = h;
        }
        let output = super::book_linear(width, self.classes, device);
        MlpBn { hidden, output, sigmoid: self.activation == Activation::Sigmoid }
    }
}

impl MlpBn {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        for layer in &self.hidden {
            x = layer.linear.forward(x);
            if let Some(bn) = &layer.bn {
                x = crate::fused::batch_norm(bn, x);
            }
            x = if self.sigmoid { sigmoid(x) } else { relu(x) };
        }
        self.output.forward(x)
    }
}
