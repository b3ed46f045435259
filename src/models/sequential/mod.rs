//! A classifier written as a list of layers, as the book writes its networks with
//! `nn.Sequential(...)`: `{"kind": "sequential", "layers": [{"conv2d": {"out": 6, "kernel": 5}},
//! {"batch_norm": {}}, {"sigmoid": {}}, ...]}`.
//!
//! [`LayerSpec`] is one layer as a job definition names it. [`plan`] walks the list from the data
//! set's image shape, layer by layer, as PyTorch would only at the first forward pass: each
//! layer's output [`Shape`] and parameter count, and every mistake at once, by layer — a width
//! that does not match the layer before, a kernel larger than its input, a `linear` on feature
//! maps, a last layer that does not give the class count. Input widths are inferred, so `in` may
//! be left out; where given it is checked. `batch_norm` is BatchNorm2d after feature maps and
//! BatchNorm1d after a flat vector. The Burn module is built in [`layers`] from the same plan.

pub mod layers;
mod spec;
#[cfg(test)]
mod tests;

use super::Window;
use super::dense::{DenseBlock, Transition};
use super::residual::Residual;

pub use layers::Sequential;
pub use spec::{
    Conv2dLayer, DenseBlockLayer, DropoutLayer, LayerSpec, LinearLayer, NoSettings, PoolLayer, ResidualLayer,
    TransitionLayer,
};

/// The shape of one example between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `channels` feature maps `side` pixels square.
    Maps { channels: usize, side: usize },
    /// A vector of `n` values.
    Flat(usize),
}

impl Shape {
    /// Values in one example.
    pub fn values(self) -> usize {
        match self {
            Self::Maps { channels, side } => channels * side * side,
            Self::Flat(n) => n,
        }
    }

    /// As PyTorch lists a shape without its batch: `[6, 4, 4]`, `[96]`.
    pub fn dims(self) -> Vec<usize> {
        match self {
            Self::Maps { channels, side } => vec![channels, side, side],
            Self::Flat(n) => vec![n],
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Maps { channels, side } => write!(f, "{channels}×{side}×{side}"),
            Self::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// One layer of a [`Plan`]: what it gets, gives and trains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    pub spec: LayerSpec,
    pub input: Shape,
    pub output: Shape,
    pub parameters: usize,
    /// Floats one example keeps through a training step: the layer's outputs (inner ones for a
    /// block), each with its gradient.
    pub activation_floats: usize,
}

/// A layer list resolved for one input shape: every layer with its shapes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub input: Shape,
    pub layers: Vec<PlannedLayer>,
}

impl Plan {
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.parameters).sum()
    }

    pub fn activation_floats(&self) -> usize {
        self.layers.iter().map(|l| l.activation_floats).sum()
    }

    pub fn output(&self) -> Shape {
        self.layers.last().map_or(self.input, |l| l.output)
    }
}

/// What is wrong with one layer of a list, for a problem naming `model.layers[index]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProblem {
    pub index: usize,
    pub kind: &'static str,
    pub message: String,
}

impl std::fmt::Display for LayerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model.layers[{}] ({}): {}", self.index, self.kind, self.message)
    }
}

/// Walks `layers` from `input`, ending in `classes` values: the plan, or every problem found. A
/// layer whose output cannot be known (a kernel larger than its input) ends the shape checks;
/// a width that does not match is reported and the walk goes on with the layer's own output.
pub fn plan(layers: &[LayerSpec], input: Shape, classes: usize) -> Result<Plan, Vec<LayerProblem>> {
    let mut problems = Vec::new();
    let mut planned = Vec::with_capacity(layers.len());
    let mut shape = input;
    // The feature maps a flat input was flattened from, to show with a width that does not match.
    let mut flattened_from = None;
    for (index, spec) in layers.iter().enumerate() {
        let mut problem = |message: String| problems.push(LayerProblem { index, kind: spec.kind(), message });
        match step(spec, shape, flattened_from) {
            Ok(Step { output, parameters, activation_floats, mismatch }) => {
                if let Some(message) = mismatch {
                    problem(message);
                }
                planned.push(PlannedLayer {
                    spec: spec.clone(),
                    input: shape,
                    output,
                    parameters,
                    activation_floats: 2 * activation_floats,
                });
                flattened_from = match (spec, shape, output) {
                    (LayerSpec::Flatten(_), maps @ Shape::Maps { .. }, _) => Some(maps),
                    (_, _, Shape::Flat(n)) if n == shape.values() => flattened_from,
                    _ => None,
                };
                shape = output;
            }
            Err(message) => {
                problem(message);
                return Err(problems);
            }
        }
    }
    match (layers.len(), shape) {
        (0, _) => {}
        (_, Shape::Flat(n)) if n == classes => {}
        (n, found) => {
            let last = &layers[n - 1];
            problems.push(LayerProblem {
                index: n - 1,
                kind: last.kind(),
                message: format!(
                    "the last layer gives {found}; a classifier for this data set ends in {classes} values \
                     (a linear layer with out {classes})"
                ),
            });
        }
    }
    if problems.is_empty() { Ok(Plan { input, layers: planned }) } else { Err(problems) }
}

/// What one layer does to a shape.
struct Step {
    output: Shape,
    parameters: usize,
    /// Floats of output (and inner outputs) per example, before counting their gradients.
    activation_floats: usize,
    /// A given `in` that does not match: reported, and the walk goes on.
    mismatch: Option<String>,
}

impl Step {
    fn free(output: Shape) -> Self {
        Self { output, parameters: 0, activation_floats: output.values(), mismatch: None }
    }
}

/// Where the layer before gave feature maps, `(channels, side)`; the error says a flat input
/// cannot be taken.
fn maps(input: Shape) -> Result<(usize, usize), String> {
    match input {
        Shape::Maps { channels, side } => Ok((channels, side)),
        Shape::Flat(n) => {
            Err(format!("needs feature maps (channels×height×width); the layer before gives {n} values"))
        }
    }
}

/// The side a window leaves, or why there is none.
fn side_after(window: Window, side: usize, what: &str) -> Result<usize, String> {
    match window.output_side(side) {
        Some(s) if s >= 1 => Ok(s),
        _ => Err(format!("{what} does not fit the {side}×{side} maps the layer before gives")),
    }
}

/// A given `in` that differs from what the layer before gives; `from` is the feature maps a
/// flat input was flattened from, shown with the width.
fn check_in(input: Option<usize>, found: usize, unit: &str, from: Option<Shape>) -> Option<String> {
    let expected = input?;
    (expected != found).then(|| {
        let shown = from.map_or(String::new(), |maps| format!(" ({maps})"));
        format!("expects {expected} {unit}, the layer before gives {found}{shown}")
    })
}

fn step(spec: &LayerSpec, input: Shape, flattened_from: Option<Shape>) -> Result<Step, String> {
    match spec {
        LayerSpec::Conv2d(Conv2dLayer { out, kernel, stride, padding, input: given }) => {
            let (cin, side) = maps(input)?;
            let window = Window::new(*kernel, *stride, *padding);
            let side =
                side_after(window, side, &format!("a {kernel}×{kernel} kernel with padding {padding}"))?;
            let output = Shape::Maps { channels: *out, side };
            let parameters = out * cin * window.area() + out;
            let mismatch = check_in(*given, cin, "input channels", None);
            Ok(Step { output, parameters, activation_floats: output.values(), mismatch })
        }
        LayerSpec::Linear(LinearLayer { out, input: given }) => {
            let n = match input {
                Shape::Flat(n) => n,
                maps @ Shape::Maps { .. } => {
                    return Err(format!(
                        "needs a flat input; the layer before gives {maps} feature maps: put a {{\"flatten\": {{}}}} \
                         before it ({} values)",
                        maps.values()
                    ));
                }
            };
            let mismatch = check_in(*given, n, "inputs", flattened_from);
            let output = Shape::Flat(*out);
            Ok(Step { output, parameters: n * out + out, activation_floats: *out, mismatch })
        }
        LayerSpec::BatchNorm(_) => {
            let channels = match input {
                Shape::Maps { channels, .. } => channels,
                Shape::Flat(n) => n,
            };
            Ok(Step { parameters: 2 * channels, ..Step::free(input) })
        }
        LayerSpec::Sigmoid(_) | LayerSpec::Relu(_) | LayerSpec::Tanh(_) | LayerSpec::Gelu(_) => {
            Ok(Step::free(input))
        }
        LayerSpec::Dropout(DropoutLayer { .. }) => Ok(Step::free(input)),
        LayerSpec::AvgPool2d(PoolLayer { kernel, stride, padding })
        | LayerSpec::MaxPool2d(PoolLayer { kernel, stride, padding }) => {
            let (channels, side) = maps(input)?;
            if 2 * padding > *kernel {
                return Err(format!("padding {padding} is more than half the kernel {kernel}"));
            }
            let window = Window::new(*kernel, stride.unwrap_or(*kernel), *padding);
            let side = side_after(window, side, &format!("a {kernel}×{kernel} window"))?;
            Ok(Step::free(Shape::Maps { channels, side }))
        }
        LayerSpec::GlobalAvgPool(_) => {
            let (channels, _) = maps(input)?;
            Ok(Step::free(Shape::Maps { channels, side: 1 }))
        }
        LayerSpec::Flatten(_) => Ok(Step { activation_floats: 0, ..Step::free(Shape::Flat(input.values())) }),
        LayerSpec::Residual(_) | LayerSpec::DenseBlock(_) | LayerSpec::Transition(_) => {
            block_step(spec, input)
        }
    }
}

/// What one of the book's blocks does to a shape.
fn block_step(spec: &LayerSpec, input: Shape) -> Result<Step, String> {
    let (cin, side) = maps(input)?;
    match spec {
        LayerSpec::Residual(ResidualLayer { out, stride }) => {
            let side = Residual::output_side(*stride, Some(side))
                .filter(|s| *s >= 1)
                .ok_or_else(|| format!("stride {stride} does not fit {side}×{side} maps"))?;
            Ok(Step {
                output: Shape::Maps { channels: *out, side },
                parameters: Residual::parameter_count(cin, *out, *stride),
                activation_floats: Residual::activation_floats(cin, *out, *stride, Some(side)),
                mismatch: None,
            })
        }
        LayerSpec::DenseBlock(DenseBlockLayer { convs, growth }) => Ok(Step {
            output: Shape::Maps { channels: cin + convs * growth, side },
            parameters: DenseBlock::parameter_count(*convs, cin, *growth),
            activation_floats: DenseBlock::activation_floats(*convs, cin, *growth, Some(side)),
            mismatch: None,
        }),
        LayerSpec::Transition(TransitionLayer { out }) => {
            let pooled = Transition::sides(Some(side))[1]
                .filter(|s| *s >= 1)
                .ok_or_else(|| format!("its 2×2 pooling does not fit {side}×{side} maps"))?;
            Ok(Step {
                output: Shape::Maps { channels: *out, side: pooled },
                parameters: Transition::parameter_count(cin, *out),
                activation_floats: Transition::activation_floats(cin, *out, Some(side)),
                mismatch: None,
            })
        }
        _ => unreachable!("block_step takes the book's blocks only"),
    }
}
