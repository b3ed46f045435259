//! Archives [`import`] refuses, and the field and message of each refusal.

use super::*;

/// The field and message `import` refuses `file` with; the message must not name the file.
fn refusal(file: &tempfile::NamedTempFile, options: &ImportOptions) -> (String, String) {
    match import(file.path(), options) {
        Err(ImportError::Invalid { field, message }) => {
            let path = file.path().display().to_string();
            assert!(!message.contains(&path) && !message.contains("/tmp"), "{message}");
            (field.to_string(), message)
        }
        Err(other) => panic!("not refused as invalid: {other:?}"),
        Ok(data) => panic!("accepted: {:?}", data.classes),
    }
}

/// The message `import` refuses `items`, packed as `kind`, with on field `body`.
fn body_refusal(kind: Kind, items: &[Item]) -> String {
    let (field, message) = refusal(&archive(kind, items), &options());
    assert_eq!(field, "body", "{message}");
    message
}

fn two_classes() -> Vec<Item> {
    vec![file("train/a/0.png", gray_png(8, 8, |_, _| 1)), file("train/b/0.png", gray_png(8, 8, |_, _| 2))]
}

/// [`two_classes`] plus `extra`.
fn with(extra: Item) -> Vec<Item> {
    let mut items = two_classes();
    items.push(extra);
    items
}

#[test]
fn what_is_not_an_archive_is_refused() {
    let text = raw_file(b"train/a/0.png,1\ntrain/b/0.png,2\n");
    assert_eq!(refusal(&text, &options()).1, "is not a tar, gzipped tar or zip archive");
    assert_eq!(refusal(&raw_file(&[]), &options()).1, "is not a tar, gzipped tar or zip archive");
    let (_, message) = refusal(&raw_file(&gzip(&gray_png(8, 8, |_, _| 0))), &options());
    assert!(message.contains("gzip-compressed but holds no tar archive"), "{message}");
}

#[test]
fn empty_archives_and_archives_without_train_are_refused() {
    for kind in KINDS {
        assert_eq!(body_refusal(kind, &[]), "is an empty archive", "{kind:?}");
        let only_test = [file("test/a/0.png", gray_png(8, 8, |_, _| 1))];
        assert!(body_refusal(kind, &only_test).starts_with("has no train/<class>/ folders"), "{kind:?}");
    }
}

#[test]
fn a_file_that_is_not_a_png_or_jpeg_by_content_is_refused_whatever_its_name() {
    let message = body_refusal(Kind::Zip, &with(file("train/a/notes.png", b"just some notes".to_vec())));
    assert_eq!(message, "train/a/notes.png is not a PNG or JPEG image");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    assert_eq!(
        body_refusal(Kind::Tar, &with(file("train/b/x.png", gif))),
        "train/b/x.png is not a PNG or JPEG image"
    );
    let mut truncated = gray_png(8, 8, |x, _| x as u8);
    truncated.truncate(truncated.len() - 20);
    let message = body_refusal(Kind::Tar, &with(file("train/b/cut.png", truncated)));
    assert!(message.starts_with("train/b/cut.png is not a valid image"), "{message}");
}

#[test]
fn files_outside_class_folders_are_refused() {
    let message = body_refusal(Kind::TarGz, &with(file("README.md", b"hi".to_vec())));
    assert!(message.starts_with("README.md is neither in a class folder"), "{message}");
    let message = body_refusal(Kind::Tar, &with(file("train/a/deeper/0.png", gray_png(8, 8, |_, _| 0))));
    assert!(message.starts_with("train/a/deeper/0.png is neither"), "{message}");
    let message = body_refusal(Kind::Tar, &with(file("top/train/c/0.png", gray_png(8, 8, |_, _| 0))));
    assert!(message.contains("is inside top/, but the other class folders are at the top"), "{message}");
}

#[test]
fn sizes_that_differ_or_are_not_square_or_out_of_range_need_side() {
    let side_refusal = |items: &[Item]| {
        let (field, message) = refusal(&archive(Kind::Tar, items), &options());
        assert_eq!(field, "side", "{message}");
        message
    };
    let message = side_refusal(&with(file("train/c/0.png", gray_png(9, 9, |_, _| 0))));
    assert_eq!(
        message,
        "is needed: train/a/0.png is 8x8 but train/c/0.png is 9x9; set side to resize every image to side x side"
    );
    let oblong =
        [file("train/a/0.png", gray_png(8, 10, |_, _| 1)), file("train/b/0.png", gray_png(8, 10, |_, _| 2))];
    assert!(side_refusal(&oblong).contains("train/a/0.png is 8x10, not square; set side"));
    let tiny =
        [file("train/a/0.png", gray_png(4, 4, |_, _| 1)), file("train/b/0.png", gray_png(4, 4, |_, _| 2))];
    assert!(
        side_refusal(&tiny).contains("the images are 4x4, and without side they must be from 8x8 to 512x512")
    );
    // With side, all three are fine.
    let options = ImportOptions { side: Some(8), ..options() };
    assert_eq!(import(archive(Kind::Tar, &oblong).path(), &options).unwrap().side, 8);
}

#[test]
fn class_folders_must_be_at_least_two_within_the_cap_with_images_and_known_to_train() {
    let message = body_refusal(Kind::Tar, &with(Item::Dir("train/dog/".into())));
    assert_eq!(message, "class `dog` has no images in train/");
    let message = body_refusal(Kind::Zip, &with(file("train/dog/.DS_Store", vec![0])));
    assert_eq!(message, "class `dog` has no images in train/");
    let one = [file("train/a/0.png", gray_png(8, 8, |_, _| 1))];
    assert_eq!(body_refusal(Kind::Tar, &one), "has only one class (`a`) in train/; at least 2 are needed");
    let (_, message) = refusal(
        &archive(Kind::Tar, &three_classes("", false)),
        &ImportOptions { max_classes: 2, ..options() },
    );
    assert_eq!(message, "has 3 classes in train/, more than the 2 allowed");
    let message = body_refusal(Kind::Tar, &with(file("test/zebra/0.png", gray_png(8, 8, |_, _| 1))));
    assert_eq!(message, "has a class `zebra` in test/ that train/ does not have");
}

#[test]
fn names_that_leave_the_archive_are_refused() {
    let png = gray_png(8, 8, |_, _| 0);
    for name in [
        "../evil.png",
        "train/a/../../../evil.png",
        "/abs/train/a/0.png",
        "train\\a\\..\\..\\evil.png",
        "C:/evil.png",
    ] {
        for kind in KINDS {
            let message = body_refusal(kind, &with(file(name, png.clone())));
            assert!(
                message.starts_with(&format!("{name} points outside the archive")),
                "{kind:?}: {message}"
            );
        }
    }
}

#[test]
fn links_devices_and_fifos_are_refused() {
    for kind in KINDS {
        let message = body_refusal(kind, &with(Item::Symlink("train/a/link.png".into())));
        assert_eq!(
            message,
            "train/a/link.png is a link; links are not allowed, only regular files and folders"
        );
    }
    let hard = Item::Special("train/a/hard.png".into(), tar::EntryType::Link);
    assert!(body_refusal(Kind::TarGz, &with(hard)).starts_with("train/a/hard.png is a link"));
    for kind in [tar::EntryType::Fifo, tar::EntryType::Char, tar::EntryType::Block] {
        let special = Item::Special("train/a/dev.png".into(), kind);
        assert!(body_refusal(Kind::Tar, &with(special)).starts_with("train/a/dev.png is a device or FIFO"));
    }
}

#[test]
fn archives_expanding_past_the_cap_are_refused_as_bombs() {
    let options = ImportOptions { max_expanded_bytes: 1 << 20, ..options() };
    let expected = "expands past 1048576 bytes when unpacked, the most this server accepts";
    let zeros = raw_file(&gzip(&vec![0; 8 << 20]));
    assert!(std::fs::metadata(zeros.path()).unwrap().len() < 64 << 10);
    assert_eq!(refusal(&zeros, &options).1, expected);
    for kind in KINDS {
        let big = archive(kind, &with(file("train/a/big.png", vec![0; 2 << 20])));
        assert_eq!(refusal(&big, &options).1, expected, "{kind:?}");
    }
    // A zip whose entry claims to be small: the read is capped all the same.
    let mut lying = zip_bytes(&with(file("train/a/big.png", vec![0; 2 << 20])));
    let claimed = 100u32.to_le_bytes();
    let mut patched = 0;
    for at in 0..lying.len() - 4 {
        let offset = match &lying[at..at + 4] {
            b"PK\x03\x04" => 22,
            b"PK\x01\x02" => 24,
            _ => continue,
        };
        if u32::from_le_bytes(lying[at + offset..at + offset + 4].try_into().unwrap()) == 2 << 20 {
            lying[at + offset..at + offset + 4].copy_from_slice(&claimed);
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "the local and central headers both state the size");
    let (_, message) = refusal(&raw_file(&lying), &options);
    assert!(message == expected || message.starts_with("is a truncated or corrupt archive"), "{message}");
}

#[test]
fn decoded_pixels_past_the_cap_are_refused() {
    let options = ImportOptions { max_expanded_bytes: 15_000, ..options() };
    // Small images made large by `side`: 2 x 1,600 bytes read, 2 x 10,000 bytes made.
    let flat = |class: &str| file(&format!("train/{class}/0.png"), gray_png(40, 40, |_, _| 9));
    let upscaled = ImportOptions { side: Some(100), ..options.clone() };
    let (_, message) = refusal(&archive(Kind::Zip, &[flat("a"), flat("b")]), &upscaled);
    assert_eq!(message, "decodes to more than 15000 bytes of pixels, the most this server accepts");
    // Grey images count once as decoded, three times in RGB output.
    let items = [
        file("train/a/0.png", gray_png(60, 60, |_, _| 9)),
        file("train/b/0.png", rgb_image(60, 60, ImageFormat::Png, |_, _| [1, 2, 3])),
    ];
    let (_, message) = refusal(&archive(Kind::Zip, &items), &options);
    assert_eq!(message, "decodes to 2 images of 3x60x60 bytes, more than the 15000 bytes allowed");
}

/// A PNG whose header says `side` x `side`, with the pixel data of a 1x1 image.
fn png_claiming(side: u32) -> Vec<u8> {
    let mut png = gray_png(1, 1, |_, _| 0);
    // Signature (8), IHDR length and type (8), then width and height; the CRC follows the
    // 13 bytes of IHDR data.
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn an_image_whose_header_claims_too_many_pixels_is_refused_before_decoding() {
    let message = body_refusal(Kind::Tar, &with(file("train/a/huge.png", png_claiming(60_000))));
    assert_eq!(
        message,
        "train/a/huge.png is 60000x60000 pixels, more than the 1048576 pixels allowed in one image"
    );
    // The same trick within the cap reaches the decoder, which finds the data missing.
    let message = body_refusal(Kind::Tar, &with(file("train/a/lie.png", png_claiming(16))));
    assert!(message.starts_with("train/a/lie.png is not a valid image"), "{message}");
}

#[test]
fn truncated_and_corrupt_archives_are_refused() {
    for kind in KINDS {
        let mut bytes = std::fs::read(archive(kind, &three_classes("", true)).path()).unwrap();
        // In the middle of a 512-byte tar block.
        bytes.truncate(bytes.len() / 2 / 512 * 512 + 300);
        let (_, message) = refusal(&raw_file(&bytes), &options());
        assert!(message.starts_with("is a truncated"), "{kind:?}: {message}");
    }
    // The gzip checksum is checked, at the end of the stream.
    let mut bytes = std::fs::read(archive(Kind::TarGz, &three_classes("", true)).path()).unwrap();
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    let (_, message) = refusal(&raw_file(&bytes), &options());
    assert!(message.starts_with("is a truncated or corrupt archive"), "{message}");
}

#[test]
fn class_folders_and_idx_files_together_are_refused() {
    let message =
        body_refusal(Kind::Tar, &with(file("train-labels-idx1-ubyte", vec![0, 0, 8, 1, 0, 0, 0, 0])));
    assert_eq!(
        message,
        "holds both class folders (train/a/) and IDX files (train-labels-idx1-ubyte); send one layout only"
    );
}

#[test]
fn the_images_as_decoded_before_resizing_count_against_the_cap_and_odd_sizes_are_refused_unread() {
    // Two 64x64 RGB images are 24,576 bytes decoded, though `side` makes them 8x8.
    let items = [
        file("train/a/0.png", rgb_image(64, 64, ImageFormat::Png, |_, _| [1, 2, 3])),
        file("train/b/0.png", rgb_image(64, 64, ImageFormat::Png, |_, _| [3, 2, 1])),
    ];
    let small = archive(Kind::Tar, &items);
    let mut options = options();
    options.side = Some(8);
    options.max_expanded_bytes = 20_000;
    let (field, message) = refusal(&small, &options);
    assert_eq!(field, "body");
    assert!(message.contains("before any resize"), "{message}");
    options.max_expanded_bytes = 1 << 20;
    options.side = None;
    let big = |v| file(&format!("train/{v}/0.png"), gray_png(600, 600, |_, _| v as u8));
    let wide = archive(Kind::Tar, &[big('a'), big('b')]);
    let (field, message) = refusal(&wide, &options);
    assert_eq!((field.as_str(), message.contains("600x600")), ("side", true), "{message}");
}
