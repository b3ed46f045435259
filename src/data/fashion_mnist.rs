//! Fashion-MNIST from its four IDX files, gzipped or not.
//!
//! Searched in `<data-dir>/datasets/fashion-mnist/` first, then in
//! `/usr/share/datasets/fashion-mnist/` (Debian's `dataset-fashion-mnist`). Every header is
//! checked: magic number, dimensions, and that images and labels agree in count.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, ImageSet, ImageShape};

/// Where Debian's package `dataset-fashion-mnist` installs the files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The class names, in label order, as the data set's authors give them.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Examples in the training split.
pub const TRAIN_LEN: usize = 60_000;

pub(super) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(super) const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first directory that holds all four files.
pub fn locate(datasets_dir: &Path) -> Result<PathBuf, String> {
    let candidates = [datasets_dir.join("fashion-mnist"), PathBuf::from(SYSTEM_DIR)];
    for dir in &candidates {
        let complete = ["train", "t10k"].iter().all(|split| {
            ["images-idx3-ubyte", "labels-idx1-ubyte"].iter().all(|kind| find(dir, split, kind).is_some())
        });
        if complete {
            return Ok(dir.clone());
        }
    }
    Err("fashion_mnist is not installed on this server: install Debian's package dataset-fashion-mnist \
         (apt-get install dataset-fashion-mnist) or put train-images-idx3-ubyte, train-labels-idx1-ubyte, \
         t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz) in the server's \
         <data-dir>/datasets/fashion-mnist/"
        .to_string())
}

fn find(dir: &Path, split: &str, kind: &str) -> Option<PathBuf> {
    let plain = dir.join(format!("{split}-{kind}"));
    let gz = dir.join(format!("{split}-{kind}.gz"));
    [gz, plain].into_iter().find(|p| p.is_file())
}

fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes).map_err(io)?;
    } else {
        file.read_to_end(&mut bytes).map_err(io)?;
    }
    Ok(bytes)
}

/// Parses an IDX file with `magic`, returning its dimensions and payload. Also reads the IDX
/// files of uploaded archives (`import`), where `path` is the file's name in the archive.
pub(super) fn parse_idx<'a>(
    bytes: &'a [u8],
    magic: u32,
    path: &Path,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let corrupt = |reason: String| DataError::Corrupt { path: path.display().to_string(), reason };
    let word = |i: usize| bytes.get(4 * i..4 * i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let found = word(0).ok_or_else(|| corrupt("shorter than an IDX header".into()))?;
    if found != magic {
        return Err(corrupt(format!("magic number {found:#010x}, expected {magic:#010x}")));
    }
    let rank = (magic & 0xff) as usize;
    let dims: Vec<usize> = (1..=rank)
        .map(|i| word(i).map(|d| d as usize).ok_or_else(|| corrupt("truncated header".into())))
        .collect::<Result<_, _>>()?;
    let payload = &bytes[4 * (rank + 1)..];
    let expected = dims
        .iter()
        .try_fold(1usize, |product, d| product.checked_mul(*d))
        .ok_or_else(|| corrupt(format!("dimensions {dims:?} are too large")))?;
    if payload.len() != expected {
        return Err(corrupt(format!("{} bytes of data, the header promises {expected}", payload.len())));
    }
    Ok((dims, payload))
}

/// Loads split `train` or `t10k` from `dir`.
pub fn load(dir: &Path, split: &str) -> Result<ImageSet, DataError> {
    let missing = |kind: &str| DataError::Missing(format!("{}/{split}-{kind} is missing", dir.display()));
    let images_path = find(dir, split, "images-idx3-ubyte").ok_or_else(|| missing("images-idx3-ubyte"))?;
    let labels_path = find(dir, split, "labels-idx1-ubyte").ok_or_else(|| missing("labels-idx1-ubyte"))?;
    let image_bytes = read_all(&images_path)?;
    let label_bytes = read_all(&labels_path)?;
    let (dims, pixels) = parse_idx(&image_bytes, IMAGES_MAGIC, &images_path)?;
    let (label_dims, labels) = parse_idx(&label_bytes, LABELS_MAGIC, &labels_path)?;
    let corrupt =
        |path: &Path, reason: String| DataError::Corrupt { path: path.display().to_string(), reason };
    if dims[1..] != [28, 28] {
        return Err(corrupt(
            &images_path,
            format!("images are {}x{}, Fashion-MNIST's are 28x28", dims[1], dims[2]),
        ));
    }
    if dims[0] != label_dims[0] {
        return Err(corrupt(&labels_path, format!("{} labels for {} images", label_dims[0], dims[0])));
    }
    if let Some(bad) = labels.iter().find(|l| **l >= 10) {
        return Err(corrupt(&labels_path, format!("label {bad} is not a class 0-9")));
    }
    Ok(ImageSet {
        shape: ImageShape { channels: 1, height: dims[1], width: dims[2] },
        pixels: pixels.iter().map(|p| f32::from(*p) / 255.0).collect(),
        labels: labels.iter().map(|l| u16::from(*l)).collect(),
        resize: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn write_split(dir: &Path, split: &str, n: u32, gz: bool) {
        let images = idx(IMAGES_MAGIC, &[n, 28, 28], &vec![255u8; n as usize * 784]);
        let labels = idx(LABELS_MAGIC, &[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
        for (name, bytes) in [("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)] {
            if gz {
                let file = File::create(dir.join(format!("{split}-{name}.gz"))).unwrap();
                let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                enc.finish().unwrap();
            } else {
                std::fs::write(dir.join(format!("{split}-{name}")), bytes).unwrap();
            }
        }
    }

    #[test]
    fn reads_plain_and_gzipped_files_from_the_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fashion-mnist");
        std::fs::create_dir_all(&dir).unwrap();
        write_split(&dir, "train", 12, true);
        write_split(&dir, "t10k", 3, false);
        assert_eq!(locate(root.path()).unwrap(), dir);
        let train = load(&dir, "train").unwrap();
        assert_eq!(train.len(), 12);
        assert_eq!(train.labels[11], 1);
        assert_eq!(train.pixels[0], 1.0);
        assert_eq!(load(&dir, "t10k").unwrap().len(), 3);
    }

    #[test]
    fn rejects_bad_magic_and_truncated_payloads_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("x");
        let err = parse_idx(&idx(0x0000_0802, &[1], &[0]), LABELS_MAGIC, &path).unwrap_err();
        assert!(err.to_string().contains("magic number"), "{err}");
        let err = parse_idx(&idx(LABELS_MAGIC, &[5], &[0, 1]), LABELS_MAGIC, &path).unwrap_err();
        assert!(err.to_string().contains("the header promises 5"), "{err}");
        assert!(err.to_string().starts_with(&path.display().to_string()));

        let dir = root.path().join("small");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte"), idx(IMAGES_MAGIC, &[2, 8, 8], &[0; 128]))
            .unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(LABELS_MAGIC, &[2], &[0, 1])).unwrap();
        let err = load(&dir, "train").unwrap_err();
        assert!(err.to_string().contains("images are 8x8, Fashion-MNIST's are 28x28"), "{err}");
    }
}
