//! The class-folder layout (torchvision's ImageFolder) put together: classes are the folders
//! under `train/` in byte order of their names, as ImageFolder numbers them; images go in order
//! of class then file name, so the result does not depend on the order of the archive; one size
//! and one channel count are settled for all; a test split is held out of train/ when the
//! archive has none.

use std::collections::BTreeSet;

use super::collect::{Image, Part};
use super::decode::Pixels;
use super::{
    ImportError, ImportOptions, ImportedImages, Layout, check_class_count, check_output_size, empty_splits,
    held_out, invalid,
};

/// The data set from the class folders seen (`folders`) and their decoded `images`.
pub(super) fn assemble(
    folders: &BTreeSet<(Part, String)>,
    mut images: Vec<Image>,
    options: &ImportOptions,
) -> Result<ImportedImages, ImportError> {
    let classes: Vec<String> =
        folders.iter().filter(|(part, _)| *part == Part::Train).map(|(_, class)| class.clone()).collect();
    if classes.is_empty() {
        return Err(invalid(
            "has no train/<class>/ folders and no IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte)",
        ));
    }
    check_class_count(&classes, "train/", options)?;
    images.sort_by(|a, b| (a.part, &a.class, &a.name).cmp(&(b.part, &b.class, &b.name)));
    check_folders(folders, &classes, &images)?;
    let side = match options.side {
        Some(side) => side,
        None => own_side(&images)?,
    };
    let channels = if images.iter().all(|image| matches!(image.pixels, Pixels::Gray(_))) { 1 } else { 3 };
    check_output_size(images.len(), channels, side, options)?;
    let train_len = images.iter().filter(|image| image.part == Part::Train).count();
    let has_test = train_len < images.len();
    let held = if has_test { Vec::new() } else { held_out(train_len, options)? };
    let test_len = if has_test { images.len() - train_len } else { held.iter().filter(|h| **h).count() };
    let (mut train, mut test) = empty_splits(images.len() - test_len, test_len, channels * side * side);
    let mut held = held.into_iter();
    for image in images {
        let to_test = match image.part {
            Part::Test => true,
            Part::Train => held.next().unwrap_or(false),
        };
        let split = if to_test { &mut test } else { &mut train };
        let label = classes.binary_search(&image.class).unwrap_or_default();
        split.labels.push(label as u16);
        image.pixels.write_chw(channels, &mut split.pixels);
    }
    Ok(ImportedImages { classes, channels, side, train, test, layout: Layout::ClassFolders })
}

/// Refuses a train/ class without images, a test/ class that train/ lacks, test/ class folders
/// without any image, and one name twice; `images` are sorted.
fn check_folders(
    folders: &BTreeSet<(Part, String)>,
    classes: &[String],
    images: &[Image],
) -> Result<(), ImportError> {
    let has_images = |part: Part, class: &str| images.iter().any(|i| i.part == part && i.class == class);
    if let Some(class) = classes.iter().find(|class| !has_images(Part::Train, class)) {
        return Err(invalid(format!("class `{class}` has no images in train/")));
    }
    let mut test_classes = folders.iter().filter(|(part, _)| *part == Part::Test).map(|(_, class)| class);
    if let Some(class) = test_classes.clone().find(|class| classes.binary_search(class).is_err()) {
        return Err(invalid(format!("has a class `{class}` in test/ that train/ does not have")));
    }
    if test_classes.next().is_some() && !images.iter().any(|i| i.part == Part::Test) {
        return Err(invalid(
            "has class folders in test/ but no images in them; add images, or leave test/ out to hold out \
             part of train/",
        ));
    }
    if let Some(pair) = images.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(invalid(format!("holds {} twice", pair[0].name)));
    }
    Ok(())
}

/// The side of images kept at their own size: that of the first, which all must share.
fn own_side(images: &[Image]) -> Result<usize, ImportError> {
    let Some(first) = images.first() else {
        return Err(invalid("holds no images"));
    };
    let size = first.pixels.dimensions();
    let other = images.iter().find(|image| image.pixels.dimensions() != size);
    super::own_side((&first.name, size), other.map(|image| (image.name.as_str(), image.pixels.dimensions())))
}
