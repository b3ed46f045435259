//! Checkpoints written before the built-in kinds became layer lists still load, evaluate as they
//! did and train on with their momentum.
//!
//! `tests/fixtures/legacy-checkpoints/<kind>/` holds one checkpoint per model kind written by the
//! modules kiln had before (LenetBn, MlpBn, ResNet, DenseNet and the first layer lists, whose
//! weights were named `LenetBn.conv1.weight`, `Sequential.layers.0.Conv2d.weight`, ...), with
//! `expected.json`: the evaluation logits of a fixed probe batch after the checkpointed step and
//! after one more step from it. They were written by the test `write_fixtures` of commit
//! "legacy-checkpoints fixtures", with the modules of that kiln; those modules are gone, and
//! these checkpoints are the record of how they named their weights.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::{manifest, read};
use crate::data::ImageShape;
use crate::definition::OptimizerSpec;
use crate::models::{Activation, Classifier, ClassifierSpec, ModelSpec};
use crate::train::fit::step;
use crate::train::optim::optimizer;

/// The fixtures' images: one channel, 16 pixels square (small enough for every kind).
const SHAPE: ImageShape = ImageShape { channels: 1, height: 16, width: 16 };
const CLASSES: usize = 10;
const SGD: OptimizerSpec = OptimizerSpec::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };

/// Each kind's fixture: its directory name and model.
fn kinds() -> Vec<(&'static str, ClassifierSpec)> {
    use crate::models::sequential::{Conv2dLayer, LayerSpec, LinearLayer, NoSettings};
    vec![
        ("lenet_bn", ClassifierSpec::LenetBn { batch_norm: true }),
        ("lenet", ClassifierSpec::LenetBn { batch_norm: false }),
        (
            "mlp_bn",
            ClassifierSpec::MlpBn { hidden: vec![16, 8], activation: Activation::Relu, batch_norm: true },
        ),
        ("resnet", ClassifierSpec::Resnet { depth: 18, widths: vec![4, 8], blocks: vec![2, 1] }),
        ("densenet", ClassifierSpec::Densenet { growth_rate: 4, blocks: vec![2, 2, 1], stem_channels: 8 }),
        (
            "sequential",
            ClassifierSpec::Sequential {
                layers: vec![
                    LayerSpec::Conv2d(Conv2dLayer { out: 4, kernel: 3, stride: 1, padding: 1, input: None }),
                    LayerSpec::BatchNorm(NoSettings {}),
                    LayerSpec::Relu(NoSettings {}),
                    LayerSpec::Flatten(NoSettings {}),
                    LayerSpec::Linear(LinearLayer { out: 12, input: None }),
                    LayerSpec::BatchNorm(NoSettings {}),
                    LayerSpec::Tanh(NoSettings {}),
                    LayerSpec::Linear(LinearLayer { out: CLASSES, input: None }),
                ],
            },
        ),
    ]
}

/// `n` images of [`SHAPE`] made from a formula (`salt` picks which), with labels `i % 10`.
fn batch(n: usize, salt: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let len = n * SHAPE.len();
    let pixels: Vec<f32> = (0..len).map(|i| ((i * 37 + salt * 11) % 101) as f32 / 101.0).collect();
    let labels: Vec<i64> = (0..n).map(|i| ((i + salt) % CLASSES) as i64).collect();
    let images = Tensor::from_data(TensorData::new(pixels, [n, 1, SHAPE.height, SHAPE.width]), device);
    (images, Tensor::from_data(TensorData::new(labels, [n]), device))
}

/// The evaluation logits of the probe batch, flat.
fn probe(model: &Classifier) -> Vec<f32> {
    let plain = Device::flex();
    model.valid().forward(batch(6, 99, &plain).0).into_data().iter::<f32>().collect()
}

/// What a fixture's model gives after its checkpointed step and after one more.
#[derive(Debug, Deserialize)]
struct Expected {
    after_checkpoint: Vec<f32>,
    after_next_step: Vec<f32>,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn checkpoints_of_every_older_kind_load_evaluate_and_train_on_with_their_momentum() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-checkpoints");
    for (name, spec) in kinds() {
        let dir = root.join(name).join("step-0000000001");
        let expected: Expected =
            serde_json::from_slice(&std::fs::read(root.join(name).join("expected.json")).unwrap()).unwrap();
        let manifest = manifest(&dir).unwrap();
        assert_eq!(manifest.spec.model, ModelSpec::Classifier(spec.clone()), "{name}");
        let restore = || {
            let fresh = spec.init(SHAPE, CLASSES, &Device::flex());
            read(&dir, &manifest, fresh, optimizer(&SGD)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let restored = restore();
        let diff = max_abs_diff(&probe(&restored.model), &expected.after_checkpoint);
        assert!(diff < 1e-6, "{name}: weights and running statistics ({diff})");

        // One more step gives what the old module gave only with the momentum it saved: the
        // optimizer's state is keyed by parameter id, and the renamed weights keep theirs.
        let device = Device::flex().autodiff();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let next = |model: Classifier, mut optim: ModuleOptimizer| {
            let (x, y) = batch(8, 2, &device);
            probe(&step(model, &mut optim, &loss_fn, 0.1, None, x, y).0)
        };
        let diff = max_abs_diff(&next(restored.model, restored.optim), &expected.after_next_step);
        assert!(diff < 1e-5, "{name}: the step after resuming ({diff})");
        let forgetful = next(restore().model, optimizer(&SGD));
        let diff = max_abs_diff(&forgetful, &expected.after_next_step);
        assert!(diff > 1e-4, "{name}: without its momentum the step differs ({diff})");
    }
}
