//! The task of an image classifier.
//!
//! [`Classification`] loads the job's images and gives the engine its steps: each epoch visits
//! the training set in an order fixed by the seed and the epoch number, one optimizer step per
//! batch (BatchNorm on batch statistics, updating its running ones); the epoch ends with an
//! evaluation on the test split in evaluation mode (running statistics). [`batch`], [`step`] and
//! [`evaluate`] are also what `kiln bench` and `kiln parity` run.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::engine::{Evaluated, Interrupted, Settings, Stepped, Stop, Task};
use super::position::Position;
use super::readout::{self, StepTensors};
use super::{Run, TrainError};
use crate::data::{ImageData, ImageSet, batches_per_epoch, epoch_order};
use crate::definition::ImageDataSpec;
use crate::metrics::EpochMetrics;
use crate::models::{Classifier, ClassifierSpec};

/// A batch of images and labels as tensors on `device`, images resized as `set` says.
pub fn batch(set: &ImageSet, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let (pixels, labels) = set.gather(indices);
    let s = set.shape;
    let images =
        Tensor::from_data(TensorData::new(pixels, [indices.len(), s.channels, s.height, s.width]), device);
    let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
    let images = match set.resize {
        Some(side) if side != s.height || side != s.width => interpolate(
            images,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([side, side]),
        ),
        _ => images,
    };
    (images, labels)
}

/// Number of rows whose largest logit is the label, on the device (`[1]`).
fn correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1, Int> {
    let predicted: Tensor<1, Int> = logits.argmax(1).flatten(0, 1);
    predicted.equal(labels).int().sum()
}

/// One optimizer step on one batch, the gradients clipped to global norm `clip` when it is set:
/// returns the updated model and, still on the device, the batch's loss and how many of its
/// examples the model (before the update) classified right.
pub fn step(
    model: Classifier,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    lr: f64,
    clip: Option<f64>,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
) -> Stepped<Classifier> {
    let examples = labels.dims()[0] as u64;
    let logits = model.forward(images);
    let loss = loss_fn.forward(logits.clone(), labels.clone());
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if clip.is_some() {
        super::clip::clip_global_norm(&model, &mut grads, clip);
    }
    let model = optim.step(lr, model, grads);
    let correct = Some(correct(logits.inner(), labels.inner()));
    (model, StepTensors { loss: loss.inner(), correct, grad_norm_sq: None, examples })
}

/// Mean loss and accuracy of `model` (in evaluation mode) on `set`, in batches of `batch_size`
/// (a job evaluates at its training batch size: on a GPU every new shape is compiled and tuned,
/// and evaluation adds none but its last, partial batch). `stop` is asked between batches.
pub fn evaluate(
    model: &Classifier,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
    stop: &dyn Fn() -> bool,
) -> Result<(f64, f64), Interrupted> {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..set.len()).collect();
    let (mut loss_sum, mut right) = (0.0, 0u64);
    // Each batch's loss and count stay on the device and are read together, every
    // `readout::MAX_UNREAD` batches and at the end.
    let mut unread = Vec::new();
    let mut read = |unread: &mut Vec<(usize, Tensor<1>, Tensor<1, Int>)>| {
        let started = Instant::now();
        let values = readout::read(|t| {
            unread.iter().fold(t, |t, (_, loss, right)| t.register(loss.clone()).register(right.clone()))
        });
        for ((n, _, _), pair) in unread.iter().zip(values.chunks(2)) {
            loss_sum += f64::from(readout::scalar::<f32>(pair[0].clone())) * *n as f64;
            right += readout::scalar::<i64>(pair[1].clone()) as u64;
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::debug!(batches = unread.len(), seconds, "evaluation read");
        unread.clear();
    };
    for chunk in indices.chunks(batch_size) {
        if stop() {
            return Err(Interrupted);
        }
        let started = Instant::now();
        let (images, labels) = batch(set, chunk, device);
        let logits = model.forward(images);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        unread.push((chunk.len(), loss, correct(logits, labels)));
        let seconds = started.elapsed().as_secs_f64();
        tracing::debug!(examples = chunk.len(), seconds, "evaluation batch timed");
        if unread.len() >= readout::MAX_UNREAD {
            read(&mut unread);
        }
    }
    if !unread.is_empty() {
        read(&mut unread);
    }
    let n = set.len().max(1) as f64;
    Ok((loss_sum / n, right as f64 / n))
}

/// An image classifier and its data, as the engine trains them.
pub struct Classification<'a> {
    spec: &'a ClassifierSpec,
    data: ImageData,
    settings: Settings,
    /// The training set's order in the epoch under way.
    order: Vec<usize>,
}

impl<'a> Classification<'a> {
    /// Loads the job's images.
    pub fn load(run: &Run<'_>, spec: &'a ClassifierSpec, data: &ImageDataSpec) -> Result<Self, TrainError> {
        let datasets = run.config.datasets_dir();
        let data = data.source.load(&datasets, data.limit_train, data.limit_test, data.resize)?;
        Ok(Self { spec, data, settings: Settings::of(run), order: Vec::new() })
    }
}

impl Task for Classification<'_> {
    type Model = Classifier;

    fn init(&self, device: &Device) -> Classifier {
        self.spec.init(self.data.train.input_shape(), self.data.classes, device)
    }

    fn batches_per_epoch(&self) -> usize {
        batches_per_epoch(self.data.train.len(), self.settings.batch_size)
    }

    fn class_names(&self) -> Option<&[String]> {
        Some(&self.data.names)
    }

    fn begin_epoch(&mut self, epoch: u32) {
        self.order = epoch_order(self.data.train.len(), self.settings.seed, epoch);
    }

    fn step(&mut self, model: Classifier, optim: &mut ModuleOptimizer, index: usize) -> Stepped<Classifier> {
        let s = &self.settings;
        let indices = &self.order[index * s.batch_size..((index + 1) * s.batch_size).min(self.order.len())];
        let (images, labels) = batch(&self.data.train, indices, &s.train_device);
        step(model, optim, &s.loss, s.lr, s.clip, images, labels)
    }

    fn warm_up(&mut self, spare: Classifier) {
        let s = &self.settings;
        let test = self.data.test.len();
        let mut last = None;
        // Evaluation's batches: full ones and the last.
        let model = spare.valid();
        let loss_fn = CrossEntropyLossConfig::new().init(&s.device);
        let mut sizes = vec![s.batch_size.min(test), test % s.batch_size];
        sizes.dedup();
        for size in sizes.into_iter().filter(|&n| n > 0) {
            let (images, labels) = batch(&self.data.test, &(0..size).collect::<Vec<_>>(), &s.device);
            let logits = model.forward(images);
            drop(loss_fn.forward(logits.clone(), labels.clone()));
            last = Some(correct(logits, labels));
        }
        // Waits for the device, so the work counts before the first step.
        if let Some(last) = last {
            readout::read(|t| t.register(last));
        }
    }

    fn evaluate(&mut self, model: &Classifier, position: &Position, stop: Stop<'_>) -> Evaluated {
        let s = &self.settings;
        let (test_loss, test_accuracy) = evaluate(model, &self.data.test, s.batch_size, &s.device, stop)?;
        let (epoch, totals) = (position.epoch + 1, &position.totals);
        Ok(EpochMetrics {
            train_accuracy: Some(totals.accuracy()),
            test_loss: Some(test_loss),
            test_accuracy: Some(test_accuracy),
            examples_per_sec: Some(totals.throughput()),
            ..EpochMetrics::new(epoch, totals.mean_loss(), 0.0)
        })
    }
}

#[cfg(test)]
mod tests;
