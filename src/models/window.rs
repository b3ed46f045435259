//! The geometry of a square kernel window, shared by every model's config: the sides a
//! convolution or pooling leaves, and the Burn configs built from the same window.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};

/// The square window of a convolution or a pooling: kernel side, stride and padding. A model's
/// config builds its layers from its windows and computes from the same windows the sides those
/// layers leave, so each layer's geometry is written once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl Window {
    pub(crate) const fn new(kernel: usize, stride: usize, pad: usize) -> Self {
        Self { kernel, stride, pad }
    }

    /// Side of the output for an input `side` pixels wide, or `None` when the kernel does not fit.
    pub(crate) fn output_side(self, side: usize) -> Option<usize> {
        (side + 2 * self.pad).checked_sub(self.kernel).map(|d| d / self.stride + 1)
    }

    /// [`Self::output_side`] after a layer that may itself have left nothing.
    pub(crate) fn after(self, side: Option<usize>) -> Option<usize> {
        side.and_then(|s| self.output_side(s))
    }

    /// Weights of the kernel between one input and one output channel.
    pub(crate) fn area(self) -> usize {
        self.kernel * self.kernel
    }

    fn padding(self) -> PaddingConfig2d {
        match self.pad {
            0 => PaddingConfig2d::Valid,
            p => PaddingConfig2d::Explicit(p, p, p, p),
        }
    }

    /// A convolution from `cin` to `cout` channels over this window.
    pub(crate) fn conv(self, cin: usize, cout: usize) -> Conv2dConfig {
        Conv2dConfig::new([cin, cout], [self.kernel; 2])
            .with_stride([self.stride; 2])
            .with_padding(self.padding())
    }

    /// An average pooling over this window.
    pub(crate) fn avg_pool(self) -> AvgPool2dConfig {
        AvgPool2dConfig::new([self.kernel; 2]).with_strides([self.stride; 2]).with_padding(self.padding())
    }

    /// A max pooling over this window.
    pub(crate) fn max_pool(self) -> MaxPool2dConfig {
        MaxPool2dConfig::new([self.kernel; 2]).with_strides([self.stride; 2]).with_padding(self.padding())
    }
}

/// Values in one channel of a square feature map `side` pixels wide; none where a layer whose
/// kernel did not fit left no map (an activation estimate counts the layers that do fit).
pub(crate) fn pixels(side: Option<usize>) -> usize {
    side.map_or(0, |s| s * s)
}
