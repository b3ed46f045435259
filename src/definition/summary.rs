//! What a valid job's model looks like before it trains: each layer (a layer list's, or a
//! built-in kind's preset list) with its output shape and parameter count (as Keras' `model.summary()` or torchinfo show it), and the
//! activation memory one batch needs. The job view and the dry run show them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Task, ValidJobSpec};

/// One layer of a `sequential` model, resolved for the job's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LayerSummary {
    /// Its place in `model.layers`.
    pub index: usize,
    /// Its kind, as `model.layers` names it (`conv2d`, `linear` ...).
    pub kind: String,
    /// The shape of one example after it: `[channels, height, width]` or `[features]`.
    pub output: Vec<usize>,
    /// Its trainable parameters.
    pub parameters: u64,
}

impl ValidJobSpec {
    /// An image classifier's layers with their shapes: a `sequential` model's own, a built-in
    /// kind's as its preset list writes it; `None` for a language model.
    pub fn layers(&self) -> Option<Vec<LayerSummary>> {
        let Some(Task::Classify { model, data }) = self.task() else { return None };
        let plan = model.layer_plan(data.input_shape(), data.source.classes()).ok()?;
        let layers = plan.layers.iter().enumerate().map(|(index, layer)| LayerSummary {
            index,
            kind: layer.spec.kind().to_string(),
            output: layer.output.dims(),
            parameters: layer.parameters as u64,
        });
        Some(layers.collect())
    }

    /// The estimated bytes of activation one training batch keeps (every layer's output and its
    /// gradient, in f32), as admission counts it against `--max-batch-memory-mib`; `None` for a
    /// language model, whose vocabulary decides it when it trains.
    pub fn activation_bytes(&self) -> Option<u64> {
        let Some(Task::Classify { model, data }) = self.task() else { return None };
        let floats = model.activation_floats(data.input_shape(), data.source.classes());
        Some((floats * self.training.batch_size * 4) as u64)
    }
}
