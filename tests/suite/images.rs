//! Image data sets uploaded as archives (`POST /datasets?kind=images`): a gzipped tar of class
//! folders in colour and a tar of gzipped IDX files each upload, train a classifier (a layer list
//! and a built-in kind) to better than chance and answer `/predict`; every bad archive is a 422
//! that leaves nothing behind. The archives are made here, from generated images.

use std::io::{Cursor, Write};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use image::{ImageFormat, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{Server, get_json, submit, wait_finished};

/// A PNG of `side`² pixels whose channel `class` (0 red, 1 green, 2 blue) is bright, with noise.
fn colour_png(class: usize, side: u32, rng: &mut StdRng) -> Vec<u8> {
    let image = RgbImage::from_fn(side, side, |_, _| {
        let mut px = [0u8; 3];
        for (c, v) in px.iter_mut().enumerate() {
            *v = if c == class { rng.random_range(190..=255) } else { rng.random_range(0..70) };
        }
        image::Rgb(px)
    });
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
    png
}

/// A tar of `(path, bytes)` entries, gzipped when `gzip`.
pub fn tar(entries: &[(String, Vec<u8>)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, bytes.as_slice()).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    if gzip { gz(&tar) } else { tar }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `train/<colour>/<n>.png` (and `test/…`) of 12-pixel colour images: `per_class` each.
fn colour_folders(train_per_class: usize, test_per_class: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut entries = Vec::new();
    for (split, n) in [("train", train_per_class), ("test", test_per_class)] {
        for (class, name) in ["red", "green", "blue"].iter().enumerate() {
            for i in 0..n {
                entries.push((format!("colours/{split}/{name}/{i}.png"), colour_png(class, 12, &mut rng)));
            }
        }
    }
    entries
}

/// Uploads `body` as an image archive with `query`; returns the status and the body.
async fn upload(server: &Server, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let url = server.url(&format!("/datasets?kind=images{query}"));
    let r = server.client.post(url).header("content-type", content_type).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Submits `job`, waits for it and returns its final view, asserting it succeeded.
async fn trained(server: &Server, job: Value) -> Value {
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

async fn test_accuracy(server: &Server, id: &str) -> f64 {
    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics"))).await;
    metrics["latest"]["test_accuracy"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_class_folders_upload_train_a_layer_list_and_lenet_and_predict() {
    let server = Server::start().await;
    let archive = tar(&colour_folders(30, 8), true);
    let (status, dataset) = upload(&server, "&name=colours", "application/gzip", archive).await;
    assert_eq!(status, 201, "{dataset}");
    assert_eq!(dataset["kind"], "images");
    assert_eq!(
        dataset["images"],
        json!({"classes": ["blue", "green", "red"], "channels": 3, "side": 12, "train": 90, "test": 24})
    );
    assert!(dataset.get("chars").is_none(), "{dataset}");
    let id = dataset["id"].as_str().unwrap();
    assert_eq!(get_json(&server.client, &server.url(&format!("/datasets/{id}"))).await, dataset);
    let stored = std::fs::read(server.dir.path().join(format!("datasets/uploads/{id}.safetensors"))).unwrap();
    assert_eq!(stored.len() as u64, dataset["bytes"].as_u64().unwrap());
    use sha2::Digest;
    assert_eq!(format!("{:x}", sha2::Sha256::digest(&stored)), dataset["sha256"]);

    // A layer list: logistic regression on the colours.
    let linear = json!({
        "model": {"kind": "sequential", "layers": [{"flatten": {}}, {"linear": {"out": 3}}]},
        "data": {"dataset": "uploaded", "dataset_id": id},
        "training": {"epochs": 4, "batch_size": 15, "optimizer": {"kind": "sgd", "lr": 0.05}}
    });
    let done = trained(&server, linear).await;
    let job = done["id"].as_str().unwrap();
    assert_eq!(done["spec"]["data"]["channels"], 3, "the job records its data set's shape: {done}");
    assert_eq!(done["spec"]["data"]["classes"], 3);
    let accuracy = test_accuracy(&server, job).await;
    assert!(accuracy > 0.6, "chance is 1/3: {accuracy}");

    // The same definition read back submits again; one that misstates the data set does not.
    let mut again = done["spec"].clone();
    again["name"] = json!("again");
    let r = server.client.post(server.url("/jobs?dry_run=true")).json(&again).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    again["data"]["side"] = json!(13);
    let r = server.client.post(server.url("/jobs?dry_run=true")).json(&again).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "data.side", "{problem}");

    // A pure red PNG is red.
    let mut rng = StdRng::seed_from_u64(9);
    let url = server.url(&format!("/jobs/{job}/predict?top_k=2"));
    let r = server.client.post(url).header("content-type", "image/png").body(colour_png(0, 40, &mut rng));
    let answer: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["predictions"][0]["top"][0]["class"], "red", "{answer}");
    assert_eq!(answer["predictions"][0]["top"].as_array().unwrap().len(), 2);

    // A built-in kind on the same RGB images, resized to its 28 pixels.
    let lenet = json!({
        "model": {"kind": "lenet_bn"},
        "data": {"dataset": "uploaded", "dataset_id": id, "resize": 28},
        "training": {"epochs": 1, "batch_size": 30}
    });
    let done = trained(&server, lenet).await;
    assert_eq!(done["layers"][0]["parameters"], 6 * 3 * 25 + 6, "three input channels: {done}");

    // A data set a job reads cannot be deleted while it is queued; this one is idle now.
    let r = server.client.delete(server.url(&format!("/datasets/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!server.dir.path().join(format!("datasets/uploads/{id}.safetensors")).exists());
}

/// An IDX file: `magic`, big-endian dimensions, then the bytes.
fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    out.extend_from_slice(payload);
    out
}

/// `n` 10×10 grey images, class `i % 3` bright in band `class` of the rows, with their labels.
fn banded(n: usize, rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(n * 100);
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    for &class in &labels {
        for row in 0..10 {
            for _ in 0..10 {
                let bright = row / 4 == usize::from(class);
                pixels.push(if bright { rng.random_range(180..=255) } else { rng.random_range(0..60) });
            }
        }
    }
    (pixels, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idx_files_in_a_tar_upload_and_train_better_than_chance() {
    let server = Server::start().await;
    let mut rng = StdRng::seed_from_u64(11);
    let mut entries = Vec::new();
    for (split, n) in [("train", 150), ("t10k", 45)] {
        let (pixels, labels) = banded(n, &mut rng);
        let n = n as u32;
        entries.push((format!("{split}-images-idx3-ubyte.gz"), gz(&idx(0x803, &[n, 10, 10], &pixels))));
        entries.push((format!("{split}-labels-idx1-ubyte.gz"), gz(&idx(0x801, &[n], &labels))));
    }
    let (status, dataset) = upload(&server, "", "application/x-tar", tar(&entries, false)).await;
    assert_eq!(status, 201, "{dataset}");
    assert_eq!(
        dataset["images"],
        json!({"classes": ["0", "1", "2"], "channels": 1, "side": 10, "train": 150, "test": 45})
    );
    let job = json!({
        "model": {"kind": "mlp_bn", "hidden": [16]},
        "data": {"dataset": "uploaded", "dataset_id": dataset["id"]},
        "training": {"epochs": 4, "batch_size": 30, "optimizer": {"kind": "sgd", "lr": 0.1}}
    });
    let done = trained(&server, job).await;
    let accuracy = test_accuracy(&server, done["id"].as_str().unwrap()).await;
    assert!(accuracy > 0.6, "chance is 1/3: {accuracy}");

    // A text corpus is not images, and images are not a corpus.
    let lm =
        json!({"model": {"kind": "rnn_lm"}, "data": {"dataset": "uploaded", "dataset_id": dataset["id"]}});
    let r = server.client.post(server.url("/jobs")).json(&lm).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("holds images"), "{problem}");
}

/// A tar whose one entry has `path` written into its header as is (the tar crate's builder
/// refuses `..` and absolute paths, as it should).
fn raw_tar_entry(path: &str, kind: tar::EntryType, bytes: &[u8], link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_entry_type(kind);
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_archive_is_a_422_naming_the_problem_and_leaves_nothing() {
    let server = Server::start_with(|c| {
        c.max_classes = 3;
        c.max_decoded_bytes = 1 << 20;
    })
    .await;
    let mut rng = StdRng::seed_from_u64(3);
    let mut png = |class: usize, side: u32| colour_png(class, side, &mut rng);
    let folders =
        |classes: &[&str], side: u32, png: &mut dyn FnMut(usize, u32) -> Vec<u8>| -> Vec<(String, Vec<u8>)> {
            let mut entries = Vec::new();
            for (c, name) in classes.iter().enumerate() {
                for i in 0..3 {
                    entries.push((format!("train/{name}/{i}.png"), png(c % 3, side)));
                }
            }
            entries
        };
    let two = folders(&["a", "b"], 12, &mut png);

    let mut mixed = two.clone();
    mixed.push(("train/b/big.png".to_string(), png(1, 16)));
    let mut not_image = two.clone();
    not_image.push(("train/a/notes.png".to_string(), b"just text".to_vec()));
    let mut empty_class = tar(&two, false);
    let mut dir = tar::Header::new_gnu();
    dir.set_path("train/c/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_cksum();
    empty_class.truncate(empty_class.len() - 1024);
    empty_class.extend_from_slice(dir.as_bytes());
    empty_class.resize(empty_class.len() + 1024, 0);
    let bomb = tar(&[("train/a/zeros.png".to_string(), vec![0u8; 2 << 20])], true);

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("not an archive", b"plain bytes, not a tar".to_vec(), "body", "is not a tar"),
        ("not an image by content", tar(&not_image, true), "body", "train/a/notes.png is not a PNG or JPEG"),
        ("mixed sizes without side", tar(&mixed, true), "side", "side"),
        ("an empty class", empty_class, "body", "`c`"),
        ("one class", tar(&folders(&["a"], 12, &mut png), true), "body", "one class"),
        ("more than --max-classes", tar(&folders(&["a", "b", "c", "d"], 12, &mut png), true), "body", "3"),
        (
            "a path out of the archive",
            raw_tar_entry("train/a/../../../evil.png", tar::EntryType::Regular, b"x", None),
            "body",
            "..",
        ),
        (
            "an absolute path",
            raw_tar_entry("/etc/evil.png", tar::EntryType::Regular, b"x", None),
            "body",
            "/etc/evil.png",
        ),
        (
            "a symlink",
            raw_tar_entry("train/a/link.png", tar::EntryType::Symlink, b"", Some("/etc/passwd")),
            "body",
            "link",
        ),
        ("a decompression bomb", bomb, "body", "bytes"),
    ];
    for (what, body, field, needle) in cases {
        let (status, problem) = upload(&server, "", "application/octet-stream", body).await;
        assert_eq!(status, 422, "{what}: {problem}");
        let error = &problem["errors"][0];
        assert_eq!(error["field"], field, "{what}: {problem}");
        assert!(error["message"].as_str().unwrap().contains(needle), "{what}: {problem}");
        assert!(
            !problem.to_string().contains(server.dir.path().to_str().unwrap()),
            "{what}: a server path: {problem}"
        );
    }
    // With a side, mixed sizes are fine.
    let (status, dataset) = upload(&server, "&side=12", "application/gzip", tar(&mixed, true)).await;
    assert_eq!(status, 201, "{dataset}");
    assert_eq!(dataset["images"]["train"].as_u64().unwrap() + dataset["images"]["test"].as_u64().unwrap(), 7);
    let r = server
        .client
        .delete(server.url(&format!("/datasets/{}", dataset["id"].as_str().unwrap())))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 204);

    // The media type of a text is not an archive's; query fields are checked by name.
    let (status, problem) = upload(&server, "", "text/plain", tar(&two, true)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("kind")), "{problem}");
    let (status, _) = upload(&server, "", "image/gif", tar(&two, true)).await;
    assert_eq!(status, 415);
    let (status, problem) = upload(&server, "&side=4", "application/gzip", tar(&two, true)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("side")), "{problem}");
    let (status, problem) = upload(&server, "&grayscale=true", "application/gzip", tar(&two, true)).await;
    assert_eq!(status, 400, "a misspelt option is not ignored: {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("grayscale"), "{problem}");

    let listed = get_json(&server.client, &server.url("/datasets")).await;
    assert_eq!(listed, json!([]), "nothing refused is listed");
    let left: Vec<_> = std::fs::read_dir(server.dir.path().join("datasets/uploads")).unwrap().collect();
    assert!(left.is_empty(), "nothing refused is left on disk: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_images_count_against_the_uploads_quota_and_a_refusal_leaves_nothing() {
    // Twenty flat 32-pixel images: a few kilobytes of archive, 61 KB decoded.
    let solid = |class: usize| {
        let image =
            RgbImage::from_fn(32, 32, |_, _| image::Rgb([0, 1, 2].map(|c| if c == class { 255 } else { 0 })));
        let mut png = Vec::new();
        image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        png
    };
    let entries: Vec<(String, Vec<u8>)> =
        (0..20).map(|i| (format!("train/c{}/{i}.png", i % 2), solid(i % 2))).collect();
    let archive = tar(&entries, true);
    assert!(archive.len() < 10_000, "{}", archive.len());

    let server = Server::start_with(|c| c.max_uploads_bytes = 30_000).await;
    let (status, problem) = upload(&server, "", "application/gzip", archive.clone()).await;
    assert_eq!(status, 507, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("--max-uploads-bytes"), "{problem}");
    assert_eq!(get_json(&server.client, &server.url("/datasets")).await, json!([]));
    let left: Vec<_> = std::fs::read_dir(server.dir.path().join("datasets/uploads")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // With room for the archive and its images at once, it is stored and counted at its stored
    // size. (An archive's media type says kind=images.)
    let server = Server::start_with(|c| c.max_uploads_bytes = 100_000).await;
    let r =
        server.client.post(server.url("/datasets")).header("content-type", "application/gzip").body(archive);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 201);
    let dataset: Value = r.json().await.unwrap();
    assert_eq!(dataset["kind"], "images");
    assert!(dataset["bytes"].as_u64().unwrap() > 20 * 3 * 32 * 32, "{dataset}");
}
