//! Unit tests of job validation.

use super::*;
use crate::backend::Backends;
use crate::config::Config;

fn limits() -> Config {
    Config::with_data_dir(std::env::temp_dir().join("kiln-spec-tests"))
}

fn admit(json: &str) -> Result<ValidJob, Vec<FieldError>> {
    let config = limits();
    JobSpec::from_json(json.as_bytes())
        .expect("parses")
        .validate(&Limits { config: &config, backends: &Backends::cpu_only() })
}

fn validate(json: &str) -> Result<ValidJobSpec, Vec<FieldError>> {
    admit(json).map(|valid| valid.spec)
}

/// A valid spec serialised and validated again.
fn resubmitted(spec: &ValidJobSpec) -> ValidJobSpec {
    validate(std::str::from_utf8(&serde_json::to_vec(spec).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_valid_job_carries_its_lane_parameter_count_and_step_total() {
    let lenet = admit(r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#).unwrap();
    assert_eq!(lenet.lane, crate::backend::Lane::Cpu);
    assert_eq!(lenet.parameters, 44_878);
    // 2000 examples in batches of 256: 7 full ones and a tail of 208, for 10 epochs.
    assert_eq!(lenet.steps, 80);
    let limited = admit(
        r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images","limit_train":513},
            "training":{"epochs":3}}"#,
    )
    .unwrap();
    assert_eq!(limited.steps, 6, "a one-example tail is dropped");
    let lm = admit(r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text"}}"#).unwrap();
    assert_eq!((lm.parameters, lm.steps), (0, 0), "the corpus decides them when the job trains");
}

#[test]
fn defaults_fill_a_minimal_spec() {
    let spec = validate(r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#).unwrap();
    assert_eq!(spec.model, ModelSpec::Classifier(ClassifierSpec::LenetBn { batch_norm: true }));
    assert_eq!(spec.training.epochs, 10);
    assert_eq!(spec.training.batch_size, 256);
    assert_eq!(spec.backend, BackendKind::Cpu);
    assert_eq!(spec.checkpoint, CheckpointPolicy { every: 1, keep_last: 3 });
    let DataSpec::Images(data) = &spec.data else { panic!("image data: {:?}", spec.data) };
    assert_eq!(data.source, DatasetSpec::SyntheticImages { train_size: 2000, test_size: 500, seed: 0 });
    assert_eq!(spec.training.grad_clip_norm, None);
}

#[test]
fn the_valid_spec_round_trips_through_the_raw_parser() {
    let spec = validate(
        r#"{"model":{"kind":"mlp_bn","hidden":[64],"activation":"sigmoid"},
            "data":{"dataset":"synthetic_images","train_size":10,"test_size":5,"limit_train":8},
            "training":{"optimizer":{"kind":"adam","lr":0.01}},"backend":"auto"}"#,
    )
    .unwrap();
    assert_eq!(resubmitted(&spec), spec);
}

#[test]
fn every_problem_is_reported_with_its_field_and_limit() {
    let errors = validate(
        r#"{"model":{"kind":"lenet_bn","hidden":[3]},"data":{"dataset":"synthetic_images","limit_test":0},
            "training":{"batch_size":0,"epochs":5000,"optimizer":{"lr":-1}},"backend":"tpu"}"#,
    )
    .unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("training.batch_size must be between 1 and 4096"), "{text:?}");
    assert!(has("training.epochs must be between 1 and 1000"), "{text:?}");
    assert!(has("training.optimizer.lr must be a number in (0, 100)"), "{text:?}");
    assert!(has("backend must be one of cpu, wgpu, wgpu:N"), "{text:?}");
    assert!(has("model.hidden is not allowed with model.kind = lenet_bn"), "{text:?}");
    assert!(has("data.limit_test must be at least 1"), "{text:?}");
}

#[test]
fn unknown_fields_and_wrong_types_name_their_path() {
    let err = JobSpec::from_json(br#"{"training":{"batch_sise":3}}"#).unwrap_err();
    match err {
        SpecParseError::Field(e) => {
            assert_eq!(e.field, "training.batch_sise");
            assert!(e.message.contains("unknown field"), "{}", e.message);
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    let err = JobSpec::from_json(br#"{"training":{"epochs":"ten"}}"#).unwrap_err();
    assert!(matches!(err, SpecParseError::Field(ref e) if e.field == "training.epochs"), "{err:?}");
    assert!(matches!(JobSpec::from_json(b"{\"model\":"), Err(SpecParseError::Syntax(_))));
}

#[test]
fn models_over_the_parameter_cap_are_refused() {
    let mut config = limits();
    config.max_parameters = 1000;
    let errors =
        JobSpec::from_json(br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#)
            .unwrap()
            .validate(&Limits { config: &config, backends: &Backends::cpu_only() })
            .unwrap_err();
    assert_eq!(errors[0].field, "model");
    assert!(errors[0].message.contains("44878 parameters"), "{}", errors[0].message);
}

#[test]
fn every_example_job_file_is_a_valid_job() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let spec = JobSpec::from_json(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(errors) = spec.validate(&Limits { config: &limits(), backends: &Backends::cpu_only() }) {
            // Only a missing data set may stop an example on this machine.
            assert!(
                errors.iter().all(|e| e.field == "data.dataset"
                    && (e.message.contains("not installed")
                        || e.message.contains("The Time Machine is not at"))),
                "{}: {errors:?}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 10);
}

#[test]
fn a_batch_whose_activations_exceed_the_memory_cap_is_refused_with_the_estimate() {
    let json = r#"{"model":{"kind":"resnet"},"data":{"dataset":"synthetic_images","resize":96},
                   "training":{"batch_size":4096}}"#;
    let errors = validate(json).unwrap_err();
    assert_eq!(errors[0].field, "training.batch_size", "{errors:?}");
    assert!(errors[0].message.contains("MiB of activations"), "{errors:?}");
    assert!(errors[0].message.contains("limit of 8192 MiB"), "{errors:?}");
    // The book's batch fits the default cap, at 96 pixels too.
    let ok = r#"{"model":{"kind":"resnet"},"data":{"dataset":"synthetic_images","resize":96},
                 "training":{"batch_size":256}}"#;
    validate(ok).unwrap();
}

#[test]
fn a_language_model_gets_the_books_defaults_and_text_fields() {
    let spec = validate(r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text"}}"#).unwrap();
    let ModelSpec::Language(crate::models::LanguageModelSpec::RnnLm { cell, hidden, layers, embedding }) =
        spec.model
    else {
        panic!("a language model: {:?}", spec.model)
    };
    assert_eq!((cell, hidden, layers, embedding), (crate::models::Cell::Rnn, 256, 1, None));
    let DataSpec::Text(data) = &spec.data else { panic!("text data") };
    assert_eq!(data.num_steps, 35);
    assert_eq!(data.sampling, Sampling::Sequential);
    assert_eq!((data.tokenizer, data.normalize), (Tokenizer::Char, Normalize::D2l));
    assert_eq!(spec.training.batch_size, 32);
    assert_eq!(spec.training.optimizer.lr(), 1.0);
    assert_eq!(spec.training.grad_clip_norm, Some(1.0));
    // The resolved spec submits again as it is.
    assert_eq!(resubmitted(&spec), spec);
}

#[test]
fn text_fields_do_not_go_with_images_nor_image_fields_with_text() {
    let errors =
        validate(r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images","num_steps":35}}"#)
            .unwrap_err();
    assert_eq!(errors[0].field, "data.num_steps");
    let errors = validate(
        r#"{"model":{"kind":"rnn_lm","hidden":[8]},"data":{"dataset":"synthetic_text","limit_train":5}}"#,
    )
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"data.limit_train") && fields.contains(&"model.hidden"), "{fields:?}");
}

#[test]
fn a_corpus_too_short_for_one_batch_is_refused_up_front() {
    // 1000 tokens cannot fill 32 rows of 35 (the book's batch needs 32·35 + 36).
    let errors = validate(
        r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text","chars":100000,"max_tokens":1000}}"#,
    )
    .unwrap_err();
    assert_eq!(errors[0].field, "training.batch_size");
    assert!(errors[0].message.contains("at most 1000 training tokens"), "{}", errors[0].message);
    // 1156 tokens make exactly one sequential batch; a held-out tail takes that away again.
    let ok = r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text","chars":1156}}"#;
    assert!(validate(ok).is_ok());
    let short = r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text","chars":1156,"validation_fraction":0.1}}"#;
    assert!(validate(short).is_err());
}

#[test]
fn backends_are_read_by_name_and_checked_against_the_server() {
    for (name, kind) in [
        ("cpu", BackendKind::Cpu),
        ("wgpu", BackendKind::Wgpu(None)),
        ("wgpu:3", BackendKind::Wgpu(Some(3))),
        ("auto", BackendKind::Auto),
    ] {
        assert_eq!(BackendKind::parse(name), Some(kind), "{name}");
        assert_eq!(kind.name(), name);
    }
    for bad in
        ["", "gpu", "ndarray", "wgpu:", "wgpu:-1", "wgpu:+1", "wgpu: 1", "wgpu:x", "WGPU", "wgpu:99999999999"]
    {
        assert_eq!(BackendKind::parse(bad), None, "{bad:?}");
    }

    // A server without WGPU devices takes `auto` (as the CPU) and refuses `wgpu`, saying what it has.
    let body = |backend: &str| {
        format!(
            r#"{{"model":{{"kind":"mlp_bn"}},"data":{{"dataset":"synthetic_images"}},"backend":"{backend}"}}"#
        )
    };
    assert_eq!(validate(&body("auto")).unwrap().backend, BackendKind::Auto);
    for refused in ["wgpu", "wgpu:0"] {
        let errors = validate(&body(refused)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "backend");
        assert!(
            errors[0].message.contains("it can run: cpu, (wgpu is off: --wgpu false)"),
            "{}",
            errors[0].message
        );
    }
    let stored = serde_json::to_string(&validate(&body("auto")).unwrap()).unwrap();
    assert!(stored.contains(r#""backend":"auto""#), "{stored}");

    // A job stored before the ndarray backend was removed still reads back, as a CPU job; a new
    // definition naming it is refused (above).
    let legacy: BackendKind = serde_json::from_str(r#""ndarray""#).unwrap();
    assert_eq!(legacy, BackendKind::Cpu);
}

#[test]
fn images_too_small_for_the_model_are_refused_naming_the_smallest_side_it_takes() {
    // LeNet's convolutions and poolings leave nothing of 8 pixels (and counting its parameters
    // there must not underflow); the book's DenseNet pools 28 pixels away.
    for (json, smallest) in [
        (r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images","resize":8}}"#, 16),
        (r#"{"model":{"kind":"densenet"},"data":{"dataset":"synthetic_images"}}"#, 29),
    ] {
        let errors = validate(json).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "data.resize", "{errors:?}");
        let expected = format!("needs images of at least {smallest} pixels square and gets");
        assert!(errors[0].message.contains(&expected), "{errors:?}");
    }
}

#[test]
fn a_model_with_no_stages_is_refused_by_field_not_measured() {
    for (json, field) in [
        (
            r#"{"model":{"kind":"resnet","widths":[],"blocks":[]},"data":{"dataset":"synthetic_images"}}"#,
            "model.widths",
        ),
        (
            r#"{"model":{"kind":"resnet","widths":[8,16],"blocks":[1]},"data":{"dataset":"synthetic_images"}}"#,
            "model.blocks",
        ),
        (
            r#"{"model":{"kind":"densenet","blocks":[]},"data":{"dataset":"synthetic_images","resize":64}}"#,
            "model.blocks",
        ),
        (r#"{"model":{"kind":"mlp_bn","hidden":[]},"data":{"dataset":"synthetic_images"}}"#, "model.hidden"),
    ] {
        let errors = validate(json).unwrap_err();
        assert!(errors.iter().any(|e| e.field == field), "{json}: {errors:?}");
    }
}

/// Every data set a valid job's `data` can hold is documented as objects a client generator can
/// merge (`sources.rs`): each key of it is a property, each required property is there, and
/// `dataset` takes its name.
#[test]
fn the_document_gives_every_data_set_of_a_valid_job_its_fields() {
    use crate::data::TextSource;
    use crate::text::{Normalize, Sampling, Tokenizer};
    use utoipa::PartialSchema;

    let images = |source| {
        let data = ImageDataSpec { source, limit_train: Some(10), limit_test: Some(10), resize: Some(32) };
        (DataSpec::Images(data), ImageDataSpec::schema())
    };
    let text = |source| {
        let data = TextDataSpec {
            source,
            tokenizer: Tokenizer::Char,
            normalize: Normalize::D2l,
            min_freq: 0,
            max_tokens: Some(100),
            num_steps: 35,
            sampling: Sampling::Sequential,
            validation_fraction: 0.1,
        };
        (DataSpec::Text(data), TextDataSpec::schema())
    };
    let all = [
        images(DatasetSpec::FashionMnist),
        images(DatasetSpec::SyntheticImages { train_size: 10, test_size: 10, seed: 1 }),
        text(TextSource::TimeMachine),
        text(TextSource::Uploaded { dataset_id: uuid::Uuid::nil() }),
        text(TextSource::SyntheticText { chars: 100, seed: 1 }),
    ];
    for (data, schema) in all {
        let data = serde_json::to_value(&data).unwrap();
        let schema = serde_json::to_value(schema).unwrap();
        let parts = schema["allOf"].as_array().expect("the data set's fields and the others");
        assert!(parts.iter().all(|part| part["type"] == "object"), "{schema}");
        let properties: Vec<&String> =
            parts.iter().flat_map(|part| part["properties"].as_object().unwrap().keys()).collect();
        for key in data.as_object().unwrap().keys() {
            assert!(properties.contains(&key), "{key} of {data} is not documented: {schema}");
        }
        for part in parts {
            for required in part["required"].as_array().into_iter().flatten() {
                assert!(data.get(required.as_str().unwrap()).is_some(), "{required} not in {data}");
            }
        }
        let names = parts.iter().find_map(|part| part["properties"]["dataset"]["enum"].as_array()).unwrap();
        assert!(names.contains(&data["dataset"]), "{data}: {schema}");
    }
}
