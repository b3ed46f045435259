//! The rules of a `sequential` model's `layers`: each layer read on its own (so every unknown
//! kind or key is named by its index), and each setting in its range. Whether the layers fit
//! together and the data set is checked with the data, by [`crate::models::sequential::plan`].

use super::*;
use crate::models::sequential::{
    Conv2dLayer, DenseBlockLayer, DropoutLayer, LayerSpec, LinearLayer, PoolLayer, ResidualLayer,
    TransitionLayer,
};

/// `model.layers` of a `sequential` model: its layers, or none when a problem was recorded.
pub(super) fn validate_layers(raw: Option<RawLayers>, p: &mut Problems) -> Vec<LayerSpec> {
    let values = match raw {
        Some(RawLayers::List(values)) => values,
        Some(RawLayers::Count(_)) => {
            p.add(
                "model.layers",
                "must be a list of layers for model.kind = sequential, e.g. [{\"linear\": {\"out\": 10}}]",
            );
            return Vec::new();
        }
        None => {
            p.add("model.layers", "is required for model.kind = sequential: a list of layers, e.g. [{\"flatten\": {}}, {\"linear\": {\"out\": 10}}]");
            return Vec::new();
        }
    };
    if values.is_empty() || values.len() > MAX_SEQUENTIAL_LAYERS {
        p.add(
            "model.layers",
            format!("must list between 1 and {MAX_SEQUENTIAL_LAYERS} layers (got {})", values.len()),
        );
    }
    let problems_before = p.0.len();
    let mut layers = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        match serde_json::from_value::<LayerSpec>(value) {
            Ok(layer) => {
                check_ranges(&layer, &format!("model.layers[{i}].{}", layer.kind()), p);
                layers.push(layer);
            }
            Err(e) => p.add(&format!("model.layers[{i}]"), layer_error(&e)),
        }
    }
    // Shapes are only walked through layers that all read and are in range (a stride of 0
    // has no output side): with a problem here, the list is not planned.
    if p.0.len() > problems_before { Vec::new() } else { layers }
}

/// serde's message for a layer that does not read, with the list of kinds when the kind is
/// the problem.
fn layer_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.contains("unknown variant")
        || message.contains("expected value")
        || message.contains("invalid type: ")
    {
        let message = message.split(", expected").next().unwrap_or(&message).to_string();
        return format!(
            "is not a layer ({message}): an object with one key, its kind: one of {}",
            LAYER_KINDS.join(", ")
        );
    }
    message
}

/// Every layer kind, as a definition names it.
const LAYER_KINDS: [&str; 15] = [
    "conv2d",
    "batch_norm",
    "linear",
    "sigmoid",
    "relu",
    "tanh",
    "gelu",
    "avg_pool2d",
    "max_pool2d",
    "global_avg_pool",
    "flatten",
    "dropout",
    "residual",
    "dense_block",
    "transition",
];

/// Each of `layer`'s settings in its range; `field` is `model.layers[i].<kind>`.
fn check_ranges(layer: &LayerSpec, field: &str, p: &mut Problems) {
    let at = |name: &str| format!("{field}.{name}");
    match layer {
        LayerSpec::Conv2d(Conv2dLayer { out, kernel, stride, padding, input }) => {
            p.range(&at("out"), *out, 1, MAX_CHANNELS);
            p.range(&at("kernel"), *kernel, 1, 64);
            p.range(&at("stride"), *stride, 1, 64);
            p.range(&at("padding"), *padding, 0, 64);
            if let Some(input) = input {
                p.range(&at("in"), *input, 1, MAX_CHANNELS);
            }
        }
        LayerSpec::Linear(LinearLayer { out, input }) => {
            p.range(&at("out"), *out, 1, 65_536);
            if let Some(input) = input {
                p.range(&at("in"), *input, 1, usize::MAX);
            }
        }
        LayerSpec::AvgPool2d(PoolLayer { kernel, stride, padding })
        | LayerSpec::MaxPool2d(PoolLayer { kernel, stride, padding }) => {
            p.range(&at("kernel"), *kernel, 1, 64);
            if let Some(stride) = stride {
                p.range(&at("stride"), *stride, 1, 64);
            }
            p.range(&at("padding"), *padding, 0, 32);
        }
        LayerSpec::Dropout(DropoutLayer { p: probability }) => {
            p.fraction(&at("p"), *probability);
        }
        LayerSpec::Residual(ResidualLayer { out, stride }) => {
            p.range(&at("out"), *out, 1, MAX_CHANNELS);
            p.range(&at("stride"), *stride, 1, 8);
        }
        LayerSpec::DenseBlock(DenseBlockLayer { convs, growth }) => {
            p.range(&at("convs"), *convs, 1, MAX_BLOCKS);
            p.range(&at("growth"), *growth, 1, 1024);
        }
        LayerSpec::Transition(TransitionLayer { out }) => {
            p.range(&at("out"), *out, 1, MAX_CHANNELS);
        }
        LayerSpec::BatchNorm(_)
        | LayerSpec::Sigmoid(_)
        | LayerSpec::Relu(_)
        | LayerSpec::Tanh(_)
        | LayerSpec::Gelu(_)
        | LayerSpec::GlobalAvgPool(_)
        | LayerSpec::Flatten(_) => {}
    }
}
