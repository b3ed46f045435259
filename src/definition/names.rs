//! The names a job definition's string fields take, for the API document only: validation
//! reads these fields as strings, so that a wrong name is answered with the list of right ones.

use serde::Deserialize;
use utoipa::ToSchema;

/// The model kinds, for the API document (validation reads `model.kind` as a string, to name a
/// wrong one in its answer).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    LenetBn,
    MlpBn,
    Resnet,
    Densenet,
    Sequential,
    RnnLm,
}

/// The data sets, for the API document (as `ModelKind`).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    FashionMnist,
    SyntheticImages,
    TimeMachine,
    Uploaded,
    SyntheticText,
}

/// The optimizers, for the API document (as `ModelKind`).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}
