//! Checkpoints written before the built-in kinds became layer lists: fixtures of each kind, and
//! that they still load, evaluate and train on.
//!
//! `tests/fixtures/legacy-checkpoints/<kind>/` holds one checkpoint per model kind written by the
//! modules kiln had before (LenetBn, MlpBn, ResNet, DenseNet and the first layer lists, whose
//! weights were named `LenetBn.conv1.weight`, `Sequential.layers.0.Conv2d.weight`, ...), with
//! `expected.json`: the evaluation logits of a fixed probe batch after the checkpointed step and
//! after one more step from it.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Identity, write};
use crate::backend::BackendKind;
use crate::data::{DatasetSpec, ImageShape};
use crate::definition::{
    CheckpointPolicy, DataSpec, ImageDataSpec, OptimizerSpec, TrainingSpec, ValidJobSpec,
};
use crate::models::{Activation, Classifier, ClassifierSpec, ModelSpec};
use crate::train::fit::step;
use crate::train::optim::optimizer;
use crate::train::position::{EpochTotals, Position};

/// The fixtures' images: one channel, 16 pixels square (small enough for every kind).
pub const SHAPE: ImageShape = ImageShape { channels: 1, height: 16, width: 16 };
pub const CLASSES: usize = 10;
pub const SGD: OptimizerSpec = OptimizerSpec::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };

/// Each kind's fixture: its directory name and model.
pub fn kinds() -> Vec<(&'static str, ClassifierSpec)> {
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
pub fn batch(n: usize, salt: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let len = n * SHAPE.len();
    let pixels: Vec<f32> = (0..len).map(|i| ((i * 37 + salt * 11) % 101) as f32 / 101.0).collect();
    let labels: Vec<i64> = (0..n).map(|i| ((i + salt) % CLASSES) as i64).collect();
    let images = Tensor::from_data(TensorData::new(pixels, [n, 1, SHAPE.height, SHAPE.width]), device);
    (images, Tensor::from_data(TensorData::new(labels, [n]), device))
}

/// The evaluation logits of the probe batch, flat.
pub fn probe(model: &Classifier) -> Vec<f32> {
    let plain = Device::flex();
    model.valid().forward(batch(6, 99, &plain).0).into_data().iter::<f32>().collect()
}

/// What a fixture's model gives after its checkpointed step and after one more.
#[derive(Debug, Serialize, Deserialize)]
pub struct Expected {
    pub after_checkpoint: Vec<f32>,
    pub after_next_step: Vec<f32>,
}

/// The job a fixture's checkpoint says it belongs to.
pub fn job(model: ClassifierSpec) -> ValidJobSpec {
    ValidJobSpec {
        name: None,
        model: ModelSpec::Classifier(model),
        data: DataSpec::Images(ImageDataSpec {
            source: DatasetSpec::SyntheticImages { train_size: 16, test_size: 8, seed: 1 },
            limit_train: None,
            limit_test: None,
            resize: Some(SHAPE.height),
        }),
        training: TrainingSpec {
            epochs: 1,
            batch_size: 8,
            seed: 7,
            optimizer: SGD,
            log_every: 1,
            grad_clip_norm: None,
        },
        backend: BackendKind::Cpu,
        checkpoint: CheckpointPolicy { every: 1, keep_last: 1 },
    }
}

/// Writes the fixtures with the modules of the kiln that builds this test. Run once, by hand:
/// `KILN_WRITE_LEGACY_FIXTURES=1 cargo test --lib legacy_tests::write_fixtures`.
#[test]
fn write_fixtures() {
    if std::env::var_os("KILN_WRITE_LEGACY_FIXTURES").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-checkpoints");
    for (name, spec) in kinds() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let mut model = spec.init(SHAPE, CLASSES, &device);
        crate::models::materialize(&model);
        let mut optim = optimizer(&SGD);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let (x, y) = batch(8, 1, &device);
        model = step(model, &mut optim, &loss_fn, 0.1, None, x, y).0;
        let job = job(spec.clone());
        let identity = Identity { job_id: uuid::Uuid::nil(), spec: &job, vocab: None };
        let position = Position { epoch: 0, step_in_epoch: 1, step: 1, totals: EpochTotals::default() };
        let dir = root.join(name);
        write(&dir, &identity, &model, &optim, &position).unwrap();
        let after_checkpoint = probe(&model);
        let (x, y) = batch(8, 2, &device);
        model = step(model, &mut optim, &loss_fn, 0.1, None, x, y).0;
        let expected = Expected { after_checkpoint, after_next_step: probe(&model) };
        std::fs::write(dir.join("expected.json"), serde_json::to_string(&expected).unwrap()).unwrap();
    }
}
