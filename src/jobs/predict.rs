//! A classifier's predictions: `POST /jobs/{id}/predict` as an operation of [`Jobs`].
//!
//! The images come as JSON arrays of pixels ([`crate::definition::predict`]) or as one PNG or
//! JPEG, decoded as an upload's images are ([`crate::data::import::decode_image`]): to the data
//! set's channels and side, then scaled to `[0, 1]`. Both then take the road of a training batch
//! (the job's `resize` included) through the model of the job's newest checkpoint, or the one
//! named, read on the CPU in evaluation mode ([`crate::train::predict`]). Prediction shares
//! generation's bounds: a `--max-generations` slot while it runs (503 past them) and the cache
//! of loaded models. A language model's job is answered 409, pointing to `/generate`.

use burn::tensor::Device;
use serde::Serialize;
use utoipa::ToSchema;

use super::generation::Loaded;
use super::store::StoreError;
use super::{JobError, JobId, Jobs};
use crate::data::ImageSet;
use crate::data::import::{MAX_SOURCE_PIXELS, decode_image};
use crate::definition::predict::{PredictLimits, PredictQuery, ValidPredict, check_top_k, parse};
use crate::definition::{FieldError, ImageDataSpec, Task};
use crate::models::{Classifier, ClassifierSpec};
use crate::train::checkpoint as checkpoint_files;

/// What a predict request sends.
pub enum PredictInput<'a> {
    /// A JSON [`crate::definition::predict::PredictRequest`].
    Json(&'a [u8]),
    /// One PNG or JPEG, with the options of its query.
    Image(&'a [u8], PredictQuery),
}

/// One class of an image's answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClassScore {
    /// The class's label: its index in the model's output.
    pub label: usize,
    /// The class's name (a label number when the checkpoint predates names).
    pub class: String,
    /// Softmax probability.
    pub probability: f32,
}

/// One image's answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Prediction {
    /// The `top_k` likeliest classes, likeliest first.
    pub top: Vec<ClassScore>,
}

/// The answer of `POST /jobs/{id}/predict`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Predictions {
    /// One per image, in the order sent.
    pub predictions: Vec<Prediction>,
    /// Id of the checkpoint that answered.
    pub checkpoint: i64,
    /// Epochs the model had trained for at that checkpoint.
    pub epoch: u32,
}

impl Jobs {
    /// The top classes of each image `input` sends, from an image-classifier job's newest
    /// checkpoint or the one the request names. Blocking: it runs the model on the CPU, so call
    /// it off the async runtime.
    pub fn predict(&self, id: JobId, input: PredictInput<'_>) -> Result<Predictions, JobError> {
        let job = self.get(id)?;
        let (model, data) = match job.spec.task() {
            Some(Task::Classify { model, data }) => (model, data),
            Some(Task::Language { .. }) => {
                return Err(JobError::Conflict(format!(
                    "job {id} trains a language model, which predicts text: POST /jobs/{id}/generate"
                )));
            }
            None => {
                return Err(JobError::Store(StoreError::Corrupt(format!(
                    "job {id}: its model and data do not pair"
                ))));
            }
        };
        // The slot before the body is parsed or decoded: that takes memory too.
        let _slot = self.model_slot()?;
        let request = self.valid_predict(data, input)?;
        let device = Device::flex();
        let (info, loaded) = self.loaded_model(id, request.checkpoint, |dir| {
            let (classifier, names) = read_classifier(dir, model, data)?;
            Ok(Loaded::Classifier(classifier, names))
        })?;
        let Loaded::Classifier(classifier, names) = loaded else {
            unreachable!("a classifier's job loads one")
        };
        let shape = data.source.shape();
        let labels = vec![0; request.count];
        let set = ImageSet { shape, pixels: request.pixels, labels, resize: data.resize };
        let ranked = crate::train::predict::predict(&classifier, &set, request.top_k, &device);
        let score = |(label, probability): (usize, f32)| ClassScore {
            label,
            class: names[label].clone(),
            probability,
        };
        let predictions =
            ranked.into_iter().map(|top| Prediction { top: top.into_iter().map(score).collect() }).collect();
        Ok(Predictions { predictions, checkpoint: info.id, epoch: info.epoch })
    }

    /// `input` checked against the job's images (`data`) and this server's caps.
    fn valid_predict(&self, data: &ImageDataSpec, input: PredictInput<'_>) -> Result<ValidPredict, JobError> {
        let (shape, classes) = (data.source.shape(), data.source.classes());
        match input {
            PredictInput::Json(body) => {
                let limits = PredictLimits { shape, classes, max_images: self.config().max_predict_batch };
                Ok(parse(body, limits)?)
            }
            PredictInput::Image(bytes, query) => {
                let invalid = |field: &str, message: String| {
                    JobError::Invalid(vec![FieldError { field: field.into(), message }])
                };
                let top_k = query
                    .top_k
                    .map(|k| {
                        k.parse::<usize>()
                            .map_err(|_| invalid("top_k", format!("must be a whole number (got {k:?})")))
                    })
                    .transpose()?;
                let top_k = check_top_k(top_k, classes).map_err(|message| invalid("top_k", message))?;
                let checkpoint = query
                    .checkpoint
                    .map(|c| {
                        c.parse::<i64>().map_err(|_| {
                            invalid("checkpoint", format!("must be a checkpoint id (got {c:?})"))
                        })
                    })
                    .transpose()?;
                let pixels =
                    decode_image(bytes, "the body", shape.channels, shape.height, MAX_SOURCE_PIXELS)?;
                let pixels = pixels.iter().map(|p| f32::from(*p) / 255.0).collect();
                Ok(ValidPredict { pixels, count: 1, top_k, checkpoint })
            }
        }
    }
}

/// The classifier of the checkpoint in `dir`, on the CPU, with its class names: those the
/// checkpoint carries, else (older checkpoints) those of its data set when kiln knows them, else
/// the label numbers.
pub(super) fn read_classifier(
    dir: &std::path::Path,
    model: &ClassifierSpec,
    data: &ImageDataSpec,
) -> Result<(Classifier, Vec<String>), checkpoint_files::CheckpointError> {
    let manifest = checkpoint_files::manifest(dir)?;
    let fresh = model.init(data.input_shape(), data.source.classes(), &Device::flex());
    let classifier = checkpoint_files::read_weights(dir, &manifest, fresh)?;
    Ok((classifier, class_names(manifest.classes, data)))
}

/// The class names of a checkpoint that carries `names` (or not), trained on `data`.
pub(super) fn class_names(names: Option<Vec<String>>, data: &ImageDataSpec) -> Vec<String> {
    let classes = data.source.classes();
    match names {
        Some(names) if names.len() == classes => names,
        _ => match data.source {
            crate::data::DatasetSpec::FashionMnist => {
                crate::data::FASHION_MNIST_CLASSES.map(str::to_string).to_vec()
            }
            _ => (0..classes).map(|label| label.to_string()).collect(),
        },
    }
}
