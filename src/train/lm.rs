//! The task of a language model, the book's `train_ch8`.
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

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::checkpoint::Manifest;
use super::engine::{Evaluated, Interrupted, Settings, Stepped, Stop, Task};
use super::position::Position;
use super::readout::{self, StepTensors};
use super::{Run, TrainError, clip};
use crate::definition::TextDataSpec;
use crate::metrics::EpochMetrics;
use crate::models::rnn_lm::State;
use crate::models::{LanguageModelSpec, RnnLm, RnnLmConfig};
use crate::text::{self, Batch, Corpus, Sampling};

/// Token ids of a batch as tensors: inputs `[batch, steps]` and targets `[batch * steps]`.
pub fn tensors(batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let ids = |v: &[u32]| v.iter().map(|&t| i64::from(t)).collect::<Vec<_>>();
    let x = Tensor::from_data(TensorData::new(ids(&batch.x), [batch.batch_size, batch.num_steps]), device);
    let y = Tensor::from_data(TensorData::new(ids(&batch.y), [batch.batch_size * batch.num_steps]), device);
    (x, y)
}

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
    let mut state: Option<State> = None;
    let (mut sum, mut tokens) = (0.0, 0usize);
    // Each batch's loss stays on the device; they are read together, every
    // `readout::MAX_UNREAD` batches and at the end.
    let mut unread = Vec::new();
    let mut read = |unread: &mut Vec<(usize, Tensor<1>)>| {
        let values = readout::read(|t| unread.iter().fold(t, |t, (_, loss)| t.register(loss.clone())));
        for ((n, _), value) in unread.iter().zip(values) {
            sum += f64::from(readout::scalar::<f32>(value)) * *n as f64;
            tokens += n;
        }
        unread.clear();
    };
    for batch in text::validation_batches(stream, batch_size, num_steps) {
        if stop() {
            return Err(Interrupted);
        }
        let (x, y) = tensors(&batch, device);
        let start = state.take().unwrap_or_else(|| model.begin_state(batch.batch_size, device));
        let (logits, next) = model.forward(x, start);
        unread.push((batch.batch_size * batch.num_steps, loss_fn.forward(logits, y)));
        state = Some(next);
        if unread.len() >= readout::MAX_UNREAD {
            read(&mut unread);
        }
    }
    if !unread.is_empty() {
        read(&mut unread);
    }
    if tokens == 0 {
        return Ok(None);
    }
    Ok(Some((sum / tokens as f64).exp()))
}

/// A language model and its corpus, as the engine trains them.
pub struct LanguageModelling<'a> {
    data: &'a TextDataSpec,
    corpus: Corpus,
    config: RnnLmConfig,
    settings: Settings,
    per_epoch: usize,
    /// The batches of the epoch under way, and the state carried between them.
    batches: Vec<Batch>,
    state: Option<State>,
}

impl<'a> LanguageModelling<'a> {
    /// Reads the corpus, builds its vocabulary and checks that the model and a batch fit this
    /// server; reports the parameter count, which the vocabulary decides.
    pub fn load(run: &Run<'_>, spec: &LanguageModelSpec, data: &'a TextDataSpec) -> Result<Self, TrainError> {
        let corpus = text::build_corpus(&data.source.load(run.config)?, &data.options())?;
        if corpus.vocab.len() < 2 {
            return Err(TrainError::Corpus(format!(
                "no token of the corpus is seen data.min_freq = {} times: the vocabulary would be <unk> alone",
                data.min_freq
            )));
        }
        let config = spec.config(corpus.vocab.len());
        check_size(&config, run, data.num_steps)?;
        let training = &run.spec.training;
        let (batch_size, num_steps) = (training.batch_size, data.num_steps);
        let per_epoch = text::batches_per_epoch(corpus.train.len(), batch_size, num_steps, data.sampling);
        if per_epoch == 0 {
            return Err(TrainError::Corpus(format!(
                "the corpus has {} training tokens, too few for one batch of {batch_size} sequences of \
                 {num_steps} tokens; lower training.batch_size or data.num_steps",
                corpus.train.len()
            )));
        }
        let settings = Settings::of(run);
        Ok(Self { data, corpus, config, settings, per_epoch, batches: Vec::new(), state: None })
    }
}

impl Task for LanguageModelling<'_> {
    type Model = RnnLm;

    fn init(&self, device: &Device) -> RnnLm {
        self.config.init(device)
    }

    fn accepts(&self, manifest: &Manifest) -> Result<(), TrainError> {
        if manifest.vocab.as_ref() == Some(&self.corpus.vocab) {
            Ok(())
        } else {
            Err(TrainError::Corpus(
                "the corpus no longer gives the vocabulary the checkpoint was trained with".into(),
            ))
        }
    }

    fn batches_per_epoch(&self) -> usize {
        self.per_epoch
    }

    fn begin_epoch(&mut self, epoch: u32) {
        let (data, s) = (self.data, &self.settings);
        self.batches = text::epoch_batches(
            &self.corpus.train,
            s.batch_size,
            data.num_steps,
            data.sampling,
            s.seed,
            epoch,
        );
        self.state = None;
    }

    fn step(&mut self, model: RnnLm, optim: &mut ModuleOptimizer, index: usize) -> Stepped<RnnLm> {
        let (batch, s) = (&self.batches[index], &self.settings);
        let (x, y) = tensors(batch, &s.train_device);
        let start = match (self.data.sampling, self.state.take()) {
            (Sampling::Sequential, Some(carried)) => carried.detach(),
            _ => model.begin_state(s.batch_size, &s.train_device),
        };
        let (logits, next) = model.forward(x, start);
        let loss = s.loss.forward(logits, y);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm_sq = clip::clip_global_norm(&model, &mut grads, s.clip);
        let model = optim.step(s.lr, model, grads);
        if self.data.sampling == Sampling::Sequential {
            self.state = Some(next);
        }
        let examples = (batch.batch_size * batch.num_steps) as u64;
        (model, StepTensors { loss: loss.inner(), correct: None, grad_norm_sq, examples })
    }

    fn warm_up(&mut self, spare: RnnLm) {
        // Training batches all have one shape, which the first step meets; the held-out tail's
        // batches may have two (its last is narrower), run once each in evaluation mode.
        let (s, model) = (&self.settings, spare.valid());
        let loss_fn = CrossEntropyLossConfig::new().init(&s.device);
        let mut shapes: Vec<Batch> =
            text::validation_batches(&self.corpus.validation, s.batch_size, self.data.num_steps);
        shapes.dedup_by_key(|b| (b.batch_size, b.num_steps));
        let mut last = None;
        for batch in &shapes {
            let (x, y) = tensors(batch, &s.device);
            let (logits, _) = model.forward(x, model.begin_state(batch.batch_size, &s.device));
            last = Some(loss_fn.forward(logits, y));
        }
        // Waits for the device, so the work counts before the first step.
        if let Some(last) = last {
            readout::read(|t| t.register(last));
        }
    }

    fn evaluate(&mut self, model: &RnnLm, position: &Position, stop: Stop<'_>) -> Evaluated {
        let (validation, s) = (&self.corpus.validation, &self.settings);
        let validation_perplexity =
            perplexity(model, validation, s.batch_size, self.data.num_steps, &s.device, stop)?;
        let (epoch, totals) = (position.epoch + 1, &position.totals);
        let train_loss = totals.mean_loss();
        Ok(EpochMetrics {
            perplexity: Some(train_loss.exp()),
            validation_perplexity,
            tokens_per_sec: Some(totals.throughput()),
            grad_norm: Some(totals.mean_grad_norm()),
            grad_norm_max: Some(totals.grad_norm_max),
            ..EpochMetrics::new(epoch, train_loss, 0.0)
        })
    }

    fn vocab(&self) -> Option<&text::Vocab> {
        Some(&self.corpus.vocab)
    }

    fn parameters(&self) -> Option<u64> {
        Some(self.config.parameter_count() as u64)
    }
}

/// Refuses a model that the real vocabulary makes bigger than the server allows (validation
/// could only bound it from below).
fn check_size(config: &RnnLmConfig, run: &Run<'_>, num_steps: usize) -> Result<(), TrainError> {
    let params = config.parameter_count();
    if params > run.config.max_parameters {
        return Err(TrainError::TooLarge(format!(
            "with its vocabulary of {} tokens the model has {params} parameters, more than this \
             server's limit of {}; raise data.min_freq, set data.max_tokens or lower model.hidden",
            config.vocab, run.config.max_parameters
        )));
    }
    let batch = run.spec.training.batch_size;
    let mib = (config.activation_floats(batch, num_steps) * 4) as f64 / (1024.0 * 1024.0);
    if mib > run.config.max_batch_memory_mib as f64 {
        return Err(TrainError::TooLarge(format!(
            "with its vocabulary of {} tokens a batch needs an estimated {mib:.0} MiB of activations, \
             over this server's limit of {} MiB; lower training.batch_size or data.num_steps",
            config.vocab, run.config.max_batch_memory_mib
        )));
    }
    Ok(())
}
