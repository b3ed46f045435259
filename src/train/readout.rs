//! Step results read back from the device in batches, not one step at a time.
//!
//! A step's loss, correct count and gradient norm are tensors; reading one back to the host
//! waits for every operation queued before it, which on a GPU leaves the device idle while the
//! host records the next step. A step therefore returns its results as [`StepTensors`], still on
//! the device, and the engine keeps them in a [`Readout`] until it needs the numbers (every
//! `training.log_every` steps, at the end of an epoch, before a checkpoint), then reads them all
//! in one [`Transaction`]. The values are the same whenever they are read: a job's losses, epoch
//! rows and gradient norms do not depend on `log_every`.
//!
//! Every blocking read of a training thread goes through [`read`], which counts it
//! ([`host_reads`]), so `kiln bench` can print host syncs per step.

use std::cell::Cell;

use burn::tensor::{Int, Tensor, TensorData, Transaction};

use super::position::StepResult;

/// The most steps (or evaluation batches) left unread, whatever `training.log_every` is: the
/// device never runs further behind the host, so a stop waits for at most this many steps, a
/// divergence is caught within them, and an evaluation still looks at its stop flag.
pub const MAX_UNREAD: usize = 50;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// Blocking reads from a device this thread has made so far.
pub fn host_reads() -> u64 {
    READS.with(Cell::get)
}

/// Reads every tensor `register` put in one transaction: one wait for the device, counted.
pub fn read(register: impl FnOnce(Transaction) -> Transaction) -> Vec<TensorData> {
    READS.with(|reads| reads.set(reads.get() + 1));
    register(Transaction::default()).execute()
}

/// What one optimizer step reports, still on the device.
#[derive(Debug, Clone)]
pub struct StepTensors {
    /// Mean loss over the batch, shape `[1]`.
    pub loss: Tensor<1>,
    /// Examples the model (before the update) classified right, shape `[1]`; none for a
    /// language model.
    pub correct: Option<Tensor<1, Int>>,
    /// The squared global gradient norm before clipping, shape `[1]`, for tasks that report it.
    pub grad_norm_sq: Option<Tensor<1>>,
    /// Examples (classifier) or tokens (language model) in the batch.
    pub examples: u64,
}

impl StepTensors {
    /// This step's results alone, read now (tools and tests; training reads steps in batches).
    pub fn read(self) -> StepResult {
        let mut readout = Readout::default();
        readout.push(self, 0.0);
        readout.take().remove(0).0
    }
}

/// Steps taken whose results are not read yet, in order, with the seconds each took to record.
#[derive(Default)]
pub struct Readout {
    pending: Vec<(StepTensors, f64)>,
}

impl Readout {
    /// Keeps a step's results for the next [`Readout::take`].
    pub fn push(&mut self, step: StepTensors, seconds: f64) {
        self.pending.push((step, seconds));
    }

    /// Steps kept, not read yet.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every step taken has been read.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The results of every step kept, in order, read in one transaction; the time the read
    /// waited (the device finishing those steps) is shared out evenly among their seconds.
    pub fn take(&mut self) -> Vec<(StepResult, f64)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        let started = std::time::Instant::now();
        let data = read(|mut t| {
            for (step, _) in &pending {
                t = t.register(step.loss.clone());
                if let Some(correct) = &step.correct {
                    t = t.register(correct.clone());
                }
                if let Some(norm) = &step.grad_norm_sq {
                    t = t.register(norm.clone());
                }
            }
            t
        });
        let share = started.elapsed().as_secs_f64() / pending.len() as f64;
        let mut data = data.into_iter();
        let mut next = || data.next().expect("one value per registered tensor");
        pending
            .into_iter()
            .map(|(step, seconds)| {
                let loss = f64::from(scalar::<f32>(next()));
                let correct = step.correct.as_ref().map_or(0, |_| scalar::<i64>(next()) as u64);
                let grad_norm = step.grad_norm_sq.as_ref().map(|_| f64::from(scalar::<f32>(next())).sqrt());
                (StepResult { loss, correct, examples: step.examples, grad_norm }, seconds + share)
            })
            .collect()
    }
}

/// The first value of `data`, converted to `E`.
pub fn scalar<E: burn::tensor::Element>(data: TensorData) -> E {
    data.iter::<E>().next().expect("a value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn float(v: f32, device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![v], [1]), device)
    }

    #[test]
    fn steps_of_every_kind_are_read_back_in_order_in_one_read() {
        let device = Device::flex();
        let count = |v: i64| Tensor::<1, Int>::from_data(TensorData::new(vec![v], [1]), &device);
        let mut readout = Readout::default();
        // A classifier's step, a language model's, another classifier's.
        readout.push(
            StepTensors {
                loss: float(0.5, &device),
                correct: Some(count(3)),
                grad_norm_sq: None,
                examples: 4,
            },
            0.25,
        );
        let lm = StepTensors {
            loss: float(1.5, &device),
            correct: None,
            grad_norm_sq: Some(float(16.0, &device)),
            examples: 8,
        };
        readout.push(lm, 0.5);
        let both = StepTensors {
            loss: float(2.5, &device),
            correct: Some(count(7)),
            grad_norm_sq: Some(float(9.0, &device)),
            examples: 9,
        };
        readout.push(both, 0.75);
        assert_eq!(readout.len(), 3);
        let before = host_reads();
        let read = readout.take();
        assert_eq!(host_reads() - before, 1, "one read for all three");
        assert!(readout.is_empty());
        let results: Vec<StepResult> = read.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            results,
            [
                StepResult { loss: 0.5, correct: 3, examples: 4, grad_norm: None },
                StepResult { loss: 1.5, correct: 0, examples: 8, grad_norm: Some(4.0) },
                StepResult { loss: 2.5, correct: 7, examples: 9, grad_norm: Some(3.0) },
            ]
        );
        // The read's wait is shared out evenly: the steps keep their order of durations.
        let seconds: Vec<f64> = read.iter().map(|(_, s)| *s).collect();
        let gaps = [seconds[1] - seconds[0], seconds[2] - seconds[1]];
        assert!(seconds[0] >= 0.25 && gaps.iter().all(|g| (g - 0.25).abs() < 1e-9), "{seconds:?}");
        assert!(readout.take().is_empty() && host_reads() - before == 1, "nothing left: no read");
    }
}
