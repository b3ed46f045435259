//! `kiln bench`: training throughput of kiln's own step on each CPU backend, printed in the
//! same form as the project's PyTorch reference script (`torch_ref.py`, named in
//! `docs/benchmarks.md`) so the two can be read side by side.
//!
//! Each backend runs the model for `warmup` untimed steps and `steps` timed ones on one fixed
//! batch, through the same [`crate::train::fit::step`] the service uses. A breakdown times the
//! phases of a step separately (tensor upload, forward and loss, backward, optimizer update,
//! reading the results back) to show where the time goes. As a job does, the steps' results stay
//! on the device and are read back together every `--log-every` steps (see
//! [`crate::train::readout`]); `host_syncs_per_step=` counts the blocking reads of the timed steps,
//! and `kernels=` names the instruction set kiln's own CPU kernels run with
//! ([`kiln_kernels::simd::Level`]).
//! Language models (`rnn`, `gru`, `lstm`)
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
use crate::train::readout::{self, Readout, StepTensors};
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
    /// Read the steps' results back every N steps, as a job's `training.log_every` does.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
}

/// Whether the results are read back after timed step `i` (0-based) of `steps`.
fn read_due(args: &BenchArgs, i: usize) -> bool {
    (i + 1) as u64 % args.log_every == 0 || i + 1 == args.steps
}

/// Throughput of a language model's training step, in tokens per second.
fn run_lm(args: &BenchArgs, cell: Cell) -> Result<(), String> {
    const VOCAB: usize = 28;
    const NUM_STEPS: usize = 35;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernels = kiln_kernels::simd::Level::current().name();
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
        let mut steps = Steps::new();
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            let (x, y) = lm::tensors(&batch, &device);
            let (logits, _) = model.forward(x, model.begin_state(args.batch, &device));
            let loss = loss_fn.forward(logits, y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let grad_norm_sq = clip::clip_global_norm(&model, &mut grads, Some(1.0));
            model = optim.step(1.0, model, grads);
            let examples = (args.batch * NUM_STEPS) as u64;
            steps.push(
                args,
                i,
                StepTensors { loss: loss.inner(), correct: None, grad_norm_sq, examples },
                start,
            );
        }
        let per_sec = (args.steps * args.batch * NUM_STEPS) as f64 / steps.timed.as_secs_f64();
        let (last_loss, syncs) = (steps.last_loss, steps.syncs_per_step(args));
        println!(
            "model={} engine=kiln backend={name} device=\"{}\" shaders={SHADERS} batch={} steps={} threads={threads} kernels={kernels} hidden={} params={} loss={last_loss:.4} host_syncs_per_step={syncs:.2} tokens_per_sec={per_sec:.1}",
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

/// The steps of one backend's run: their results kept on the device and read back as a job
/// reads them, the timed steps' wall time, and what the reads cost.
#[derive(Default)]
struct Steps {
    unread: Readout,
    /// Wall time of the timed steps, their reads included.
    timed: Duration,
    /// Of which, waiting in reads.
    reading: Duration,
    /// Host reads before the first timed step.
    reads_at_start: u64,
    last_loss: f64,
}

impl Steps {
    fn new() -> Self {
        Self { reads_at_start: readout::host_reads(), ..Self::default() }
    }

    /// Keeps step `i`'s results (the steps after `args.warmup` are timed from `start`), reading
    /// them back when a job would: every `log_every` timed steps and at the last; and once after
    /// the warm-up, so the timed steps start with nothing pending.
    fn push(&mut self, args: &BenchArgs, i: usize, step: StepTensors, start: Instant) {
        self.unread.push(step, 0.0);
        match i.checked_sub(args.warmup) {
            None if i + 1 == args.warmup => {
                self.read();
                self.reads_at_start = readout::host_reads();
            }
            None => {}
            Some(t) => {
                let reading = Instant::now();
                if read_due(args, t) {
                    self.read();
                }
                self.reading += reading.elapsed();
                self.timed += start.elapsed();
            }
        }
    }

    fn read(&mut self) {
        if let Some((last, _)) = self.unread.take().pop() {
            self.last_loss = last.loss;
        }
    }

    /// Blocking reads per timed step.
    fn syncs_per_step(&self, args: &BenchArgs) -> f64 {
        (readout::host_reads() - self.reads_at_start) as f64 / args.steps.max(1) as f64
    }
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
    let kernels = kiln_kernels::simd::Level::current().name();
    for name in &args.backends {
        let resolved = device(name)?;
        let device = resolved.device.autodiff();
        device.seed(0);
        let mut model = spec.init(data.train.input_shape(), 10, &device);
        let mut optim = optim::optimizer(&OptimizerSpec::Sgd { lr, momentum: 0.0, weight_decay: 0.0 });
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut phases = [Duration::ZERO; 4];
        let mut steps = Steps::new();
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
            let examples = args.batch as u64;
            steps.push(
                args,
                i,
                StepTensors { loss: loss.inner(), correct: None, grad_norm_sq: None, examples },
                start,
            );
            if i >= args.warmup {
                let durations =
                    [t_upload - start, t_forward - t_upload, t_backward - t_forward, t_update - t_backward];
                for (phase, d) in phases.iter_mut().zip(durations) {
                    *phase += d;
                }
            }
        }
        let timed = steps.timed;
        let per_sec = (args.steps * args.batch) as f64 / timed.as_secs_f64();
        let (last_loss, syncs) = (steps.last_loss, steps.syncs_per_step(args));
        println!(
            "model={} engine=kiln backend={name} device=\"{}\" shaders={SHADERS} batch={} steps={} threads={threads} kernels={kernels} loss={last_loss:.4} host_syncs_per_step={syncs:.2} examples_per_sec={per_sec:.1}",
            args.model, resolved.name, args.batch, args.steps
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / args.steps as f64;
        println!(
            "  per step: {:.2} ms = upload {:.2} + forward {:.2} + backward {:.2} + update {:.2} + reading back {:.2} (every {} steps)",
            ms(timed),
            ms(phases[0]),
            ms(phases[1]),
            ms(phases[2]),
            ms(phases[3]),
            ms(steps.reading),
            args.log_every
        );
        if let Some(peak) = peak_rss_mib() {
            println!("  peak resident memory of the process so far: {peak:.0} MiB");
        }
    }
    Ok(())
}
