//! The rules of an image classifier's job definition: its image data fields, and the image
//! size, memory and parameter caps its model must fit.

use super::*;

const MAX_RESIZE: usize = 512;
pub(super) const IMAGE_SETS: [&str; 3] = ["fashion_mnist", "synthetic_images", "uploaded"];

/// The rules that tie an image classifier to its images.
pub(super) fn check_classifier(
    model: &ClassifierSpec,
    data: &ImageDataSpec,
    training: &TrainingSpec,
    checkpoint: &CheckpointPolicy,
    config: &Config,
    p: &mut Problems,
) {
    let (shape, classes) = (data.input_shape(), data.source.classes());
    if let Some(Err(problems)) = model.plan(shape, classes) {
        // A layer list says by layer what does not fit, with the shapes.
        for problem in problems {
            p.add(
                &format!("model.layers[{}]", problem.index),
                format!("({}): {}", problem.kind, problem.message),
            );
        }
    } else if !model.fits(shape, classes) {
        p.add(
            "data.resize",
            format!(
                "this model needs images of at least {} pixels square and gets {}; set data.resize",
                model.smallest_side(shape, classes),
                shape.height
            ),
        );
    }
    let floats = model.activation_floats(shape, classes) * training.batch_size;
    check_memory(floats, training.batch_size, "this model and image size (or data.resize)", config, p);
    check_parameters(model.parameter_count(shape, classes), training, checkpoint, config, p);
    if let Err(message) = data.source.check_available(&config.datasets_dir()) {
        p.add("data.dataset", message);
    }
}

pub(super) fn validate_images(
    raw: RawData,
    dataset: &str,
    config: &Config,
    p: &mut Problems,
) -> Option<ImageDataSpec> {
    let owner = format!("data.dataset = {dataset}");
    if dataset != "uploaded" {
        p.not_for(&raw.dataset_id, "data.dataset_id", &owner);
        p.not_for(&raw.channels, "data.channels", &owner);
        p.not_for(&raw.side, "data.side", &owner);
        p.not_for(&raw.classes, "data.classes", &owner);
    }
    p.not_for(&raw.chars, "data.chars", &owner);
    p.not_for(&raw.tokenizer, "data.tokenizer", &owner);
    p.not_for(&raw.normalize, "data.normalize", &owner);
    p.not_for(&raw.min_freq, "data.min_freq", &owner);
    p.not_for(&raw.max_tokens, "data.max_tokens", &owner);
    p.not_for(&raw.num_steps, "data.num_steps", &owner);
    p.not_for(&raw.sampling, "data.sampling", &owner);
    p.not_for(&raw.validation_fraction, "data.validation_fraction", &owner);
    for (field, limit) in [("data.limit_train", raw.limit_train), ("data.limit_test", raw.limit_test)] {
        if limit == Some(0) {
            p.add(field, "must be at least 1 (leave it out to use every example)");
        }
    }
    let all = [(IMAGE_SETS[0], 0), (IMAGE_SETS[1], 1), (IMAGE_SETS[2], 2)];
    let source = match choose(p, "data.dataset", dataset, &all)? {
        0 => {
            p.not_for(&raw.train_size, "data.train_size", &owner);
            p.not_for(&raw.test_size, "data.test_size", &owner);
            p.not_for(&raw.seed, "data.seed", &owner);
            DatasetSpec::FashionMnist
        }
        2 => {
            p.not_for(&raw.seed, "data.seed", &owner);
            uploaded_images(&raw, config, p)?
        }
        _ => {
            let cap = config.max_synthetic_examples;
            let train_size = p.range("data.train_size", raw.train_size.unwrap_or(2000), 1, cap);
            let test_size = p.range("data.test_size", raw.test_size.unwrap_or(500), 1, cap);
            if train_size + test_size > cap {
                p.add("data", format!("train_size + test_size must be at most {cap}"));
            }
            DatasetSpec::SyntheticImages { train_size, test_size, seed: raw.seed.unwrap_or(0) }
        }
    };
    let resize = raw.resize.map(|side| p.range("data.resize", side, 8, MAX_RESIZE));
    Some(ImageDataSpec { source, limit_train: raw.limit_train, limit_test: raw.limit_test, resize })
}

/// An uploaded image data set, its shape, classes and counts read from its file. Those the
/// definition gives (a definition read back from a job has them all) must be the data set's.
fn uploaded_images(raw: &RawData, config: &Config, p: &mut Problems) -> Option<DatasetSpec> {
    let Some(dataset_id) = raw.dataset_id else {
        p.add(
            "data.dataset_id",
            "is required with data.dataset = uploaded: the id POST /datasets?kind=images returned",
        );
        return None;
    };
    let path = config.uploaded_images_path(dataset_id);
    if !path.is_file() {
        let message = if config.uploaded_dataset_path(dataset_id).is_file() {
            format!(
                "data set {dataset_id} is a text corpus: an image classifier needs images (POST /datasets?kind=images)"
            )
        } else {
            format!(
                "no uploaded image data set has id {dataset_id}; upload one with POST /datasets?kind=images"
            )
        };
        p.add("data.dataset_id", message);
        return None;
    }
    let info = match crate::data::uploaded::read_info(&path) {
        Ok(info) => info,
        Err(e) => {
            tracing::error!(%e, "an uploaded image data set cannot be read");
            p.add("data.dataset_id", format!("data set {dataset_id} cannot be read on this server"));
            return None;
        }
    };
    let found = [
        ("data.channels", raw.channels, info.channels),
        ("data.side", raw.side, info.side),
        ("data.classes", raw.classes, info.classes.len()),
        ("data.train_size", raw.train_size, info.train),
        ("data.test_size", raw.test_size, info.test),
    ];
    for (field, given, own) in found {
        if given.is_some_and(|given| given != own) {
            p.add(field, format!("is {own} in data set {dataset_id} (leave it out, or give {own})"));
        }
    }
    Some(DatasetSpec::Uploaded {
        dataset_id,
        channels: info.channels,
        side: info.side,
        classes: info.classes.len(),
        train_size: info.train,
        test_size: info.test,
    })
}
