//! The training loop of a language model, the book's `train_ch8`.
//!
//! The corpus becomes a vocabulary and a stream of token ids ([`crate::text`]); each epoch cuts
//! the training stream into `[batch, num_steps]` batches, sequential or random as the job says,
//! in an order fixed by the seed and the epoch. A step runs the model over a batch, takes the mean
//! per-token cross-entropy, backpropagates, clips the gradients by their global norm
//! ([`super::clip`]) and updates. With sequential sampling the hidden state of one batch starts
//! the next, detached from the graph so backpropagation stops at the batch boundary; with random
//! sampling every batch starts from zeros. A job resumed in the middle of an epoch starts its
//! next batch from zeros, since the carried state is not part of a checkpoint.
//!
//! Each epoch records the mean loss, its exponential (perplexity), the perplexity of the
//! held-out tail, tokens per second and the gradient norm before clipping (mean and max).

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::checkpoint;
use super::metrics::{EpochMetrics, StepPoint};
use super::{
    FirstStep, Outcome, TrainError, TrainJob, begin, clip, end_epoch, record_step, restore_or_init,
    stop_if_asked,
};
use crate::jobs::spec::TextDataSpec;
use crate::models::rnn_lm::State;
use crate::models::{LanguageModelSpec, RnnLm, RnnLmConfig};
use crate::text::{self, Batch, Sampling};

/// Token ids of a batch as tensors: inputs `[batch, steps]` and targets `[batch * steps]`.
pub fn tensors(batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let ids = |v: &[u32]| v.iter().map(|&t| i64::from(t)).collect::<Vec<_>>();
    let x = Tensor::from_data(TensorData::new(ids(&batch.x), [batch.batch_size, batch.num_steps]), device);
    let y = Tensor::from_data(TensorData::new(ids(&batch.y), [batch.batch_size * batch.num_steps]), device);
    (x, y)
}

/// A pass given up because a stop was asked for.
pub struct Interrupted;

/// Perplexity of `model` on a token stream, read in order with the state carried across
/// batches; `None` when the stream is too short to predict anything. `stop` is asked between
/// batches, so a long held-out tail does not hold up a cancel or a shutdown.
pub fn perplexity(
    model: &RnnLm,
    stream: &[u32],
    batch_size: usize,
    num_steps: usize,
    device: &Device,
    stop: &dyn Fn() -> bool,
) -> Result<Option<f64>, Interrupted> {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut sum, mut tokens) = (0.0, 0usize);
    let mut state: Option<State> = None;
    for batch in text::validation_batches(stream, batch_size, num_steps) {
        if stop() {
            return Err(Interrupted);
        }
        let (x, y) = tensors(&batch, device);
        let start = state.take().unwrap_or_else(|| model.begin_state(batch.batch_size, device));
        let (logits, next) = model.forward(x, start);
        let n = batch.batch_size * batch.num_steps;
        sum += f64::from(loss_fn.forward(logits, y).into_scalar::<f32>()) * n as f64;
        tokens += n;
        state = Some(next);
    }
    Ok((tokens > 0).then(|| (sum / tokens as f64).exp()))
}

/// Refuses a model that the real vocabulary makes bigger than the server allows (validation
/// could only bound it from below).
fn check_size(config: &RnnLmConfig, job: &TrainJob<'_>, num_steps: usize) -> Result<(), TrainError> {
    let params = config.parameter_count();
    if params > job.config.max_parameters {
        return Err(TrainError::TooLarge(format!(
            "with its vocabulary of {} tokens the model has {params} parameters, more than this \
             server's limit of {}; raise data.min_freq, set data.max_tokens or lower model.hidden",
            config.vocab, job.config.max_parameters
        )));
    }
    let batch = job.spec.training.batch_size;
    let mib = (config.activation_floats(batch, num_steps) * 4) as f64 / (1024.0 * 1024.0);
    if mib > job.config.max_batch_memory_mib as f64 {
        return Err(TrainError::TooLarge(format!(
            "with its vocabulary of {} tokens a batch needs an estimated {mib:.0} MiB of activations, \
             over this server's limit of {} MiB; lower training.batch_size or data.num_steps",
            config.vocab, job.config.max_batch_memory_mib
        )));
    }
    Ok(())
}

/// Trains language-model `job` to its end, or until it is cancelled or the server stops.
pub fn run(job: &TrainJob<'_>, spec: &LanguageModelSpec, data: &TextDataSpec) -> Result<Outcome, TrainError> {
    let training = &job.spec.training;
    let mut first_step = FirstStep::start();
    let resolved = job.device;
    let device = resolved.device.clone().autodiff();
    job.store.mark_running(job.id, &resolved.name)?;
    let corpus = text::build_corpus(&data.source.load(job.config)?, &data.options())?;
    if corpus.vocab.len() < 2 {
        return Err(TrainError::Corpus(format!(
            "no token of the corpus is seen data.min_freq = {} times: the vocabulary would be <unk> alone",
            data.min_freq
        )));
    }
    let config = spec.config(corpus.vocab.len());
    check_size(&config, job, data.num_steps)?;
    job.store.set_parameters(job.id, config.parameter_count() as u64)?;

    let (batch_size, num_steps) = (training.batch_size, data.num_steps);
    let per_epoch = text::batches_per_epoch(corpus.train.len(), batch_size, num_steps, data.sampling);
    if per_epoch == 0 {
        return Err(TrainError::Corpus(format!(
            "the corpus has {} training tokens, too few for one batch of {batch_size} sequences of \
             {num_steps} tokens; lower training.batch_size or data.num_steps",
            corpus.train.len()
        )));
    }

    let same_vocab = |manifest: &checkpoint::Manifest| {
        if manifest.vocab.as_ref() == Some(&corpus.vocab) {
            Ok(())
        } else {
            Err(TrainError::Corpus(
                "the corpus no longer gives the vocabulary the checkpoint was trained with".into(),
            ))
        }
    };
    let start = restore_or_init(
        job,
        &device,
        super::fit::optimizer(&training.optimizer),
        same_vocab,
        || config.init(&resolved.device),
        |cpu| config.init(cpu),
    )?;
    if start.position.step_in_epoch as usize > per_epoch {
        return Err(TrainError::Corpus(format!(
            "the checkpoint stands at batch {} of an epoch, but the corpus now gives {per_epoch} batches an epoch",
            start.position.step_in_epoch
        )));
    }
    let (mut model, mut optim, mut position) = (start.model, start.optim, start.position);
    let mut progress = begin(job, &position, per_epoch)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let lr = training.optimizer.lr();
    let vocab = Some(&corpus.vocab);
    let mut pending: Vec<StepPoint> = Vec::new();

    while position.epoch < training.epochs {
        let epoch = position.epoch + 1;
        let started = Instant::now() - Duration::from_secs_f64(position.totals.train_seconds);
        let batches =
            text::epoch_batches(&corpus.train, batch_size, num_steps, data.sampling, training.seed, epoch);
        let mut state: Option<State> = None;
        for batch in &batches[position.step_in_epoch as usize..] {
            if let Some(outcome) = stop_if_asked(job, &model, &optim, &position, &pending, progress, vocab)? {
                return Ok(outcome);
            }
            let step_started = Instant::now();
            let (x, y) = tensors(batch, &device);
            let start = match (data.sampling, state.take()) {
                (Sampling::Sequential, Some(carried)) => carried.detach(),
                _ => model.begin_state(batch_size, &device),
            };
            let (logits, next) = model.forward(x, start);
            let loss = loss_fn.forward(logits, y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let grad_norm = clip::clip_global_norm(&model, &mut grads, training.grad_clip_norm);
            model = optim.step(lr, model, grads);
            if data.sampling == Sampling::Sequential {
                state = Some(next);
            }
            let loss_value = f64::from(loss.into_scalar::<f32>());

            position.step += 1;
            position.step_in_epoch += 1;
            let tokens = (batch_size * num_steps) as u64;
            position.totals.add(loss_value, 0, tokens, step_started.elapsed().as_secs_f64());
            position.totals.add_grad_norm(grad_norm);
            progress.step = position.step;
            if !loss_value.is_finite() || !grad_norm.is_finite() {
                job.store.record_steps(job.id, &pending, progress)?;
                return Err(TrainError::Diverged { epoch, step: position.step, loss: loss_value });
            }
            let point =
                StepPoint { step: position.step, epoch, loss: loss_value, grad_norm: Some(grad_norm) };
            let last = position.step_in_epoch as usize == per_epoch;
            record_step(job, &mut pending, point, progress, last)?;
            first_step.done(job)?;
        }

        let stop = || super::stop_requested(job).is_some();
        let validation = &corpus.validation;
        let Ok(validation_perplexity) =
            perplexity(&model.valid(), validation, batch_size, num_steps, &resolved.device, &stop)
        else {
            // Every step of the epoch is done: the checkpoint resumes at its evaluation.
            let outcome = stop_if_asked(job, &model, &optim, &position, &pending, progress, vocab)?;
            return Ok(outcome.unwrap_or(Outcome::Interrupted));
        };
        let totals = std::mem::take(&mut position.totals);
        let train_loss = totals.mean_loss();
        let metrics = EpochMetrics {
            perplexity: Some(train_loss.exp()),
            validation_perplexity,
            tokens_per_sec: Some(totals.throughput()),
            grad_norm: Some(totals.mean_grad_norm()),
            grad_norm_max: Some(totals.grad_norm_max),
            ..EpochMetrics::new(epoch, train_loss, started.elapsed().as_secs_f64())
        };
        tracing::info!(job = %job.id, epoch, train_loss, perplexity = metrics.perplexity, "epoch done");
        end_epoch(job, &model, &optim, &mut position, &mut progress, metrics, vocab)?;
    }
    Ok(Outcome::Completed)
}
