//! Tests of [`import`] on small archives built here: generated PNGs and JPEGs in class folders,
//! packed as tar ([`tar::Builder`]), gzipped tar and zip ([`zip::ZipWriter`]). This file holds
//! the builders and the tests of what is accepted; [`refusals`] and [`idx`] hold the rest.

mod idx;
mod refusals;

use std::io::{Cursor, Write};

use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};

use super::*;

/// How a test archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tar,
    TarGz,
    Zip,
}

pub(super) const KINDS: [Kind; 3] = [Kind::Tar, Kind::TarGz, Kind::Zip];

/// One entry of a test archive.
#[derive(Debug, Clone)]
pub(super) enum Item {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String),
    /// A tar entry of any type, with no data.
    Special(String, tar::EntryType),
}

pub(super) fn file(name: &str, bytes: Vec<u8>) -> Item {
    Item::File(name.to_string(), bytes)
}

/// An archive file of `items`, packed as `kind`; names are stored as given, unchecked.
pub(super) fn archive(kind: Kind, items: &[Item]) -> tempfile::NamedTempFile {
    let bytes = match kind {
        Kind::Tar => tar_bytes(items),
        Kind::TarGz => gzip(&tar_bytes(items)),
        Kind::Zip => zip_bytes(items),
    };
    raw_file(&bytes)
}

/// A file holding `bytes`.
pub(super) fn raw_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    file
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let (name, kind, data, link): (&str, _, &[u8], &str) = match item {
            Item::File(name, data) => (name, tar::EntryType::Regular, data, ""),
            Item::Dir(name) => (name, tar::EntryType::Directory, &[], ""),
            Item::Symlink(name) => (name, tar::EntryType::Symlink, &[], "../../etc/passwd"),
            Item::Special(name, kind) => (name, *kind, &[], "train/a/0.png"),
        };
        let mut header = tar::Header::new_gnu();
        // Written raw: `set_path` would refuse the hostile names the tests need.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        header.set_entry_type(kind);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn zip_bytes(items: &[Item]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for item in items {
        match item {
            Item::File(name, data) => {
                zip.start_file(name, options).unwrap();
                zip.write_all(data).unwrap();
            }
            Item::Dir(name) => zip.add_directory(name, options).unwrap(),
            Item::Symlink(name) => zip.add_symlink(name, "../../etc/passwd", options).unwrap(),
            Item::Special(..) => panic!("tar only"),
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A PNG of a grey image whose pixel (x, y) is `pixel(x, y)`.
pub(super) fn gray_png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    encode(
        DynamicImage::ImageLuma8(GrayImage::from_fn(width, height, |x, y| image::Luma([pixel(x, y)]))),
        ImageFormat::Png,
    )
}

/// A PNG (or another format) of an RGB image whose pixel (x, y) is `pixel(x, y)`.
pub(super) fn rgb_image(
    width: u32,
    height: u32,
    format: ImageFormat,
    pixel: impl Fn(u32, u32) -> [u8; 3],
) -> Vec<u8> {
    encode(DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)))), format)
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

pub(super) fn options() -> ImportOptions {
    ImportOptions {
        side: None,
        to_grayscale: false,
        test_fraction: 0.25,
        seed: 7,
        max_classes: 1000,
        max_expanded_bytes: 4 << 20,
        max_image_pixels: 1 << 20,
    }
}

/// Pixel (x, y) of image `n` of class `class` in [`three_classes`].
fn pattern(class: u8, n: u8, x: u32, y: u32) -> u8 {
    class * 60 + n * 8 + (x + 2 * y) as u8
}

/// Classes `cat`, `ant`, `bee` (in that archive order, each one's files in reverse name order):
/// four 8x8 grey PNGs in train/ and, with `test`, two in test/; all under `top/` if given.
pub(super) fn three_classes(top: &str, test: bool) -> Vec<Item> {
    let mut items = vec![Item::Dir(format!("{top}train/"))];
    for (class, name) in [(2, "cat"), (0, "ant"), (1, "bee")] {
        items.push(Item::Dir(format!("{top}train/{name}/")));
        let splits: &[(&str, u8)] = if test { &[("train", 4), ("test", 2)] } else { &[("train", 4)] };
        for &(split, count) in splits {
            for n in (0..count).rev() {
                let shift = if split == "test" { 4 } else { 0 };
                let png = gray_png(8, 8, |x, y| pattern(class, n + shift, x, y));
                items.push(file(&format!("{top}{split}/{name}/{n}.png"), png));
            }
        }
    }
    items
}

#[test]
fn tar_gzipped_tar_and_zip_of_class_folders_give_sorted_classes_and_exact_pixels() {
    for kind in KINDS {
        let file = archive(kind, &three_classes("", true));
        let data = import(file.path(), &options()).unwrap();
        assert_eq!(data.classes, ["ant", "bee", "cat"], "{kind:?}");
        assert_eq!((data.channels, data.side, data.layout), (1, 8, Layout::ClassFolders));
        assert_eq!(data.train.labels, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(data.test.labels, [0, 0, 1, 1, 2, 2]);
        assert_eq!(data.train.pixels.len(), 12 * 64);
        assert_eq!(data.test.pixels.len(), 6 * 64);
        // Train image 5 is bee/1.png; test image 4 is cat/0.png of test/ (n = 4).
        let expected =
            |class, n| (0..8).flat_map(|y| (0..8).map(move |x| pattern(class, n, x, y))).collect::<Vec<_>>();
        assert_eq!(data.train.pixels[5 * 64..6 * 64], expected(1, 1)[..]);
        assert_eq!(data.test.pixels[4 * 64..5 * 64], expected(2, 4)[..]);
    }
}

#[test]
fn a_wrapping_folder_hidden_entries_and_macos_metadata_change_nothing() {
    let plain = import(archive(Kind::TarGz, &three_classes("", true)).path(), &options()).unwrap();
    let mut items = vec![Item::Dir("fashion/".into()), file("fashion/.DS_Store", b"junk".to_vec())];
    items.extend(three_classes("fashion/", true));
    items.push(file("fashion/train/ant/._0.png", b"AppleDouble".to_vec()));
    items.push(file("__MACOSX/fashion/train/ant/._0.png", b"AppleDouble".to_vec()));
    items.push(file("fashion/train/.ipynb_checkpoints/x.png", b"junk".to_vec()));
    for kind in KINDS {
        let wrapped = import(archive(kind, &items).path(), &options()).unwrap();
        assert_eq!(wrapped, plain, "{kind:?}");
    }
}

#[test]
fn without_a_test_split_a_seeded_share_of_train_is_held_out() {
    let file = archive(Kind::Zip, &three_classes("", false));
    let data = import(file.path(), &options()).unwrap();
    assert_eq!((data.train.labels.len(), data.test.labels.len()), (9, 3));
    assert_eq!((data.train.pixels.len(), data.test.pixels.len()), (9 * 64, 3 * 64));
    assert_eq!(import(file.path(), &options()).unwrap(), data, "the same seed holds out the same images");
    let other = import(file.path(), &ImportOptions { seed: 8, ..options() }).unwrap();
    assert_ne!(other.test.pixels, data.test.pixels);
    let mut all: Vec<u16> = data.train.labels.iter().chain(&data.test.labels).copied().collect();
    all.sort_unstable();
    assert_eq!(all, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    let tiny = import(file.path(), &ImportOptions { test_fraction: 0.01, ..options() }).unwrap();
    assert_eq!((tiny.train.labels.len(), tiny.test.labels.len()), (11, 1), "at least one is held out");
}

/// Class `rgb` holds an RGB PNG with pixel (3, 2) set; class `grey` a grey PNG of 77s.
fn rgb_and_grey() -> Vec<Item> {
    let rgb =
        rgb_image(8, 8, ImageFormat::Png, |x, y| if (x, y) == (3, 2) { [10, 20, 30] } else { [200, 100, 0] });
    vec![file("train/rgb/a.png", rgb), file("train/grey/a.png", gray_png(8, 8, |_, _| 77))]
}

#[test]
fn rgb_images_are_channel_major_and_grey_ones_become_three_equal_planes() {
    let data = import(archive(Kind::Tar, &rgb_and_grey()).path(), &options()).unwrap();
    assert_eq!((data.channels, data.classes.clone()), (3, vec!["grey".to_string(), "rgb".to_string()]));
    let pixels = [&data.train.pixels[..], &data.test.pixels[..]].concat();
    let labels = [&data.train.labels[..], &data.test.labels[..]].concat();
    let image = |label: u16| {
        let i = labels.iter().position(|l| *l == label).unwrap();
        &pixels[i * 192..(i + 1) * 192]
    };
    let at = |c: usize, x: usize, y: usize| c * 64 + y * 8 + x;
    let rgb = image(1);
    assert_eq!([rgb[at(0, 3, 2)], rgb[at(1, 3, 2)], rgb[at(2, 3, 2)]], [10, 20, 30]);
    assert_eq!([rgb[at(0, 0, 0)], rgb[at(1, 0, 0)], rgb[at(2, 0, 0)]], [200, 100, 0]);
    assert!(image(0).iter().all(|p| *p == 77));
}

#[test]
fn to_grayscale_gives_one_channel_of_luma() {
    let options = ImportOptions { to_grayscale: true, ..options() };
    let data = import(archive(Kind::Tar, &rgb_and_grey()).path(), &options).unwrap();
    assert_eq!(data.channels, 1);
    assert_eq!(data.train.pixels.len() + data.test.pixels.len(), 2 * 64);
    let pixels = [&data.train.pixels[..], &data.test.pixels[..]].concat();
    let labels = [&data.train.labels[..], &data.test.labels[..]].concat();
    let rgb = labels.iter().position(|l| *l == 1).unwrap() * 64;
    // Rec. 709 luma of (10, 20, 30) is 18.6; of (200, 100, 0) 114.
    assert!((18..=19).contains(&pixels[rgb + 2 * 8 + 3]), "{}", pixels[rgb + 19]);
    assert!((113..=115).contains(&pixels[rgb]), "{}", pixels[rgb]);
}

#[test]
fn jpegs_are_decoded_and_side_resizes_every_image() {
    let items = vec![
        file("train/jpeg/a.jpg", rgb_image(16, 16, ImageFormat::Jpeg, |_, _| [0, 128, 255])),
        file("train/wide/a.png", gray_png(20, 10, |_, _| 50)),
        file("train/small/a.png", gray_png(4, 4, |_, _| 90)),
    ];
    let options = ImportOptions { side: Some(10), ..options() };
    let data = import(archive(Kind::Zip, &items).path(), &options).unwrap();
    assert_eq!((data.channels, data.side), (3, 10));
    assert_eq!(data.train.pixels.len() + data.test.pixels.len(), 3 * 3 * 100);
    let pixels = [&data.train.pixels[..], &data.test.pixels[..]].concat();
    let labels = [&data.train.labels[..], &data.test.labels[..]].concat();
    for (label, value) in [(1, 90), (2, 50)] {
        let i = labels.iter().position(|l| *l == label).unwrap();
        assert!(pixels[i * 300..(i + 1) * 300].iter().all(|p| *p == value), "class {label}");
    }
    let jpeg = labels.iter().position(|l| *l == 0).unwrap() * 300;
    for (channel, value) in [0u8, 128, 255].into_iter().enumerate() {
        let plane = &pixels[jpeg + channel * 100..jpeg + (channel + 1) * 100];
        assert!(plane.iter().all(|p| p.abs_diff(value) <= 3), "channel {channel}: {plane:?}");
    }
}
