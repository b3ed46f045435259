//! The IDX layout (MNIST, Fashion-MNIST) put together: the images and labels files of the train
//! split and, optionally, of the test split (`t10k-` or `test-`), each header parsed strictly by
//! [`parse_idx`], counts matched, images resized to `side` when asked. Classes are named `0`, `1`,
//! … up to the largest label.

use std::path::Path;

use image::GrayImage;

use super::collect::{IdxFile, IdxKind};
use super::decode::resize_gray;
use super::{
    ImportError, ImportOptions, ImportedImages, Layout, Split, check_class_count, check_output_size,
    empty_splits, held_out, invalid, own_side,
};
use crate::data::DataError;
use crate::data::fashion_mnist::{IMAGES_MAGIC, LABELS_MAGIC, parse_idx};

/// The images and labels of one split, parsed.
struct Examples<'a> {
    /// Name of the images file in the archive.
    name: &'a str,
    /// Height and width.
    rows: usize,
    cols: usize,
    pixels: &'a [u8],
    labels: &'a [u8],
}

/// The data set from the IDX `files` of the archive.
pub(super) fn assemble(files: Vec<IdxFile>, options: &ImportOptions) -> Result<ImportedImages, ImportError> {
    let mut slots: [[Option<IdxFile>; 2]; 2] = Default::default();
    for file in files {
        let slot = &mut slots[file.part as usize][file.kind as usize];
        if let Some(seen) = slot {
            return Err(invalid(format!(
                "holds two IDX files for the same data: {} and {}",
                seen.name, file.name
            )));
        }
        *slot = Some(file);
    }
    let [[train_images, train_labels], [test_images, test_labels]] = slots;
    let train = pair(train_images, train_labels, "train")?;
    let test = pair(test_images, test_labels, "t10k")?;
    let Some((images, labels)) = &train else {
        return Err(invalid("has IDX test files but no train-images-idx3-ubyte and train-labels-idx1-ubyte"));
    };
    let train = parse(images, labels, options)?;
    let test = test.as_ref().map(|(images, labels)| parse(images, labels, options)).transpose()?;
    let largest = train.labels.iter().chain(test.iter().flat_map(|t| t.labels)).max().copied().unwrap_or(0);
    let classes: Vec<String> = (0..=largest).map(|label| label.to_string()).collect();
    check_class_count(&classes, "its IDX labels", options)?;
    // A label below the largest that no training image has would be a class without images.
    let mut seen = vec![false; classes.len()];
    train.labels.iter().for_each(|&label| seen[usize::from(label)] = true);
    if let Some(empty) = seen.iter().position(|seen| !seen) {
        return Err(invalid(format!(
            "class `{empty}` has no images in the IDX training labels (they go up to {largest}; labels are \
             numbered from 0 without gaps)"
        )));
    }
    let side = match options.side {
        Some(side) => side,
        None => {
            let size = |e: &Examples| (e.cols as u32, e.rows as u32);
            let other = test.as_ref().filter(|t| size(t) != size(&train)).map(|t| (t.name, size(t)));
            own_side((train.name, size(&train)), other)?
        }
    };
    let train_len = train.labels.len();
    let test_len = test.as_ref().map_or(0, |t| t.labels.len());
    check_output_size(train_len + test_len, 1, side, options)?;
    let (train, test) = match &test {
        Some(test) => (convert(&train, None, side)?.0, convert(test, None, side)?.0),
        None => convert(&train, Some(held_out(train_len, options)?.as_slice()), side)?,
    };
    Ok(ImportedImages { classes, channels: 1, side, train, test, layout: Layout::Idx })
}

/// The images and labels files of the split whose files start with `prefix`, both or neither.
fn pair(
    images: Option<IdxFile>,
    labels: Option<IdxFile>,
    prefix: &str,
) -> Result<Option<(IdxFile, IdxFile)>, ImportError> {
    match (images, labels) {
        (Some(images), Some(labels)) => Ok(Some((images, labels))),
        (None, None) => Ok(None),
        (Some(images), None) => {
            Err(invalid(format!("has {} but no {prefix}-labels-idx1-ubyte to go with it", images.name)))
        }
        (None, Some(labels)) => {
            Err(invalid(format!("has {} but no {prefix}-images-idx3-ubyte to go with it", labels.name)))
        }
    }
}

/// Parses one split's files, checking that they agree.
fn parse<'a>(
    images: &'a IdxFile,
    labels: &'a IdxFile,
    options: &ImportOptions,
) -> Result<Examples<'a>, ImportError> {
    debug_assert!(
        images.kind == IdxKind::Images && labels.kind == IdxKind::Labels && images.part == labels.part
    );
    let (dims, pixels) = parse_idx(&images.bytes, IMAGES_MAGIC, Path::new(&images.name)).map_err(not_idx)?;
    let (label_dims, label_bytes) =
        parse_idx(&labels.bytes, LABELS_MAGIC, Path::new(&labels.name)).map_err(not_idx)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if label_dims[0] != count {
        return Err(invalid(format!(
            "{} holds {} labels for the {count} images of {}",
            labels.name, label_dims[0], images.name
        )));
    }
    if count == 0 || rows == 0 || cols == 0 {
        return Err(invalid(format!("{} holds no images ({count} of {rows}x{cols})", images.name)));
    }
    if (rows as u64).saturating_mul(cols as u64) > options.max_image_pixels {
        return Err(invalid(format!(
            "{} holds images of {cols}x{rows} pixels, more than the {} pixels allowed in one image",
            images.name, options.max_image_pixels
        )));
    }
    Ok(Examples { name: &images.name, rows, cols, pixels, labels: label_bytes })
}

fn not_idx(err: DataError) -> ImportError {
    match err {
        DataError::Corrupt { path, reason } => invalid(format!("{path} is not a valid IDX file: {reason}")),
        other => invalid(other.to_string()),
    }
}

/// `examples` at `side` x `side`, split into train and test by `held` (all train without it).
fn convert(examples: &Examples, held: Option<&[bool]>, side: usize) -> Result<(Split, Split), ImportError> {
    let n = examples.labels.len();
    let test_len = held.map_or(0, |held| held.iter().filter(|h| **h).count());
    let (mut train, mut test) = empty_splits(n - test_len, test_len, side * side);
    let image_len = examples.rows * examples.cols;
    for (i, (image, label)) in examples.pixels.chunks_exact(image_len).zip(examples.labels).enumerate() {
        let split = if held.is_some_and(|held| held[i]) { &mut test } else { &mut train };
        split.labels.push(u16::from(*label));
        if examples.rows == side && examples.cols == side {
            split.pixels.extend_from_slice(image);
            continue;
        }
        let Some(image) = GrayImage::from_raw(examples.cols as u32, examples.rows as u32, image.to_vec())
        else {
            return Err(invalid(format!("{} holds images that cannot be resized", examples.name)));
        };
        split.pixels.extend_from_slice(resize_gray(image, side)?.as_raw());
    }
    Ok((train, test))
}
