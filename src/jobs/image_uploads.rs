//! What makes an image upload: the query options of `POST /datasets?kind=images`, checked into
//! an [`ImageUpload`], and the step that turns the complete archive into the file kiln stores —
//! decoded by [`crate::data::import`] within this server's caps, encoded by
//! [`crate::data::uploaded`] — one archive at a time, while the quota holds room for both.

use std::sync::Mutex;

use uuid::Uuid;

use super::quota::Reservation;
use super::uploads::TempUpload;
use super::{JobError, Jobs};
use crate::data::import::{ImportError, ImportOptions, MAX_SOURCE_PIXELS, import};
use crate::data::uploaded::{self, ImageSetInfo};
use crate::definition::FieldError;

/// Archives are decoded one at a time, server-wide: a decode holds up to `--max-decoded-bytes`
/// of memory and a core for as long as it takes, and uploads are rare next to training.
static DECODING: Mutex<()> = Mutex::new(());

/// Sides an image data set may be stored at.
const SIDES: std::ops::RangeInclusive<usize> = 8..=512;

/// What a valid image upload asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageUpload {
    pub side: Option<usize>,
    pub to_grayscale: bool,
    pub test_fraction: f64,
    pub seed: u64,
}

impl ImageUpload {
    /// The options `side`, `to_grayscale`, `test_fraction` and `seed` as the query sent them,
    /// with their defaults; each problem is recorded by its field.
    pub(super) fn from_query(query: [Option<&str>; 4], problem: &mut impl FnMut(&str, String)) -> Self {
        let [side, to_grayscale, test_fraction, seed] = query;
        let side = side.map(|side| match side.parse() {
            Ok(side) if SIDES.contains(&side) => side,
            _ => {
                let (lo, hi) = (SIDES.start(), SIDES.end());
                problem("side", format!("must be a whole number from {lo} to {hi} (got {side:?})"));
                *SIDES.start()
            }
        });
        let to_grayscale = match to_grayscale {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                problem("to_grayscale", format!("must be true or false (got {other:?})"));
                false
            }
        };
        let test_fraction = match test_fraction.map(str::parse::<f64>) {
            None => 0.1,
            Some(Ok(f)) if f > 0.0 && f <= 0.5 => f,
            Some(_) => {
                problem("test_fraction", "must be a number above 0 and at most 0.5".to_string());
                0.1
            }
        };
        let seed = match seed.map(str::parse::<u64>) {
            None => 0,
            Some(Ok(seed)) => seed,
            Some(Err(_)) => {
                problem("seed", "must be a whole number from 0 to 18446744073709551615".to_string());
                0
            }
        };
        Self { side, to_grayscale, test_fraction, seed }
    }
}

/// An archive's problem is the request's, naming its field (422); the server's own trouble
/// reading the file is not.
impl From<ImportError> for JobError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Invalid { field, message } => {
                JobError::Invalid(vec![FieldError { field: field.into(), message }])
            }
            ImportError::Io(e) => JobError::Io(e),
        }
    }
}

impl Jobs {
    /// Decodes the images of the complete `archive` of upload `id` into the file to store, not
    /// yet committed, and its info; the quota must hold both files for a moment. The archive is
    /// removed when the caller drops it. Blocking.
    pub(super) fn decode_images(
        &self,
        id: Uuid,
        archive: &TempUpload,
        upload: &ImageUpload,
        reservation: &mut Reservation,
    ) -> Result<(TempUpload, ImageSetInfo), JobError> {
        let config = self.config();
        let options = ImportOptions {
            side: upload.side,
            to_grayscale: upload.to_grayscale,
            test_fraction: upload.test_fraction,
            seed: upload.seed,
            max_classes: config.max_classes,
            max_expanded_bytes: config.max_decoded_bytes,
            max_image_pixels: MAX_SOURCE_PIXELS,
        };
        let imported = {
            let _one_at_a_time = DECODING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            import(archive.written_path(), &options)?
        };
        let (bytes, info) = uploaded::encode(&imported)
            .map_err(|e| JobError::Io(std::io::Error::other(format!("encoding an image set: {e}"))))?;
        drop(imported);
        reservation.grow_to(archive.len() + bytes.len() as u64)?;
        // The decoded file may be many times the archive the floor was checked for.
        super::disk::check_floor(config)?;
        let mut stored = TempUpload::create(config.uploaded_images_path(id), false)?;
        stored.append(&bytes)?;
        Ok((stored, info))
    }
}
