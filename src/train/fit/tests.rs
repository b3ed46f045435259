//! Tests of the training step, BatchNorm modes and checkpoint round trips.
use super::*;
use crate::backend::BackendKind;
use crate::data::DatasetSpec;
use crate::definition::{
    CheckpointPolicy, DataSpec, ImageDataSpec, OptimizerSpec, TrainingSpec, ValidJobSpec,
};
use crate::models::{ClassifierSpec, ModelSpec};
use crate::train::checkpoint::{self, Identity};
use crate::train::optim::optimizer;
use crate::train::position::{EpochTotals, Position};
use burn::module::Module;

fn images(n: usize, device: &Device) -> Tensor<4> {
    let set = DatasetSpec::SyntheticImages { train_size: n, test_size: 1, seed: 5 }
        .load(std::path::Path::new("."), None, None, None)
        .unwrap()
        .train;
    batch(&set, &(0..n).collect::<Vec<_>>(), device).0
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn batchnorm_trains_on_batch_statistics_and_evaluates_on_running_ones() {
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let model = ClassifierSpec::LenetBn { batch_norm: true }.init(
        crate::data::DatasetSpec::FashionMnist.shape(),
        10,
        &device,
    );
    let x = images(16, &plain);
    let eval_before = model.valid().forward(x.clone());

    // Training mode: an example's output depends on the rest of its batch.
    let whole = model.forward(x.clone().autodiff());
    let half = model.forward(x.clone().slice([0..8]).autodiff());
    let train_diff = max_abs_diff(whole.inner().slice([0..8]), half.inner());
    assert!(train_diff > 1e-4, "batch statistics should couple examples ({train_diff})");

    // Evaluation mode: it does not, and the running statistics have moved.
    let eval = model.valid();
    let eval_whole = eval.forward(x.clone());
    let eval_half = eval.forward(x.clone().slice([0..8]));
    assert!(max_abs_diff(eval_whole.clone().slice([0..8]), eval_half) < 1e-5);
    assert!(
        max_abs_diff(eval_whole.clone(), eval_before) > 1e-4,
        "training forward passes update running stats"
    );
    // And evaluating does not move them.
    let again = model.valid().forward(x);
    assert!(max_abs_diff(eval_whole, again) < 1e-6);
}

#[test]
fn a_checkpoint_restores_weights_running_statistics_and_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ValidJobSpec {
        name: None,
        model: ModelSpec::Classifier(ClassifierSpec::LenetBn { batch_norm: true }),
        data: DataSpec::Images(ImageDataSpec {
            source: DatasetSpec::SyntheticImages { train_size: 32, test_size: 8, seed: 1 },
            limit_train: None,
            limit_test: None,
            resize: None,
        }),
        training: TrainingSpec {
            epochs: 1,
            batch_size: 16,
            seed: 1,
            optimizer: OptimizerSpec::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 },
            log_every: 1,
            grad_clip_norm: None,
        },
        backend: BackendKind::Cpu,
        checkpoint: CheckpointPolicy { every: 1, keep_last: 1 },
    };
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let model_spec = ClassifierSpec::LenetBn { batch_norm: true };
    let source = DatasetSpec::SyntheticImages { train_size: 32, test_size: 8, seed: 1 };
    let shape = source.shape();
    let data = source.load(dir.path(), None, None, None).unwrap();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut model = model_spec.init(shape, 10, &device);
    let mut optim = optimizer(&spec.training.optimizer);
    let idx: Vec<usize> = (0..16).collect();
    for _ in 0..3 {
        let (x, y) = batch(&data.train, &idx, &device);
        model = step(model, &mut optim, &loss_fn, 0.1, None, x, y).0;
    }
    let position = Position { epoch: 0, step_in_epoch: 3, step: 3, totals: EpochTotals::default() };
    let identity = Identity { job_id: uuid::Uuid::new_v4(), spec: &spec, vocab: None, classes: None };
    let written = checkpoint::write(dir.path(), 0, &identity, &model, &optim, &position).unwrap();
    let restore = || {
        let fresh = model_spec.init(shape, 10, &plain);
        let manifest = checkpoint::manifest(&written.dir).unwrap();
        checkpoint::read(&written.dir, &manifest, fresh, optimizer(&spec.training.optimizer)).unwrap()
    };
    let restored = restore();
    assert_eq!(restored.position, position);
    assert_eq!(crate::models::materialize(&restored.model), 44_878, "a restored model trains");

    let probe = images(8, &plain);
    let expected = model.valid().forward(probe.clone());
    assert!(
        max_abs_diff(expected, restored.model.valid().forward(probe.clone())) < 1e-6,
        "weights and running statistics"
    );

    // The next step matches the uninterrupted run only with the momentum restored.
    let (x, y) = batch(&data.train, &idx, &device);
    let (uninterrupted, l1) = step(model, &mut optim, &loss_fn, 0.1, None, x.clone(), y.clone());
    let mut optim2 = restored.optim;
    let (resumed, l2) = step(restored.model, &mut optim2, &loss_fn, 0.1, None, x.clone(), y.clone());
    let (forgetful, _) =
        step(restore().model, &mut optimizer(&spec.training.optimizer), &loss_fn, 0.1, None, x, y);
    assert!((l1.read().loss - l2.read().loss).abs() < 1e-6);
    let expected = uninterrupted.valid().forward(probe.clone());
    assert!(max_abs_diff(expected.clone(), resumed.valid().forward(probe.clone())) < 1e-5);
    assert!(max_abs_diff(expected, forgetful.valid().forward(probe)) > 1e-4, "momentum matters here");
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    use burn::nn::BatchNormConfig;
    use burn::tensor::activation::sigmoid;
    let device = Device::flex().autodiff();
    let bn = BatchNormConfig::new(3).init(&device);
    let x: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
    let w = Tensor::<2>::from_data(
        TensorData::new((0..18).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>(), [6, 3]),
        &device,
    );
    // A loss through BatchNorm (batch statistics) and a non-linearity.
    let loss = |x: Vec<f32>, track: bool| {
        let x = Tensor::<2>::from_data(TensorData::new(x, [6, 3]), &device);
        let x = if track { x.require_grad() } else { x };
        (x.clone(), (sigmoid(bn.forward(x)) * w.clone()).sum())
    };
    let (xt, l) = loss(x.clone(), true);
    let grads = l.backward();
    let analytic: Vec<f32> = xt.grad(&grads).unwrap().into_data().iter::<f32>().collect();
    let eps = 1e-2;
    for i in 0..18 {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += eps;
        down[i] -= eps;
        let numeric =
            (loss(up, false).1.into_scalar::<f32>() - loss(down, false).1.into_scalar::<f32>()) / (2.0 * eps);
        assert!(
            (analytic[i] - numeric).abs() < 1e-3,
            "x[{i}]: autodiff {} vs numeric {numeric}",
            analytic[i]
        );
    }
    // The gradient reaching a layer before BatchNorm sums to zero per channel: its bias cannot drift.
    for c in 0..3 {
        let sum: f32 = (0..6).map(|r| analytic[r * 3 + c]).sum();
        assert!(sum.abs() < 1e-4, "channel {c}: {sum}");
    }
}

#[test]
fn evaluation_gives_the_same_loss_and_accuracy_whatever_its_batch_size() {
    let device = Device::flex();
    let data = DatasetSpec::SyntheticImages { train_size: 1, test_size: 203, seed: 9 }
        .load(std::path::Path::new("."), None, None, None)
        .unwrap();
    let spec = ClassifierSpec::LenetBn { batch_norm: true };
    let model = spec.init(data.test.input_shape(), 10, &device.clone().autodiff()).valid();
    let (loss, accuracy) = evaluate(&model, &data.test, 1000, &device, &|| false).unwrap();
    for batch_size in [1, 7, 64, 203] {
        let (l, a) = evaluate(&model, &data.test, batch_size, &device, &|| false).unwrap();
        assert!((l - loss).abs() < 1e-5 && a == accuracy, "batch {batch_size}: {l} {a} vs {loss} {accuracy}");
    }
    assert!(loss.is_finite() && (0.0..=1.0).contains(&accuracy));
}

#[test]
fn lenet_bn_from_its_preset_and_from_its_layers_written_out_trains_to_the_same_step_losses() {
    use crate::models::materialize;
    let preset = ClassifierSpec::LenetBn { batch_norm: true };
    let pool = serde_json::json!({"avg_pool2d": {"kernel": 2, "stride": 2}});
    let written_out: ClassifierSpec = serde_json::from_value(serde_json::json!({
        "kind": "sequential",
        "layers": [
            {"conv2d": {"out": 6, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}}, pool,
            {"conv2d": {"out": 16, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}}, pool,
            {"flatten": {}},
            {"linear": {"out": 120}}, {"batch_norm": {}}, {"sigmoid": {}},
            {"linear": {"out": 84}}, {"batch_norm": {}}, {"sigmoid": {}},
            {"linear": {"out": 10}}
        ]
    }))
    .unwrap();
    let shape = crate::data::ImageShape { channels: 1, height: 28, width: 28 };
    let device = Device::flex().autodiff();
    let x = images(32, &device);
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new((0..32).map(|i| i % 10).collect::<Vec<i64>>(), [32]),
        &device,
    );
    let loss = CrossEntropyLossConfig::new().init(&device);
    // One list, so one builder: the preset is the very list written out.
    assert_eq!(preset.layer_plan(shape, 10), written_out.layer_plan(shape, 10));
    let from_preset_init = preset.init(shape, 10, &device);
    let losses = |spec: &ClassifierSpec| {
        // The same initial weights (tests draw from one process-wide generator in parallel, so
        // a seed alone would not give them): the preset's, copied parameter by parameter.
        let mut model = copy_parameters(&from_preset_init, spec.init(shape, 10, &device));
        assert_eq!(materialize(&model), 44_878);
        let mut optim = optimizer(&OptimizerSpec::Sgd { lr: 0.5, momentum: 0.9, weight_decay: 0.0 });
        let mut out = Vec::new();
        for _ in 0..4 {
            let (next, l) = step(model, &mut optim, &loss, 0.5, Some(1.0), x.clone(), labels.clone());
            model = next;
            out.push(l.read().loss);
        }
        out
    };
    let (from_preset, from_list) = (losses(&preset), losses(&written_out));
    // The first step's loss is bit for bit the same; later ones agree to the rounding of the
    // CPU kernels' parallel sums, which differs between any two runs of one model (~1e-7).
    assert_eq!(from_preset[0], from_list[0]);
    for (a, b) in from_preset.iter().zip(&from_list) {
        assert!(
            (a - b).abs() < 1e-5,
            "the same weights and the same steps: {from_preset:?} vs {from_list:?}"
        );
    }
    assert!(from_preset[3] < from_preset[0], "{from_preset:?}");
}

/// `to` with the parameters of `from`, taken in the order both modules visit them.
fn copy_parameters<M: Module>(from: &impl Module, to: M) -> M {
    use burn::module::{ModuleMapper, ModuleVisitor, Param};
    use burn::tensor::TensorData;
    struct Take(std::collections::VecDeque<TensorData>);
    impl ModuleVisitor for Take {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push_back(param.val().into_data());
        }
    }
    impl ModuleMapper for Take {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let data = self.0.pop_front().expect("as many parameters");
            param.map(|t| {
                assert_eq!(t.shape().num_elements(), data.num_elements(), "parameters in the same order");
                let copy = Tensor::from_data(data, &t.device());
                if t.is_require_grad() { copy.require_grad() } else { copy }
            })
        }
    }
    let mut take = Take(Default::default());
    from.visit(&mut take);
    to.map(&mut take)
}
