//! A layer list as a job definition writes it: [`LayerSpec`], one object with one key per layer,
//! and the settings of each kind, each a named schema in the API document.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One layer of a `sequential` model: an object with one key, the layer's kind, whose value holds
/// its settings (`{}` for none). Each kind's settings are a named schema in the API document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerSpec {
    /// A 2-D convolution (PyTorch's `Conv2d`).
    Conv2d(Conv2dLayer),
    /// Batch normalization: BatchNorm2d after feature maps, BatchNorm1d after a flat vector.
    BatchNorm(NoSettings),
    /// An affine layer (PyTorch's `Linear`); needs a flat input.
    Linear(LinearLayer),
    Sigmoid(NoSettings),
    Relu(NoSettings),
    Tanh(NoSettings),
    Gelu(NoSettings),
    /// Average pooling.
    AvgPool2d(PoolLayer),
    /// Max pooling.
    MaxPool2d(PoolLayer),
    /// The mean of each channel: feature maps `c×h×w` become `c×1×1` (PyTorch's
    /// `AdaptiveAvgPool2d((1, 1))`); a `flatten` then gives `c` values.
    GlobalAvgPool(NoSettings),
    /// Feature maps `c×h×w` become `c·h·w` values.
    Flatten(NoSettings),
    /// Zeroes each value with probability `p` in training (scaling the rest by `1/(1-p)`);
    /// nothing in evaluation.
    Dropout(DropoutLayer),
    /// The book's residual block (§8.6).
    Residual(ResidualLayer),
    /// The book's dense block (§8.7).
    DenseBlock(DenseBlockLayer),
    /// The book's transition block (§8.7).
    Transition(TransitionLayer),
}

/// The settings of a layer that has none: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// `conv2d`: to `out` channels with a `kernel`-square window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv2dLayer {
    #[schema(minimum = 1, maximum = 4096)]
    pub out: usize,
    #[schema(minimum = 1, maximum = 64)]
    pub kernel: usize,
    /// Default 1.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 64)]
    pub stride: usize,
    /// Zeros added on each side, default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 64)]
    pub padding: usize,
    /// Input channels: inferred from the layer before; checked when given.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4096)]
    pub input: Option<usize>,
}

/// `linear`: to `out` features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearLayer {
    #[schema(minimum = 1, maximum = 65536)]
    pub out: usize,
    /// Input features: inferred from the layer before; checked when given.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub input: Option<usize>,
}

/// `avg_pool2d`, `max_pool2d`: over a `kernel`-square window; `stride` defaults to `kernel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolLayer {
    #[schema(minimum = 1, maximum = 64)]
    pub kernel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub stride: Option<usize>,
    /// Padding on each side, at most half the kernel; default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 32)]
    pub padding: usize,
}

/// `dropout`: the probability `p` of zeroing a value, in [0, 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DropoutLayer {
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    pub p: f64,
}

/// `residual`: two 3×3 convolutions to `out` channels with BatchNorm and ReLU, the first with
/// `stride` (default 1), added to the input — through a 1×1 convolution when the block changes
/// the shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResidualLayer {
    #[schema(minimum = 1, maximum = 4096)]
    pub out: usize,
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 8)]
    pub stride: usize,
}

/// `dense_block`: `convs` blocks of BatchNorm, ReLU and a 3×3 convolution to `growth`
/// channels, each output joined to its input along the channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseBlockLayer {
    #[schema(minimum = 1, maximum = 64)]
    pub convs: usize,
    #[schema(minimum = 1, maximum = 1024)]
    pub growth: usize,
}

/// `transition`: BatchNorm, ReLU, a 1×1 convolution to `out` channels and a 2×2 average pooling
/// with stride 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionLayer {
    #[schema(minimum = 1, maximum = 4096)]
    pub out: usize,
}

/// The layer list is compared, not hashed; `p` is a finite number once validated.
impl Eq for LayerSpec {}

fn one() -> usize {
    1
}

impl LayerSpec {
    /// The layer's kind, as its key in a job definition.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conv2d(_) => "conv2d",
            Self::BatchNorm(_) => "batch_norm",
            Self::Linear(_) => "linear",
            Self::Sigmoid(_) => "sigmoid",
            Self::Relu(_) => "relu",
            Self::Tanh(_) => "tanh",
            Self::Gelu(_) => "gelu",
            Self::AvgPool2d(_) => "avg_pool2d",
            Self::MaxPool2d(_) => "max_pool2d",
            Self::GlobalAvgPool(_) => "global_avg_pool",
            Self::Flatten(_) => "flatten",
            Self::Dropout(_) => "dropout",
            Self::Residual(_) => "residual",
            Self::DenseBlock(_) => "dense_block",
            Self::Transition(_) => "transition",
        }
    }
}
