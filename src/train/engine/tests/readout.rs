//! Step results read back every `log_every` steps: a job reports the same numbers as one read
//! every step, bit for bit on the CPU and within WGPU's run-to-run spread on WGPU (llvmpipe where
//! there is no GPU); a diverging
//! job still fails within `log_every` steps, naming the step that diverged; a cancel still lands
//! at the next step; and a run reads from the device once per `log_every` steps.

use super::*;
use crate::train::readout;

/// A classifier whose epoch ends in a smaller batch (72 = 4 × 16 + 8) and whose evaluation
/// does too (20 = 16 + 4), trained for two epochs on `backend`.
fn classifier(log_every: u32, backend: &str) -> String {
    format!(
        r#"{{"model":{{"kind":"mlp_bn","hidden":[16]}},
            "data":{{"dataset":"synthetic_images","train_size":72,"test_size":20}},
            "training":{{"epochs":2,"batch_size":16,"log_every":{log_every},"grad_clip_norm":0.5,
                         "optimizer":{{"kind":"sgd","lr":0.1,"momentum":0.9}}}},
            "backend":"{backend}"}}"#
    )
}

/// A GRU language model, its gradients clipped (the default θ = 1), with a held-out tail.
fn language_model(log_every: u32, backend: &str) -> String {
    format!(
        r#"{{"model":{{"kind":"rnn_lm","cell":"gru","hidden":16}},
            "data":{{"dataset":"synthetic_text","chars":1500,"num_steps":8,"validation_fraction":0.2}},
            "training":{{"epochs":2,"batch_size":8,"log_every":{log_every}}},
            "backend":"{backend}"}}"#
    )
}

fn backends(backend: &str) -> Backends {
    if backend == "cpu" {
        Backends::cpu_only()
    } else {
        let dir = tempfile::tempdir().unwrap();
        Backends::from_config(&Config::with_data_dir(dir.path()))
    }
}

/// Trains `body` to its end; returns what it reported and the host reads it made.
fn trained(body: &str, backend: &str) -> (Memory, u64) {
    let setup = setup_job(body, backends(backend));
    let log = Memory::default();
    let before = readout::host_reads();
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);
    let reads = readout::host_reads() - before;
    (log, reads)
}

/// The numbers of an epoch's row, without its timings.
fn numbers(e: &EpochMetrics) -> Vec<Option<f64>> {
    vec![
        Some(e.train_loss),
        e.train_accuracy,
        e.test_loss,
        e.test_accuracy,
        e.perplexity,
        e.validation_perplexity,
        e.grad_norm,
        e.grad_norm_max,
    ]
}

/// Whether `a` and `b` agree: bit for bit when `tolerance` is 0, else to that relative error.
fn agree(a: f64, b: f64, tolerance: f64) -> bool {
    if tolerance == 0.0 { a.to_bits() == b.to_bits() } else { (a - b).abs() <= tolerance * a.abs().max(1.0) }
}

/// The job read every step and every `every` steps reports the same step points (where both
/// log one), epoch rows and progress: bit for bit when `tolerance` is 0; else losses and norms to
/// that tolerance, and accuracies to one example (a last-bit difference may flip an argmax).
fn same_numbers(job: fn(u32, &str) -> String, every: u32, backend: &str, tolerance: f64) {
    let (each, _) = trained(&job(1, backend), backend);
    let (deferred, _) = trained(&job(every, backend), backend);
    let points = deferred.points.borrow();
    assert!(points.len() >= 2, "{points:?}");
    for point in points.iter() {
        let read_each = each.points.borrow().iter().find(|p| p.step == point.step).cloned();
        let read_each = read_each.unwrap_or_else(|| panic!("no step {} read every step", point.step));
        let norms = (read_each.grad_norm, point.grad_norm);
        assert!(
            agree(read_each.loss, point.loss, tolerance)
                && norms.0.is_some() == norms.1.is_some()
                && agree(norms.0.unwrap_or(0.0), norms.1.unwrap_or(0.0), tolerance),
            "step {} on {backend}: {read_each:?} read every step, {point:?} every {every}",
            point.step
        );
    }
    let (a, b) = (each.epochs.borrow(), deferred.epochs.borrow());
    assert_eq!((a.len(), b.len()), (2, 2));
    for (x, y) in a.iter().zip(b.iter()) {
        let same = numbers(x).into_iter().zip(numbers(y)).enumerate().all(|(i, pair)| match pair {
            // Train accuracy over 72 examples, test accuracy over 20.
            (Some(u), Some(v)) if tolerance > 0.0 && (i == 1 || i == 3) => (u - v).abs() <= 1.0 / 20.0 + 1e-9,
            (Some(u), Some(v)) => agree(u, v, tolerance),
            (u, v) => u.is_none() && v.is_none(),
        });
        assert!(same, "epoch {} on {backend}: {x:?} vs {y:?}", x.epoch);
    }
    assert_eq!(each.progress.get(), deferred.progress.get());
}

#[test]
fn a_classifier_read_every_third_step_reports_what_one_read_every_step_does() {
    same_numbers(classifier, 3, "cpu", 0.0);
}

#[test]
fn a_language_model_read_every_fourth_step_reports_what_one_read_every_step_does() {
    same_numbers(language_model, 4, "cpu", 0.0);
}

/// On WGPU not bit for bit: there the same job run twice in one process, reads and all the same,
/// differs in the last bits from the first steps on (step 5's loss 1.808056116 then
/// 1.808056355, llvmpipe): Burn's fused kernels and autotuned choices depend on what the process
/// ran before. Within that spread, reading every few steps changes nothing.
#[test]
fn on_wgpu_deferred_reads_report_the_same_numbers() {
    same_numbers(classifier, 3, "wgpu", 1e-5);
    same_numbers(language_model, 4, "wgpu", 1e-5);
}

#[test]
fn a_run_reads_the_device_once_per_log_every_steps() {
    // 72 images in batches of 16: five steps an epoch, ten in all. Read after the first step
    // (its time must cover the device's work), at steps 3, 6 and 9, at each epoch's end (5,
    // 10); and once per evaluation.
    let (_, reads) = trained(&classifier(3, "cpu"), "cpu");
    assert_eq!(reads, 6 + 2);
    let (_, reads) = trained(&classifier(1, "cpu"), "cpu");
    assert_eq!(reads, 10 + 2);
}

/// Runs `body` (a classifier) with its task spoiled at step `at`, cancelling if `cancel`; returns
/// what it reported, how it ended and the steps it took (and its setup, which holds its files).
fn spoiled(body: &str, at: u64, cancel: bool) -> (Memory, Result<Outcome, TrainError>, u64, Setup) {
    let setup = setup_job(body, Backends::cpu_only());
    let log = Memory::default();
    let (outcome, steps) = train_spoiled(&setup, &log, at, cancel);
    (log, outcome, steps, setup)
}

#[test]
fn a_diverged_step_fails_the_run_within_log_every_steps_naming_its_step() {
    // Five steps an epoch, a read every 4: step 7's NaN is read at step 8.
    let (log, outcome, taken, _setup) = spoiled(&classifier(4, "cpu"), 7, false);
    let error = outcome.unwrap_err();
    assert!(matches!(error, TrainError::Diverged { epoch: 2, step: 7, .. }), "{error}");
    assert!(taken < 7 + 4, "failed after {taken} steps");
    assert_eq!(log.progress.get().step, 7, "the progress names the diverged step");
    let steps: Vec<u64> = log.points.borrow().iter().map(|p| p.step).collect();
    assert_eq!(steps, [4, 5], "the points read before it, none for the bad step");
    assert!(log.saved.borrow().iter().all(|(_, s)| s.step <= 5), "no checkpoint holds a diverged step");
}

#[test]
fn a_cancel_between_reads_lands_at_the_next_step_with_every_step_counted() {
    // A read every 4 steps; the cancel comes after step 6, between two reads.
    let (log, outcome, taken, _setup) = spoiled(&classifier(4, "cpu"), 6, true);
    assert_eq!(outcome.unwrap(), Outcome::Cancelled);
    assert_eq!(taken, 6, "no step after the cancel");
    assert_eq!(log.progress.get().step, 6);
    let position = newest_position(&log);
    assert_eq!((position.epoch, position.step_in_epoch, position.step), (1, 1, 6));
    assert_eq!(position.totals.batches, 1, "step 6, read at the stop, is in the epoch's sums");
}
