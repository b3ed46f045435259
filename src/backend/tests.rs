//! The WGPU path against the CPU: the same model, initial weights and batches give the same
//! losses, and weights move between the two through checkpoint files.
//!
//! They run on whatever WGPU device the machine has; on a machine without a GPU that is Mesa's
//! software adapter, llvmpipe (`mesa-vulkan-drivers`, which `scripts/test` installs).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::*;
use crate::data::{DatasetSpec, ImageSet};
use crate::definition::OptimizerSpec;
use crate::models::{Activation, Cell, ClassifierSpec, RnnLmConfig};
use crate::text::Batch;
use crate::train::optim::optimizer;
use crate::train::{clip, fit, lm};

/// Relative tolerance between a loss computed on WGPU and on the CPU. Both compute in f32, with
/// different kernels (tiled matmuls, fused element-wise chains, other summation orders): after
/// a few SGD steps the losses differ in the fifth or sixth digit, so 1e-3 leaves room while
/// still catching a wrong kernel, which moves the loss by far more.
const LOSS_TOLERANCE: f64 = 1e-3;

/// The WGPU device of this machine; fails, saying what to install, when there is none.
fn wgpu() -> Resolved {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::from_config(&Config::with_data_dir(dir.path()));
    let kind = BackendKind::Wgpu(None);
    let lane = backends.lane(kind).unwrap_or_else(|why| {
        panic!("{why}: the WGPU tests need a Vulkan device; install mesa-vulkan-drivers (scripts/test does)")
    });
    backends.resolve(lane)
}

fn cpu() -> Resolved {
    Backends::cpu_only().resolve(Lane::Cpu)
}

fn synthetic(n: usize) -> ImageSet {
    DatasetSpec::SyntheticImages { train_size: n, test_size: 1, seed: 3 }
        .load(std::path::Path::new("."), None, None, None)
        .unwrap()
        .train
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= LOSS_TOLERANCE * a.abs().max(1.0)
}

/// Copies `model`'s weights (and BatchNorm running statistics) onto a model `build` makes on
/// `to`, through a burnpack file: the way a checkpoint moves between backends.
fn through_file<M: Module>(model: &M, build: impl FnOnce() -> M, dir: &std::path::Path, name: &str) -> M {
    let file = dir.join(format!("{name}.bpk"));
    model.clone().valid().save_file(&file).unwrap();
    build().try_load_file(&file).unwrap()
}

#[test]
fn discovery_lists_a_usable_device_and_auto_never_picks_a_software_one() {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::from_config(&Config::with_data_dir(dir.path()));
    let view = backends.describe(1, 1);
    let wgpu = view.backends.iter().find(|b| b.name == "wgpu").expect("wgpu is listed");
    assert!(!wgpu.devices.is_empty(), "no WGPU device: {:?}", view.wgpu_probe_error);
    for (i, device) in wgpu.devices.iter().enumerate() {
        assert_eq!(device.id, format!("wgpu:{i}"));
        assert!(!device.name.is_empty() && !device.api.is_empty(), "{device:?}");
    }
    match wgpu.devices.iter().find(|d| d.usable && d.kind != GpuType::Software) {
        Some(gpu) => assert_eq!(view.auto, gpu.id),
        None => assert_eq!(view.auto, "cpu"),
    }
    // A named device that does not exist is refused with the list of those that do.
    let missing = wgpu.devices.len() as u32;
    let why = backends.lane(BackendKind::Wgpu(Some(missing))).unwrap_err();
    assert!(why.contains(&format!("no device wgpu:{missing}")) && why.contains("wgpu:0 ("), "{why}");

    // With --wgpu false there is no WGPU backend at all.
    let off = Config { wgpu: false, ..Config::with_data_dir(dir.path()) };
    let cpu_only = Backends::from_config(&off);
    assert!(cpu_only.describe(1, 1).backends.iter().all(|b| b.name != "wgpu"));
    assert!(cpu_only.lane(BackendKind::Wgpu(None)).unwrap_err().contains("--wgpu false"));
    assert_eq!(cpu_only.lane(BackendKind::Auto), Ok(Lane::Cpu));
}

#[test]
fn an_mlp_bn_trains_to_the_same_losses_on_wgpu_and_cpu_and_its_weights_move_both_ways() {
    trains_alike_on_wgpu_and_cpu(ClassifierSpec::MlpBn {
        hidden: vec![32, 16],
        activation: Activation::Relu,
        batch_norm: true,
    });
}

#[test]
fn a_layer_list_trains_to_the_same_losses_on_wgpu_and_cpu_and_its_weights_move_both_ways() {
    // Convolution, batch norm, sigmoid and 2×2 pooling take the fused kernels on the CPU and
    // Burn's operations on WGPU.
    let layers = serde_json::from_value(serde_json::json!([
        {"conv2d": {"out": 4, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}},
        {"avg_pool2d": {"kernel": 2, "stride": 2}}, {"max_pool2d": {"kernel": 3, "stride": 2, "padding": 1}},
        {"flatten": {}}, {"linear": {"out": 16}}, {"batch_norm": {}}, {"relu": {}}, {"linear": {"out": 10}}
    ]))
    .unwrap();
    trains_alike_on_wgpu_and_cpu(ClassifierSpec::Sequential { layers });
}

/// Four SGD steps of `spec` from the same weights on WGPU and the CPU give the same losses, and
/// the trained weights moved back to the CPU give the same outputs.
fn trains_alike_on_wgpu_and_cpu(spec: ClassifierSpec) {
    let dir = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (wgpu(), cpu());
    let data = synthetic(64);
    let shape = data.input_shape();

    let guard = crate::train::engine::init_lock();
    cpu.device.seed(11);
    let on_cpu = spec.init(shape, 10, &cpu.device);
    drop(guard);
    // CPU → WGPU: the same initial weights on both.
    let on_gpu = through_file(&on_cpu, || spec.init(shape, 10, &gpu.device), dir.path(), "init");
    let (mut on_cpu, mut on_gpu) = (on_cpu.train(), on_gpu.train());

    let sgd = OptimizerSpec::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    let (mut cpu_optim, mut gpu_optim) = (optimizer(&sgd), optimizer(&sgd));
    let cpu_ad = cpu.device.clone().autodiff();
    let gpu_ad = gpu.device.clone().autodiff();
    let (cpu_loss, gpu_loss) =
        (CrossEntropyLossConfig::new().init(&cpu_ad), CrossEntropyLossConfig::new().init(&gpu_ad));
    let mut losses = Vec::new();
    for step in 0..4 {
        let indices: Vec<usize> = (step * 16..(step + 1) * 16).collect();
        let (x, y) = fit::batch(&data, &indices, &cpu_ad);
        let (next, c) = fit::step(on_cpu, &mut cpu_optim, &cpu_loss, 0.1, None, x, y);
        on_cpu = next;
        let c = c.read().loss;
        let (x, y) = fit::batch(&data, &indices, &gpu_ad);
        let (next, g) = fit::step(on_gpu, &mut gpu_optim, &gpu_loss, 0.1, None, x, y);
        on_gpu = next;
        let g = g.read().loss;
        losses.push((c, g));
    }
    for (step, (c, g)) in losses.iter().enumerate() {
        assert!(close(*c, *g), "step {step}: cpu {c} wgpu {g} ({losses:?})");
    }
    assert!(losses[3].0 < losses[0].0, "the losses should fall: {losses:?}");

    // WGPU → CPU: the trained weights, running statistics included, give the same outputs.
    let x = fit::batch(&data, &(0..16).collect::<Vec<_>>(), &cpu.device).0;
    let trained = on_gpu.valid();
    let init = || {
        let _guard = crate::train::engine::init_lock();
        spec.init(shape, 10, &cpu.device)
    };
    let back = through_file(&trained, init, dir.path(), "trained");
    let on_gpu_out: Tensor<2> = trained.forward(x.clone().to_device(&gpu.device)).to_device(&cpu.device);
    let diff = (back.forward(x) - on_gpu_out).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "outputs differ by {diff} after moving the weights to the CPU");
}

#[test]
fn a_gru_language_model_trains_to_the_same_losses_on_wgpu_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (wgpu(), cpu());
    let config = RnnLmConfig::new(12, Cell::Gru).with_hidden(16);
    let guard = crate::train::engine::init_lock();
    cpu.device.seed(5);
    let on_cpu = config.init(&cpu.device);
    drop(guard);
    let on_gpu = through_file(&on_cpu, || config.init(&gpu.device), dir.path(), "gru");
    let (mut on_cpu, mut on_gpu) = (on_cpu.train(), on_gpu.train());
    let (cpu_ad, gpu_ad) = (cpu.device.clone().autodiff(), gpu.device.clone().autodiff());
    let sgd = OptimizerSpec::Sgd { lr: 1.0, momentum: 0.0, weight_decay: 0.0 };
    let (mut cpu_optim, mut gpu_optim) = (optimizer(&sgd), optimizer(&sgd));
    let loss_fn = |d: &Device| CrossEntropyLossConfig::new().init(d);

    let tokens = |offset: u32| (0..4 * 6).map(|i| (i * 7 + offset) % 12).collect::<Vec<u32>>();
    let mut losses = Vec::new();
    for step in 0..3u32 {
        let batch = Batch { x: tokens(step), y: tokens(step + 1), batch_size: 4, num_steps: 6 };
        let run = |model: crate::models::RnnLm, optim: &mut burn::optim::ModuleOptimizer, d: &Device| {
            let (x, y) = lm::tensors(&batch, d);
            let (logits, _) = model.forward(x, model.begin_state(4, d));
            let loss = loss_fn(d).forward(logits, y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let norm = clip::global_norm(&model, &grads);
            clip::clip_global_norm(&model, &mut grads, Some(1.0));
            let model = optim.step(1.0, model, grads);
            (model, f64::from(loss.into_scalar::<f32>()), norm)
        };
        let (next, c, c_norm) = run(on_cpu, &mut cpu_optim, &cpu_ad);
        on_cpu = next;
        let (next, g, g_norm) = run(on_gpu, &mut gpu_optim, &gpu_ad);
        on_gpu = next;
        assert!(close(c_norm, g_norm), "step {step}: gradient norms cpu {c_norm} wgpu {g_norm}");
        losses.push((c, g));
    }
    for (step, (c, g)) in losses.iter().enumerate() {
        assert!(close(*c, *g), "step {step}: cpu {c} wgpu {g} ({losses:?})");
    }
}

#[test]
fn lanes_are_named_as_the_queue_depth_names_them() {
    assert_eq!(Lane::Cpu.to_string(), "cpu");
    assert_eq!(Lane::Gpu(0).to_string(), "gpu:0");
    assert_eq!(Lane::Gpu(12).to_string(), "gpu:12");
}

#[test]
fn each_lane_claims_the_backends_that_resolve_to_it() {
    let cpu_only = Backends::cpu_only();
    assert_eq!(cpu_only.accepts(Lane::Cpu), ["cpu", "auto"], "no GPU: auto runs on the CPU");
    // This machine's software or hardware adapter: `wgpu` and `wgpu:0` land on its lane, and
    // the CPU lane never takes them.
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::from_config(&Config::with_data_dir(dir.path()));
    let gpu = backends.lane(BackendKind::Wgpu(None)).unwrap();
    let on_gpu = backends.accepts(gpu);
    assert!(
        on_gpu.contains(&"wgpu".to_string()) && on_gpu.iter().any(|k| k.starts_with("wgpu:")),
        "{on_gpu:?}"
    );
    assert!(!backends.accepts(Lane::Cpu).iter().any(|k| k.starts_with("wgpu")));
}
