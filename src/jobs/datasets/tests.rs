//! Tests of uploads: their quota places, labels and query options.

use super::*;
use crate::config::Config;
use crate::jobs::shared::Shared;

fn files(jobs: &Jobs) -> usize {
    std::fs::read_dir(jobs.config().uploads_dir()).unwrap().count()
}

#[tokio::test]
async fn an_upload_holds_its_place_until_stored_deleted_or_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.max_uploads = 1;
    let jobs = Jobs::without_workers(Shared::open(config).unwrap());
    let unnamed = || ValidUpload::new(&RawUpload::default()).unwrap();

    let mut upload = jobs.begin_upload(unnamed(), None).await.unwrap();
    upload.write(Bytes::from_static(b"half")).await.unwrap();
    assert!(matches!(jobs.begin_upload(unnamed(), None).await, Err(JobError::QuotaExceeded(_))));
    assert_eq!(files(&jobs), 1);
    upload.abandon().await;
    assert_eq!(files(&jobs), 0, "abandoned: its temporary file is gone");

    let mut upload = jobs.begin_upload(ValidUpload::new(&named(" c ")).unwrap(), Some(3)).await.unwrap();
    let e = "é".as_bytes();
    for chunk in [&b"a"[..], &e[..1], &e[1..]] {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let dataset = upload.finish().await.unwrap();
    assert_eq!((dataset.name.as_deref(), dataset.bytes, dataset.chars), (Some("c"), 3, Some(2)));
    assert_eq!(std::fs::read(jobs.config().uploaded_dataset_path(dataset.id)).unwrap(), "aé".as_bytes());
    assert_eq!(jobs.dataset(dataset.id).unwrap(), dataset);
    assert!(matches!(jobs.begin_upload(unnamed(), None).await, Err(JobError::QuotaExceeded(_))));

    jobs.delete_dataset(dataset.id).unwrap();
    assert_eq!(files(&jobs), 0);
    jobs.begin_upload(unnamed(), None).await.expect("a deleted data set gives back its place");
}

fn named(name: &str) -> RawUpload {
    RawUpload { name: Some(name.to_string()), ..RawUpload::default() }
}

fn problems(raw: &RawUpload) -> Vec<String> {
    ValidUpload::new(raw).unwrap_err().into_iter().map(|e| e.to_string()).collect()
}

#[test]
fn a_label_is_trimmed_blank_is_none_and_long_is_refused() {
    assert_eq!(ValidUpload::new(&named("  corpus \n")).unwrap().name.as_deref(), Some("corpus"));
    assert_eq!(ValidUpload::new(&named("   ")).unwrap().name, None);
    assert_eq!(ValidUpload::new(&RawUpload::default()).unwrap().name, None);
    let longest = "é".repeat(MAX_NAME_CHARS);
    assert_eq!(ValidUpload::new(&named(&longest)).unwrap().name, Some(longest.clone()));
    let errors = problems(&named(&format!("{longest}n")));
    assert_eq!(errors, [format!("name must be at most {MAX_NAME_CHARS} characters")]);
}

#[test]
fn image_options_are_checked_and_belong_to_images_only() {
    let images = |pairs: &[(&str, &str)]| {
        let mut raw = RawUpload { kind: Some("images".into()), ..RawUpload::default() };
        for (key, value) in pairs {
            let value = Some(value.to_string());
            match *key {
                "side" => raw.side = value,
                "to_grayscale" => raw.to_grayscale = value,
                "test_fraction" => raw.test_fraction = value,
                _ => raw.seed = value,
            }
        }
        raw
    };
    let defaults = ValidUpload::new(&images(&[])).unwrap().images.unwrap();
    assert_eq!(defaults, ImageUpload { side: None, to_grayscale: false, test_fraction: 0.1, seed: 0 });
    let given = images(&[("side", "32"), ("to_grayscale", "true"), ("test_fraction", "0.5"), ("seed", "7")]);
    let given = ValidUpload::new(&given).unwrap().images.unwrap();
    assert_eq!(given, ImageUpload { side: Some(32), to_grayscale: true, test_fraction: 0.5, seed: 7 });
    assert_eq!(
        problems(&images(&[("side", "7"), ("to_grayscale", "yes"), ("test_fraction", "0"), ("seed", "-1")])),
        [
            "side must be a whole number from 8 to 512 (got \"7\")",
            "to_grayscale must be true or false (got \"yes\")",
            "test_fraction must be a number above 0 and at most 0.5",
            "seed must be a whole number from 0 to 18446744073709551615",
        ]
    );
    let text = RawUpload { side: Some("32".into()), ..RawUpload::default() };
    assert_eq!(problems(&text), ["side is for kind=images only"]);
    let unknown = RawUpload { kind: Some("audio".into()), ..RawUpload::default() };
    assert_eq!(problems(&unknown), ["kind must be text or images (got \"audio\")"]);
    assert!(ValidUpload::new(&RawUpload::default()).unwrap().images.is_none());
}

#[tokio::test]
async fn a_job_validated_against_a_data_set_deleted_before_its_insert_is_refused_by_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::without_workers(Shared::open(Config::with_data_dir(dir.path())).unwrap());
    let mut upload = jobs.begin_upload(ValidUpload::new(&RawUpload::default()).unwrap(), None).await.unwrap();
    upload.write(Bytes::from("the time machine by h g wells ".repeat(20))).await.unwrap();
    let dataset = upload.finish().await.unwrap();
    let body = format!(
        r#"{{"model": {{"kind": "rnn_lm", "hidden": 8}}, "data": {{"dataset": "uploaded", "dataset_id": "{}"}}}}"#,
        dataset.id
    );
    // The row goes (as a delete does) while the file is still there: validation still passes, as it
    // would for a submit that read the file just before the delete.
    let file = crate::jobs::datadir::upload_file(dataset.id);
    assert!(matches!(
        jobs.shared.store.delete_dataset(dataset.id, &file),
        Ok(DatasetDeletion::Deleted { .. })
    ));
    assert!(jobs.config().uploaded_dataset_path(dataset.id).is_file());
    match jobs.submit(body.as_bytes(), None) {
        Err(JobError::Invalid(errors)) => {
            assert_eq!(errors[0].field, "data.dataset_id");
            assert!(errors[0].message.contains("was deleted while this job was submitted"), "{errors:?}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(submitted) => panic!("stored as job {}", submitted.job.id),
    }
    assert!(jobs.list(None, 0, 10).unwrap().0.is_empty(), "nothing was stored or queued");
}
