//! The engine against an in-memory [`RunLog`]: cancel and resume in the middle of an epoch,
//! divergence and checkpoint retention, with no database.

use std::cell::{Cell, RefCell};
use std::sync::atomic::AtomicBool;

use super::*;
use crate::backend::{Backends, Resolved};
use crate::config::Config;
use crate::definition::{JobSpec, Limits};
use crate::train::report::{KeptCheckpoint, ReportError, RunLog};

/// A [`RunLog`] that keeps what it is told, and raises a stop flag after a chosen step.
#[derive(Default)]
struct Memory {
    points: RefCell<Vec<StepPoint>>,
    epochs: RefCell<Vec<EpochMetrics>>,
    progress: Cell<Progress>,
    kept: RefCell<Vec<KeptCheckpoint>>,
    /// Every checkpoint ever saved, with the id it got.
    saved: RefCell<Vec<(i64, SavedCheckpoint)>>,
    dropped: RefCell<Vec<i64>>,
    warnings: RefCell<Vec<String>>,
    first_step: Cell<Option<f64>>,
    cancel: AtomicBool,
    shutdown: AtomicBool,
    /// After this step is reported, set `cancel` (true) or `shutdown` (false).
    stop_after: Cell<Option<(u64, bool)>>,
    /// After this epoch's row is reported, set `cancel`.
    cancel_after_epoch: Cell<Option<u32>>,
}

impl RunLog for Memory {
    fn checkpoints(&self) -> Result<Vec<KeptCheckpoint>, ReportError> {
        Ok(self.kept.borrow().clone())
    }

    fn begin(&self, progress: Progress) -> Result<(), ReportError> {
        self.points.borrow_mut().retain(|p| p.step <= progress.step);
        self.epochs.borrow_mut().retain(|e| e.epoch <= progress.epoch);
        self.progress.set(progress);
        Ok(())
    }

    fn parameters(&self, _count: u64) -> Result<(), ReportError> {
        Ok(())
    }

    fn first_step(&self, seconds: f64) -> Result<(), ReportError> {
        self.first_step.set(Some(seconds));
        Ok(())
    }

    fn steps(&self, points: &[StepPoint], progress: Progress) -> Result<(), ReportError> {
        self.points.borrow_mut().extend_from_slice(points);
        self.progress.set(progress);
        if let Some((step, cancel)) = self.stop_after.get() {
            if progress.step == step {
                let flag = if cancel { &self.cancel } else { &self.shutdown };
                flag.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn epoch(&self, metrics: &EpochMetrics, progress: Progress) -> Result<(), ReportError> {
        self.epochs.borrow_mut().push(metrics.clone());
        self.progress.set(progress);
        if self.cancel_after_epoch.get() == Some(metrics.epoch) {
            self.cancel.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    fn checkpoint_saved(&self, checkpoint: &SavedCheckpoint) -> Result<i64, ReportError> {
        let id = self.saved.borrow().len() as i64 + 1;
        self.saved.borrow_mut().push((id, checkpoint.clone()));
        let mut kept = self.kept.borrow_mut();
        kept.retain(|k| k.dir != checkpoint.dir);
        let score = checkpoint.metrics.as_ref().and_then(EpochMetrics::score);
        kept.push(KeptCheckpoint {
            id,
            step: checkpoint.step,
            dir: checkpoint.dir.clone(),
            bytes: checkpoint.bytes,
            sha256: checkpoint.sha256.clone(),
            files: Some(checkpoint.files.clone()),
            score,
        });
        Ok(id)
    }

    fn checkpoint_dropped(&self, id: i64) -> Result<(), ReportError> {
        self.kept.borrow_mut().retain(|k| k.id != id);
        self.dropped.borrow_mut().push(id);
        Ok(())
    }

    fn warn(&self, message: &str) -> Result<(), ReportError> {
        self.warnings.borrow_mut().push(message.to_string());
        Ok(())
    }
}

/// A small MLP-BN job: 64 synthetic images in batches of 16 (4 steps an epoch), momentum SGD so
/// that a resume needs the optimizer state, a step point every step.
struct Setup {
    _dir: tempfile::TempDir,
    config: Config,
    spec: crate::definition::ValidJobSpec,
    device: Resolved,
    id: uuid::Uuid,
}

fn setup(epochs: u32, keep_last: u32) -> Setup {
    let body = format!(
        r#"{{"model":{{"kind":"mlp_bn","hidden":[16]}},
            "data":{{"dataset":"synthetic_images","train_size":64,"test_size":16}},
            "training":{{"epochs":{epochs},"batch_size":16,"log_every":1,
                         "optimizer":{{"kind":"sgd","lr":0.1,"momentum":0.9}}}},
            "checkpoint":{{"keep_last":{keep_last}}}}}"#
    );
    setup_job(&body, Backends::cpu_only())
}

/// The job `body` on the lane it asks for among `backends`.
fn setup_job(body: &str, backends: Backends) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::with_data_dir(dir.path());
    let limits = Limits { config: &config, backends: &backends };
    let valid = JobSpec::from_json(body.as_bytes()).unwrap().validate(&limits).unwrap();
    let device = backends.resolve(valid.lane);
    Setup { _dir: dir, config, spec: valid.spec, device, id: uuid::Uuid::new_v4() }
}

impl Setup {
    /// A run of this job reporting to `log`, stopped by its flags.
    fn run<'a>(&'a self, log: &'a Memory) -> Run<'a> {
        Run {
            attempt: 0,
            id: self.id,
            spec: &self.spec,
            config: &self.config,
            device: &self.device,
            log,
            cancel: &log.cancel,
            shutdown: &log.shutdown,
        }
    }
}

fn run_job(setup: &Setup, log: &Memory) -> Result<Outcome, TrainError> {
    crate::train::run(&setup.run(log))
}

fn newest_position(log: &Memory) -> Position {
    let kept = log.kept.borrow();
    checkpoint::manifest(&kept.last().expect("a checkpoint").dir).unwrap().position
}

#[test]
fn a_cancel_mid_epoch_stops_at_the_next_step_after_a_checkpoint() {
    let setup = setup(3, 3);
    let log = Memory::default();
    log.stop_after.set(Some((6, true)));
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Cancelled);

    let position = newest_position(&log);
    assert_eq!((position.epoch, position.step_in_epoch, position.step), (1, 2, 6));
    assert_eq!(position.totals.batches, 2, "the sums of the epoch under way are kept");
    assert_eq!(log.progress.get().step, 6);
    assert_eq!(log.points.borrow().len(), 6);
    assert_eq!(log.epochs.borrow().len(), 1);
    assert!(log.first_step.get().is_some());
}

/// Runs a job interrupted by a shutdown after step `stop_at`, then resumed, and checks that it
/// reports what an uninterrupted run does.
fn resumed_after(stop_at: u64, whole: &Memory) {
    let interrupted = setup(3, 3);
    let log = Memory::default();
    log.stop_after.set(Some((stop_at, false)));
    assert_eq!(run_job(&interrupted, &log).unwrap(), Outcome::Interrupted);
    assert_eq!(newest_position(&log).step, stop_at);
    log.shutdown.store(false, Ordering::SeqCst);
    log.stop_after.set(None);
    assert_eq!(run_job(&interrupted, &log).unwrap(), Outcome::Completed);

    let losses = |m: &Memory| m.points.borrow().iter().map(|p| (p.step, p.loss)).collect::<Vec<_>>();
    let (a, b) = (losses(whole), losses(&log));
    assert_eq!(a.len(), 12);
    assert_eq!(a.iter().map(|p| p.0).collect::<Vec<_>>(), b.iter().map(|p| p.0).collect::<Vec<_>>());
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6, "step {step}: {x} uninterrupted, {y} resumed after {stop_at}");
    }
    let (a, b) = (whole.epochs.borrow(), log.epochs.borrow());
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x.epoch, y.epoch);
        assert!((x.train_loss - y.train_loss).abs() < 1e-6, "{x:?} vs {y:?}");
        assert_eq!(x.train_accuracy, y.train_accuracy);
        assert!((x.test_loss.unwrap() - y.test_loss.unwrap()).abs() < 1e-6, "{x:?} vs {y:?}");
    }
    assert_eq!(log.progress.get(), whole.progress.get());
    // The checkpoint left at each epoch's end carries that epoch's score, also where a stop wrote
    // an unscored one at the same step first.
    let saved = log.saved.borrow();
    for end in [4, 8, 12] {
        let (_, last) = saved.iter().rev().find(|(_, s)| s.step == end).expect("a checkpoint");
        assert!(last.metrics.is_some(), "step {end}");
    }
}

#[test]
fn a_run_resumed_mid_epoch_reports_what_an_uninterrupted_one_does() {
    let whole = Memory::default();
    assert_eq!(run_job(&setup(3, 3), &whole).unwrap(), Outcome::Completed);
    resumed_after(6, &whole);
}

#[test]
fn a_run_stopped_in_its_evaluation_resumes_at_the_evaluation() {
    let whole = Memory::default();
    assert_eq!(run_job(&setup(3, 3), &whole).unwrap(), Outcome::Completed);
    // Step 4 ends epoch 1: the stop comes while epoch 1 is evaluated.
    resumed_after(4, &whole);
}

#[test]
fn a_cancel_right_after_an_epoch_keeps_its_scored_checkpoint() {
    let setup = setup(3, 3);
    let log = Memory::default();
    log.cancel_after_epoch.set(Some(1));
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Cancelled);
    let saved = log.saved.borrow();
    assert_eq!(saved.len(), 1, "the epoch's checkpoint already holds the state: no second write");
    let kept = log.kept.borrow();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, saved[0].0);
    assert!(kept[0].score.is_some(), "its test accuracy is kept");
}

/// A task that, after its `at`-th step, poisons that step's loss or asks for a cancel.
struct Spoiled<'a, T> {
    task: T,
    at: u64,
    steps: u64,
    cancel: Option<&'a AtomicBool>,
}

impl<T: Task> Task for Spoiled<'_, T> {
    type Model = T::Model;

    fn init(&self, device: &Device) -> T::Model {
        self.task.init(device)
    }

    fn batches_per_epoch(&self) -> usize {
        self.task.batches_per_epoch()
    }

    fn begin_epoch(&mut self, epoch: u32) {
        self.task.begin_epoch(epoch)
    }

    fn step(&mut self, model: T::Model, optim: &mut ModuleOptimizer, index: usize) -> Stepped<T::Model> {
        let (model, mut result) = self.task.step(model, optim, index);
        self.steps += 1;
        if self.steps == self.at {
            match self.cancel {
                Some(flag) => flag.store(true, Ordering::SeqCst),
                None => result.loss = burn::tensor::Tensor::full([1], f32::NAN, &result.loss.device()),
            }
        }
        (model, result)
    }

    fn evaluate(&mut self, model: &T::Model, position: &Position, stop: Stop<'_>) -> Evaluated {
        self.task.evaluate(model, position, stop)
    }
}

/// Trains `setup`'s classifier with its task spoiled at step `at` (a cancel when `cancel`, else
/// a NaN loss), reporting to `log`; returns how it ended and the steps it took.
fn train_spoiled(setup: &Setup, log: &Memory, at: u64, cancel: bool) -> (Result<Outcome, TrainError>, u64) {
    let run = setup.run(log);
    let crate::definition::Task::Classify { model, data } = setup.spec.task().unwrap() else {
        unreachable!()
    };
    let task = crate::train::fit::Classification::load(&run, model, data).unwrap();
    let mut spoiled = Spoiled { task, at, steps: 0, cancel: cancel.then_some(&log.cancel) };
    let optim = crate::train::optim::optimizer(&setup.spec.training.optimizer);
    let outcome = train(&run, &mut spoiled, optim, Instant::now());
    (outcome, spoiled.steps)
}

#[test]
fn a_diverged_loss_fails_the_run_at_its_step() {
    let setup = setup(3, 3);
    let log = Memory::default();
    let (outcome, _) = train_spoiled(&setup, &log, 6, false);
    let error = outcome.unwrap_err();
    assert!(matches!(error, TrainError::Diverged { epoch: 2, step: 6, .. }), "{error}");
    assert!(error.to_string().contains("at epoch 2, step 6"), "{error}");
    assert_eq!(log.progress.get().step, 6, "the progress up to the bad step is recorded");
    assert_eq!(log.points.borrow().len(), 5, "no point is logged for the bad step");
}

#[test]
fn checkpoints_past_keep_last_are_dropped_but_the_best_stays() {
    let setup = setup(4, 1);
    let log = Memory::default();
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);

    let saved = log.saved.borrow();
    assert_eq!(saved.len(), 4, "one checkpoint an epoch");
    let score = |s: &SavedCheckpoint| s.metrics.as_ref().and_then(EpochMetrics::score).unwrap();
    // The best is the first checkpoint with the highest score: a later tie does not replace it.
    let top = saved.iter().map(|(_, s)| score(s)).fold(f64::MIN, f64::max);
    let best = saved.iter().find(|(_, s)| score(s) == top).unwrap().0;
    let newest = saved.last().unwrap().0;
    let mut expected = vec![best, newest];
    expected.dedup();
    expected.sort_unstable();
    let mut kept: Vec<i64> = log.kept.borrow().iter().map(|k| k.id).collect();
    kept.sort_unstable();
    assert_eq!(kept, expected, "the newest and the best by test accuracy");
    for (id, checkpoint) in saved.iter() {
        let is_kept = kept.contains(id);
        assert_eq!(checkpoint.dir.exists(), is_kept, "checkpoint {id} at {}", checkpoint.dir.display());
        assert_eq!(log.dropped.borrow().contains(id), !is_kept);
    }
}

mod readout;
mod resume;
