//! Uploaded image data sets as kiln stores them: decoded once at upload, then one safetensors
//! file per set, so that a job never decodes a PNG or a JPEG and a NumPy user can read the file
//! as it is (`safetensors.numpy.load_file`).
//!
//! The file holds four tensors — `train.images` and `test.images` (`uint8`, `[n, channels, side,
//! side]`) and `train.labels` and `test.labels` (`uint16`, `[n]`) — and, in the header's
//! metadata under `kiln`, the [`ImageSetInfo`] as JSON: class names in label order, channels,
//! side and counts. [`read_info`] reads the header alone (validation asks it at submit);
//! [`load`] reads the whole file and checks the tensors against the info ([`verify`] only
//! checks).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::import::{ImportedImages, Split};
use super::{DataError, ImageSet, ImageShape};

/// The metadata key of the set's description.
const META_KEY: &str = "kiln";
/// The longest header [`read_info`] reads: a thousand long class names fit.
const MAX_HEADER_BYTES: u64 = 4 << 20;

/// What an uploaded image data set holds, as its file's header records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageSetInfo {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height and width of every image.
    pub side: usize,
    /// Images in the training split.
    pub train: usize,
    /// Images in the test split.
    pub test: usize,
}

impl ImageSetInfo {
    /// The shape of one image.
    pub fn shape(&self) -> ImageShape {
        ImageShape { channels: self.channels, height: self.side, width: self.side }
    }
}

/// The file's bytes for `images`, and its info.
pub fn encode(images: &ImportedImages) -> Result<(Vec<u8>, ImageSetInfo), safetensors::SafeTensorError> {
    let info = ImageSetInfo {
        classes: images.classes.clone(),
        channels: images.channels,
        side: images.side,
        train: images.train.labels.len(),
        test: images.test.labels.len(),
    };
    let image = [images.channels, images.side, images.side];
    let labels = |split: &Split| split.labels.iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<u8>>();
    let (train_labels, test_labels) = (labels(&images.train), labels(&images.test));
    let tensors = [
        ("train.images", TensorView::new(Dtype::U8, dims(info.train, image), &images.train.pixels)?),
        ("train.labels", TensorView::new(Dtype::U16, vec![info.train], &train_labels)?),
        ("test.images", TensorView::new(Dtype::U8, dims(info.test, image), &images.test.pixels)?),
        ("test.labels", TensorView::new(Dtype::U16, vec![info.test], &test_labels)?),
    ];
    let json = serde_json::to_string(&info).expect("an image set's info serializes");
    let bytes = safetensors::serialize(tensors, Some(HashMap::from([(META_KEY.to_string(), json)])))?;
    Ok((bytes, info))
}

fn dims(n: usize, image: [usize; 3]) -> Vec<usize> {
    vec![n, image[0], image[1], image[2]]
}

/// The info in the header of the image set at `path`, without reading its images.
pub fn read_info(path: &Path) -> Result<ImageSetInfo, DataError> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(corrupt(path, format!("a header of {len} bytes")));
    }
    let mut header = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut header).map_err(|e| io(path, e))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| corrupt(path, format!("header: {e}")))?;
    let info = header.get("__metadata__").and_then(|m| m.get(META_KEY)).and_then(|v| v.as_str());
    let info = info.ok_or_else(|| corrupt(path, "no kiln metadata in the header".to_string()))?;
    serde_json::from_str(info).map_err(|e| corrupt(path, format!("kiln metadata: {e}")))
}

/// Both splits of the image set at `path`, pixels scaled to `[0, 1]`, and its info.
pub fn load(path: &Path) -> Result<(ImageSet, ImageSet, ImageSetInfo), DataError> {
    let (train, test, info) = read(path, true)?;
    Ok((train.expect("read with pixels"), test.expect("read with pixels"), info))
}

/// The info of the image set at `path`, once the whole file is checked as [`load`] checks it,
/// without converting its pixels.
pub fn verify(path: &Path) -> Result<ImageSetInfo, DataError> {
    Ok(read(path, false)?.2)
}

/// Reads and checks the image set at `path`: its splits (with their pixels as floats when
/// `pixels`) and its info.
fn read(path: &Path, pixels: bool) -> Result<(Option<ImageSet>, Option<ImageSet>, ImageSetInfo), DataError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    // The header is in `bytes` already: no second read of the file.
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    let info = header.metadata().as_ref().and_then(|m| m.get(META_KEY));
    let info = info.ok_or_else(|| corrupt(path, "no kiln metadata in the header".to_string()))?;
    let info: ImageSetInfo =
        serde_json::from_str(info).map_err(|e| corrupt(path, format!("kiln metadata: {e}")))?;
    let split = |name: &str, n: usize| -> Result<Option<ImageSet>, DataError> {
        let images = file.tensor(&format!("{name}.images")).map_err(|e| corrupt(path, e.to_string()))?;
        let labels = file.tensor(&format!("{name}.labels")).map_err(|e| corrupt(path, e.to_string()))?;
        let shape = info.shape();
        let expected = dims(n, [shape.channels, shape.height, shape.width]);
        if images.dtype() != Dtype::U8 || images.shape() != expected {
            return Err(corrupt(path, format!("{name}.images is not uint8 {expected:?}")));
        }
        if labels.dtype() != Dtype::U16 || labels.shape() != [n] {
            return Err(corrupt(path, format!("{name}.labels is not uint16 [{n}]")));
        }
        let labels: Vec<u16> =
            labels.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        if let Some(bad) = labels.iter().find(|l| usize::from(**l) >= info.classes.len()) {
            return Err(corrupt(path, format!("{name} has label {bad} of {} classes", info.classes.len())));
        }
        if !pixels {
            return Ok(None);
        }
        let pixels = images.data().iter().map(|p| f32::from(*p) / 255.0).collect();
        Ok(Some(ImageSet { shape, pixels, labels, resize: None }))
    };
    Ok((split("train", info.train)?, split("test", info.test)?, info))
}

fn io(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io { path: path.display().to_string(), source }
}

fn corrupt(path: &Path, reason: String) -> DataError {
    DataError::Corrupt { path: path.display().to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::import::Layout;

    fn images() -> ImportedImages {
        let pixels = |n: usize| (0..n * 3 * 4 * 4).map(|i| (i * 7 % 256) as u8).collect();
        ImportedImages {
            classes: vec!["cat".into(), "dog".into(), "emu".into()],
            channels: 3,
            side: 4,
            train: Split { pixels: pixels(5), labels: vec![0, 1, 2, 1, 0] },
            test: Split { pixels: pixels(2), labels: vec![2, 2] },
            layout: Layout::ClassFolders,
        }
    }

    #[test]
    fn an_image_set_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.safetensors");
        let (bytes, info) = encode(&images()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_info(&path).unwrap(), info);
        assert_eq!((info.train, info.test, info.side, info.channels), (5, 2, 4, 3));
        let (train, test, read) = load(&path).unwrap();
        assert_eq!(read, info);
        assert_eq!(train.labels, [0, 1, 2, 1, 0]);
        assert_eq!(test.labels, [2, 2]);
        assert_eq!(train.shape, ImageShape { channels: 3, height: 4, width: 4 });
        assert_eq!(train.pixels.len(), 5 * 48);
        assert_eq!(train.pixels[1], 7.0 / 255.0);
    }

    #[test]
    fn a_label_past_the_classes_or_a_cut_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.safetensors");
        let mut bad = images();
        bad.train.labels[3] = 3;
        std::fs::write(&path, encode(&bad).unwrap().0).unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("train has label 3 of 3 classes"), "{message}");

        let bytes = encode(&images()).unwrap().0;
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(load(&path), Err(DataError::Corrupt { .. })));
        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(matches!(read_info(&path), Err(DataError::Corrupt { .. })));
    }
}
