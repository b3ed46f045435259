//! Archives of IDX files (MNIST's format), gzipped or not, with and without a test split.

use super::*;

const IMAGES: u32 = 0x0000_0803;
const LABELS: u32 = 0x0000_0801;

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Pixel `p` of image `i` of a split whose images are numbered from `first`.
fn pixel(first: usize, i: usize, p: usize) -> u8 {
    ((first + i) * 7 + p) as u8
}

/// The images and labels files of split `prefix`: `labels.len()` images of `side` x `side`,
/// gzipped, in folder `dir`.
fn split(dir: &str, prefix: &str, first: usize, side: u32, labels: &[u8]) -> [Item; 2] {
    let area = (side * side) as usize;
    let pixels: Vec<u8> =
        (0..labels.len()).flat_map(|i| (0..area).map(move |p| pixel(first, i, p))).collect();
    let n = labels.len() as u32;
    [
        file(&format!("{dir}{prefix}-images-idx3-ubyte.gz"), gzip(&idx(IMAGES, &[n, side, side], &pixels))),
        file(&format!("{dir}{prefix}-labels-idx1-ubyte.gz"), gzip(&idx(LABELS, &[n], labels))),
    ]
}

const TRAIN_LABELS: [u8; 8] = [3, 0, 1, 2, 3, 0, 1, 2];

#[test]
fn gzipped_idx_files_in_a_tar_give_their_images_and_labels() {
    let mut items = vec![Item::Dir("mnist/".into())];
    items.extend(split("mnist/", "train", 0, 10, &TRAIN_LABELS));
    items.extend(split("mnist/", "t10k", 100, 10, &[2, 1]));
    let data = import(archive(Kind::Tar, &items).path(), &options()).unwrap();
    assert_eq!(data.layout, Layout::Idx);
    assert_eq!(data.classes, ["0", "1", "2", "3"]);
    assert_eq!((data.channels, data.side), (1, 10));
    assert_eq!(data.train.labels, TRAIN_LABELS.map(u16::from));
    assert_eq!(data.test.labels, [2, 1]);
    let expected = |first, i| (0..100).map(|p| pixel(first, i, p)).collect::<Vec<_>>();
    assert_eq!(data.train.pixels[5 * 100..6 * 100], expected(0, 5)[..]);
    assert_eq!(data.test.pixels[100..], expected(100, 1)[..]);
}

#[test]
fn without_t10k_a_seeded_share_is_held_out_and_side_resizes() {
    let items = split("", "train", 0, 10, &TRAIN_LABELS);
    let file = archive(Kind::TarGz, &items);
    let data = import(file.path(), &options()).unwrap();
    assert_eq!((data.train.labels.len(), data.test.labels.len()), (6, 2));
    assert_eq!(data.test.pixels.len(), 2 * 100);
    assert_eq!(import(file.path(), &options()).unwrap(), data);
    let resized = import(file.path(), &ImportOptions { side: Some(16), ..options() }).unwrap();
    assert_eq!((resized.side, resized.train.pixels.len()), (16, 6 * 256));
    assert_eq!(resized.test.labels, data.test.labels, "the same examples are held out");
}

#[test]
fn plain_idx_files_with_the_test_prefix_in_a_zip_are_accepted() {
    let mut items = split("", "train", 0, 8, &TRAIN_LABELS).to_vec();
    items.extend(split("", "test", 50, 8, &[0, 1, 1]));
    let unzip = |item: Item| match item {
        Item::File(name, bytes) => {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
            Item::File(name.trim_end_matches(".gz").to_string(), plain)
        }
        other => other,
    };
    let items: Vec<Item> = items.into_iter().map(unzip).collect();
    let data = import(archive(Kind::Zip, &items).path(), &options()).unwrap();
    assert_eq!((data.train.labels.len(), data.test.labels.len(), data.side), (8, 3, 8));
}

fn refused(items: &[Item]) -> String {
    match import(archive(Kind::Tar, items).path(), &options()) {
        Err(ImportError::Invalid { field: "body", message }) => message,
        other => panic!("not refused on body: {other:?}"),
    }
}

#[test]
fn idx_files_must_come_in_pairs_once_each_and_agree() {
    let [images, labels] = split("", "train", 0, 8, &TRAIN_LABELS);
    let message = refused(std::slice::from_ref(&images));
    assert_eq!(message, "has train-images-idx3-ubyte.gz but no train-labels-idx1-ubyte to go with it");
    let [test_images, _] = split("", "t10k", 0, 8, &[0]);
    let message = refused(&[images.clone(), labels.clone(), test_images]);
    assert_eq!(message, "has t10k-images-idx3-ubyte.gz but no t10k-labels-idx1-ubyte to go with it");
    let [_, other_labels] = split("raw/", "train", 0, 8, &TRAIN_LABELS);
    let message = refused(&[images.clone(), labels.clone(), other_labels]);
    assert!(message.starts_with("holds two IDX files for the same data"), "{message}");
    let [_, short_labels] = split("", "train", 0, 8, &[0, 1, 2]);
    let message = refused(&[images.clone(), short_labels]);
    assert_eq!(
        message,
        "train-labels-idx1-ubyte.gz holds 3 labels for the 8 images of train-images-idx3-ubyte.gz"
    );
    let swapped = file("train-labels-idx1-ubyte", idx(IMAGES, &[1, 8, 8], &[0; 64]));
    let message = refused(&[images.clone(), swapped]);
    assert!(
        message.starts_with("train-labels-idx1-ubyte is not a valid IDX file: magic number"),
        "{message}"
    );
    let short = file("train-images-idx3-ubyte", idx(IMAGES, &[8, 8, 8], &[0; 100]));
    let message = refused(&[short, labels.clone()]);
    assert!(message.contains("the header promises 512"), "{message}");
    let one_class = split("", "train", 0, 8, &[0, 0, 0]);
    assert_eq!(refused(&one_class), "has only one class (`0`) in its IDX labels; at least 2 are needed");
}

#[test]
fn idx_images_outside_8_to_512_or_of_two_sizes_need_side() {
    let mut items = split("", "train", 0, 8, &TRAIN_LABELS).to_vec();
    items.extend(split("", "t10k", 0, 9, &[0, 1]));
    let (field, message) = match import(archive(Kind::Tar, &items).path(), &options()) {
        Err(ImportError::Invalid { field, message }) => (field.to_string(), message),
        other => panic!("{other:?}"),
    };
    assert_eq!(field, "side");
    assert!(
        message.contains("train-images-idx3-ubyte.gz is 8x8 but t10k-images-idx3-ubyte.gz is 9x9"),
        "{message}"
    );
    let small = split("", "train", 0, 4, &TRAIN_LABELS);
    let refusal = import(archive(Kind::Tar, &small).path(), &options()).unwrap_err();
    assert!(refusal.to_string().starts_with("side is needed: the images are 4x4"), "{refusal}");
}

#[test]
fn a_gap_in_the_labels_is_an_empty_class() {
    let message = refused(&split("", "train", 0, 8, &[0, 1, 3, 0, 1, 3]));
    assert!(message.starts_with("class `2` has no images in the IDX training labels"), "{message}");
}
