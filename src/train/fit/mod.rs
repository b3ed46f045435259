//! The training loop of an image classifier.
//!
//! One call of [`run`] trains a job from its start or from its newest checkpoint to its end:
//! each epoch visits the training set in an order fixed by the seed and the epoch number, takes
//! one optimizer step per batch (BatchNorm on batch statistics, updating its running ones), then
//! evaluates on the test split in evaluation mode (running statistics), records the epoch's
//! metrics and writes a checkpoint when the policy says so. Between steps it looks at the
//! cancel and shutdown flags; either stops it at that step boundary after a checkpoint.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::metrics::{EpochMetrics, StepPoint};
use super::{
    FirstStep, Outcome, TrainError, TrainJob, batches_per_epoch, begin, end_epoch, record_step,
    restore_or_init, stop_if_asked,
};
use crate::data::{ImageSet, epoch_order};
use crate::jobs::spec::{ImageDataSpec, OptimizerSpec};
use crate::models::{Classifier, ClassifierSpec};

/// Examples per evaluation batch.
const EVAL_BATCH: usize = 1000;

/// Builds the optimizer a spec asks for.
pub fn optimizer(spec: &OptimizerSpec) -> ModuleOptimizer {
    match *spec {
        OptimizerSpec::Sgd { momentum, weight_decay, .. } => SgdConfig::new()
            .with_momentum(
                (momentum > 0.0).then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0)),
            )
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)))
            .init(),
        OptimizerSpec::Adam { beta1, beta2, epsilon, weight_decay, .. } => AdamConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)))
            .init(),
    }
}

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

/// Number of rows whose largest logit is the label.
fn correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> u64 {
    let predicted: Tensor<1, Int> = logits.argmax(1).flatten(0, 1);
    predicted.equal(labels).int().sum().into_scalar::<i64>() as u64
}

/// One optimizer step on one batch, the gradients clipped to global norm `clip` when it is set:
/// returns the updated model, the batch's loss and how many of its examples the model (before
/// the update) classified right.
pub fn step(
    model: Classifier,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    lr: f64,
    clip: Option<f64>,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
) -> (Classifier, f64, u64) {
    let logits = model.forward(images);
    let loss = loss_fn.forward(logits.clone(), labels.clone());
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if clip.is_some() {
        super::clip::clip_global_norm(&model, &mut grads, clip);
    }
    let model = optim.step(lr, model, grads);
    let loss_value = f64::from(loss.into_scalar::<f32>());
    (model, loss_value, correct(logits, labels))
}

/// Mean loss and accuracy of `model` (in evaluation mode) on `set`.
pub fn evaluate(model: &Classifier, set: &ImageSet, device: &Device) -> (f64, f64) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut right) = (0.0, 0u64);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (images, labels) = batch(set, chunk, device);
        let logits = model.forward(images);
        let loss = loss_fn.forward(logits.clone(), labels.clone()).into_scalar::<f32>();
        loss_sum += f64::from(loss) * chunk.len() as f64;
        right += correct(logits, labels);
    }
    let n = set.len().max(1) as f64;
    (loss_sum / n, right as f64 / n)
}

/// Trains classifier `job` to its end, or until it is cancelled or the server stops.
pub fn run(job: &TrainJob<'_>, spec: &ClassifierSpec, data: &ImageDataSpec) -> Result<Outcome, TrainError> {
    let training = &job.spec.training;
    let mut first_step = FirstStep::start();
    let resolved = job.device;
    let device = resolved.device.clone().autodiff();
    job.store.mark_running(job.id, &resolved.name)?;
    let data =
        data.source.load(&job.config.datasets_dir(), data.limit_train, data.limit_test, data.resize)?;

    let shape = data.train.input_shape();
    let start = restore_or_init(
        job,
        &device,
        optimizer(&training.optimizer),
        |_| Ok(()),
        || spec.init(shape, data.classes, &resolved.device),
        |cpu| spec.init(shape, data.classes, cpu),
    )?;
    let (mut model, mut optim, mut position) = (start.model, start.optim, start.position);
    let n = data.train.len();
    let per_epoch = batches_per_epoch(n, training.batch_size);
    let mut progress = begin(job, &position, per_epoch)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let lr = training.optimizer.lr();
    let mut pending: Vec<StepPoint> = Vec::new();

    while position.epoch < training.epochs {
        let epoch = position.epoch + 1;
        let started = Instant::now() - std::time::Duration::from_secs_f64(position.totals.train_seconds);
        let order = epoch_order(n, training.seed, epoch);
        for b in position.step_in_epoch as usize..per_epoch {
            if let Some(outcome) = stop_if_asked(job, &model, &optim, &position, &pending, progress, None)? {
                return Ok(outcome);
            }
            let step_started = Instant::now();
            let indices = &order[b * training.batch_size..((b + 1) * training.batch_size).min(n)];
            let (images, labels) = batch(&data.train, indices, &device);
            let (next, loss_value, right) =
                step(model, &mut optim, &loss_fn, lr, training.grad_clip_norm, images, labels);
            model = next;

            position.step += 1;
            position.step_in_epoch += 1;
            let seconds = step_started.elapsed().as_secs_f64();
            position.totals.add(loss_value, right, indices.len() as u64, seconds);
            progress.step = position.step;
            if !loss_value.is_finite() {
                job.store.record_steps(job.id, &pending, progress)?;
                return Err(TrainError::Diverged { epoch, step: position.step, loss: loss_value });
            }
            let point = StepPoint { step: position.step, epoch, loss: loss_value, grad_norm: None };
            record_step(job, &mut pending, point, progress, b + 1 == per_epoch)?;
            first_step.done(job)?;
        }

        let (test_loss, test_accuracy) = evaluate(&model.valid(), &data.test, &resolved.device);
        let totals = std::mem::take(&mut position.totals);
        let metrics = EpochMetrics {
            train_accuracy: Some(totals.accuracy()),
            test_loss: Some(test_loss),
            test_accuracy: Some(test_accuracy),
            examples_per_sec: Some(totals.throughput()),
            ..EpochMetrics::new(epoch, totals.mean_loss(), started.elapsed().as_secs_f64())
        };
        tracing::info!(job = %job.id, epoch, train_loss = metrics.train_loss, test_accuracy, "epoch done");
        end_epoch(job, &model, &optim, &mut position, &mut progress, metrics, None)?;
    }
    Ok(Outcome::Completed)
}

#[cfg(test)]
mod tests;
