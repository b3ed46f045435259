//! `kiln bench`: training throughput of kiln's own step on each CPU backend, printed in the
//! same form as the project's PyTorch reference script (`torch_ref.py`, named in
//! `docs/benchmarks.md`) so the two can be read side by side.
//!
//! Each backend runs the model for `warmup` untimed steps and `steps` timed ones on one fixed
//! batch, through the same [`crate::train::fit::step`] the service uses. A breakdown times the
//! phases of a step separately (tensor upload, forward and loss, backward, optimizer update,
//! reading the loss back) to show where the time goes. Language models (`rnn`, `gru`, `lstm`)
//! run as `torch_ref.py` runs them: 28 symbols, 256 hidden units, batches of 35 random tokens,
//! SGD lr 1 with the gradients clipped to global norm 1; they report tokens per second.

use std::time::{Duration, Instant};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;

use crate::backend::BackendKind;
use crate::backend::{Backends, Resolved, SHADERS};
use crate::data::DatasetSpec;
use crate::definition::OptimizerSpec;
use crate::models::{Cell, ClassifierSpec, RnnLmConfig};
use crate::text::Batch;
use crate::train::{clip, fit, lm, optim};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Timed optimizer steps per backend.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Untimed steps first (allocation, caches).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Backends to measure, comma-separated, named as a job's `backend` (cpu, wgpu,
    /// wgpu:N).
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub backends: Vec<String>,
    /// Model, named as `torch_ref.py` names them: lenet_bn (28x28 input), resnet18 or densenet
    /// (96x96 input, the book's size); rnn, gru or lstm (language models over 28 symbols).
    #[arg(long, default_value = "lenet_bn")]
    pub model: String,
    /// Language models: hidden units.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
}

/// Throughput of a language model's training step, in tokens per second.
fn run_lm(args: &BenchArgs, cell: Cell) -> Result<(), String> {
    const VOCAB: usize = 28;
    const NUM_STEPS: usize = 35;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rng = StdRng::seed_from_u64(0);
    let mut tokens =
        || (0..args.batch * NUM_STEPS).map(|_| rng.random_range(0..VOCAB as u32)).collect::<Vec<_>>();
    let batch = Batch { x: tokens(), y: tokens(), batch_size: args.batch, num_steps: NUM_STEPS };
    for name in &args.backends {
        let resolved = device(name)?;
        let device = resolved.device.autodiff();
        device.seed(0);
        let config = RnnLmConfig::new(VOCAB, cell).with_hidden(args.hidden);
        let mut model = config.init(&device);
        let mut optim = optim::optimizer(&OptimizerSpec::Sgd { lr: 1.0, momentum: 0.0, weight_decay: 0.0 });
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut last_loss = 0.0;
        let mut timed = Duration::ZERO;
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            let (x, y) = lm::tensors(&batch, &device);
            let (logits, _) = model.forward(x, model.begin_state(args.batch, &device));
            let loss = loss_fn.forward(logits, y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip::clip_global_norm(&model, &mut grads, Some(1.0));
            model = optim.step(1.0, model, grads);
            last_loss = loss.into_scalar::<f32>();
            if i >= args.warmup {
                timed += start.elapsed();
            }
        }
        let per_sec = (args.steps * args.batch * NUM_STEPS) as f64 / timed.as_secs_f64();
        println!(
            "model={} engine=kiln backend={name} device=\"{}\" shaders={SHADERS} batch={} steps={} threads={threads} hidden={} params={} loss={last_loss:.4} tokens_per_sec={per_sec:.1}",
            args.model,
            resolved.name,
            args.batch,
            args.steps,
            args.hidden,
            config.parameter_count()
        );
        if let Some(peak) = peak_rss_mib() {
            println!("  peak resident memory of the process so far: {peak:.0} MiB");
        }
    }
    Ok(())
}

/// The device `name` (as a job's `backend` names it) stands for on this machine. WGPU caches go
/// where a server with the default data dir keeps them, `./kiln-data/gpu-cache`.
fn device(name: &str) -> Result<Resolved, String> {
    let kind =
        BackendKind::parse(name).ok_or_else(|| format!("unknown backend {name}: {}", BackendKind::SYNTAX))?;
    let backends = Backends::from_config(&crate::config::Config::with_data_dir("kiln-data"));
    let lane = backends.lane(kind)?;
    Ok(backends.resolve(lane))
}

/// The model and input side `torch_ref.py` uses for `name`, and its learning rate.
fn model(name: &str) -> Result<(ClassifierSpec, Option<usize>, f64), String> {
    match name {
        "lenet_bn" => Ok((ClassifierSpec::LenetBn { batch_norm: true }, None, 0.9)),
        "resnet18" => Ok((ClassifierSpec::resnet18(), Some(96), 0.05)),
        "densenet" => Ok((ClassifierSpec::densenet_book(), Some(96), 0.05)),
        other => Err(format!("unknown model {other}: lenet_bn, resnet18, densenet, rnn, gru or lstm")),
    }
}

/// Peak resident memory of this process so far, in MiB (Linux), from /proc/self/status.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the benchmark and prints one line per backend.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    if let Some((_, cell)) = Cell::ALL.iter().find(|(name, _)| *name == args.model) {
        return run_lm(args, *cell);
    }
    let (spec, resize, lr) = model(&args.model)?;
    let data = DatasetSpec::SyntheticImages { train_size: args.batch, test_size: 1, seed: 0 }
        .load(std::path::Path::new("."), None, None, resize)
        .map_err(|e| e.to_string())?;
    let indices: Vec<usize> = (0..args.batch).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for name in &args.backends {
        let resolved = device(name)?;
        let device = resolved.device.autodiff();
        device.seed(0);
        let mut model = spec.init(data.train.input_shape(), 10, &device);
        let mut optim = optim::optimizer(&OptimizerSpec::Sgd { lr, momentum: 0.0, weight_decay: 0.0 });
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut phases = [Duration::ZERO; 5];
        let mut last_loss = 0.0;
        let mut timed = Duration::ZERO;
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            let (images, labels) = fit::batch(&data.train, &indices, &device);
            let t_upload = Instant::now();
            let logits = model.forward(images);
            let loss = loss_fn.forward(logits, labels);
            let t_forward = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let t_backward = Instant::now();
            model = optim.step(lr, model, grads);
            let t_update = Instant::now();
            last_loss = loss.into_scalar::<f32>();
            let end = Instant::now();
            if i >= args.warmup {
                timed += end - start;
                for (phase, d) in phases.iter_mut().zip([
                    t_upload - start,
                    t_forward - t_upload,
                    t_backward - t_forward,
                    t_update - t_backward,
                    end - t_update,
                ]) {
                    *phase += d;
                }
            }
        }
        let per_sec = (args.steps * args.batch) as f64 / timed.as_secs_f64();
        println!(
            "model={} engine=kiln backend={name} device=\"{}\" shaders={SHADERS} batch={} steps={} threads={threads} loss={last_loss:.4} examples_per_sec={per_sec:.1}",
            args.model, resolved.name, args.batch, args.steps
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / args.steps as f64;
        println!(
            "  per step: {:.2} ms = upload {:.2} + forward {:.2} + backward {:.2} + update {:.2} + readback {:.2}",
            ms(timed),
            ms(phases[0]),
            ms(phases[1]),
            ms(phases[2]),
            ms(phases[3]),
            ms(phases[4])
        );
        if let Some(peak) = peak_rss_mib() {
            println!("  peak resident memory of the process so far: {peak:.0} MiB");
        }
    }
    Ok(())
}
