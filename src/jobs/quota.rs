//! [`UploadQuota`]: the most uploaded data sets a server stores (`--max-uploads`) and the most
//! bytes they take together (`--max-uploads-bytes`), uploads in progress included.
//!
//! The stored totals are read from the store at start and kept in memory, changed by each upload
//! that is stored, each data set adopted at start and each data set deleted. An upload in
//! progress holds a [`Reservation`]: one data set, and the bytes it declared (`Content-Length`) or
//! has received so far, growing as more arrive; a growth past either limit is refused. Every check
//! and change takes one mutex, so uploads running at the same time can never store more than the
//! limits together. Dropping a reservation (an upload refused, failed or cut off) gives its share
//! back; [`Reservation::commit`] turns it into a stored data set of its final size.

use std::sync::{Arc, Mutex, MutexGuard};

use super::error::JobError;

/// The quota on uploaded data sets; see the module docs.
#[derive(Debug)]
pub struct UploadQuota {
    max_uploads: usize,
    max_bytes: u64,
    tally: Arc<Mutex<Tally>>,
}

/// What is stored and what uploads in progress have reserved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    stored: usize,
    stored_bytes: u64,
    uploading: usize,
    reserved_bytes: u64,
}

/// One upload's share of the quota, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    max_bytes: u64,
    tally: Arc<Mutex<Tally>>,
    bytes: u64,
    /// Still counted among the uploads in progress.
    active: bool,
}

impl UploadQuota {
    /// A quota of `max_uploads` data sets and `max_bytes` bytes, of which `stored` data sets of
    /// `stored_bytes` bytes are taken.
    pub fn new(max_uploads: usize, max_bytes: u64, stored: usize, stored_bytes: u64) -> Self {
        let tally = Tally { stored, stored_bytes, ..Tally::default() };
        Self { max_uploads, max_bytes, tally: Arc::new(Mutex::new(tally)) }
    }

    /// Reserves one data set and `declared` bytes for a new upload, or says which limit it
    /// would pass.
    pub fn reserve(&self, declared: u64) -> Result<Reservation, JobError> {
        let mut tally = lock(&self.tally);
        if tally.stored + tally.uploading >= self.max_uploads {
            return Err(JobError::QuotaExceeded(format!(
                "this server stores at most {} uploaded data sets (--max-uploads); {} are stored and {} \
                 being uploaded: delete a data set first",
                self.max_uploads, tally.stored, tally.uploading
            )));
        }
        check_bytes(&tally, self.max_bytes, 0, declared)?;
        tally.uploading += 1;
        tally.reserved_bytes += declared;
        Ok(Reservation {
            max_bytes: self.max_bytes,
            tally: self.tally.clone(),
            bytes: declared,
            active: true,
        })
    }

    /// Counts a data set of `bytes` bytes stored without an upload (adopted at start).
    pub fn adopt_stored(&self, bytes: u64) {
        let mut tally = lock(&self.tally);
        tally.stored += 1;
        tally.stored_bytes += bytes;
    }

    /// Gives back what a deleted data set of `bytes` bytes took.
    pub fn release_stored(&self, bytes: u64) {
        let mut tally = lock(&self.tally);
        tally.stored = tally.stored.saturating_sub(1);
        tally.stored_bytes = tally.stored_bytes.saturating_sub(bytes);
    }
}

impl Reservation {
    /// Grows the reservation to `total` bytes, the upload's size so far; one within it already
    /// is left as it is.
    pub fn grow_to(&mut self, total: u64) -> Result<(), JobError> {
        if total <= self.bytes {
            return Ok(());
        }
        let mut tally = lock(&self.tally);
        check_bytes(&tally, self.max_bytes, self.bytes, total)?;
        tally.reserved_bytes += total - self.bytes;
        self.bytes = total;
        Ok(())
    }

    /// The upload is stored with `bytes` bytes: its reservation becomes a stored data set.
    pub fn commit(mut self, bytes: u64) {
        let tally = self.tally.clone();
        let mut tally = lock(&tally);
        tally.stored += 1;
        tally.stored_bytes += bytes;
        self.give_back(&mut tally);
    }

    /// Takes this upload out of the uploads in progress, once.
    fn give_back(&mut self, tally: &mut Tally) {
        if self.active {
            tally.uploading -= 1;
            tally.reserved_bytes -= self.bytes;
            self.active = false;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let tally = self.tally.clone();
        self.give_back(&mut lock(&tally));
    }
}

/// Refuses an upload that holds `held` bytes of the reservations and would hold `wanted`.
fn check_bytes(tally: &Tally, max_bytes: u64, held: u64, wanted: u64) -> Result<(), JobError> {
    let others = tally.reserved_bytes - held;
    if tally.stored_bytes + others + wanted <= max_bytes {
        return Ok(());
    }
    Err(JobError::QuotaExceeded(format!(
        "uploaded data sets may take at most {max_bytes} bytes together (--max-uploads-bytes); {} are \
         stored and {others} reserved by other uploads in progress, and this upload has at least \
         {wanted}",
        tally.stored_bytes
    )))
}

/// The tally; a panic elsewhere while holding it left plain numbers, still usable.
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(quota: &UploadQuota) -> Tally {
        *lock(&quota.tally)
    }

    fn refusal(result: Result<impl std::fmt::Debug, JobError>) -> String {
        match result {
            Err(JobError::QuotaExceeded(detail)) => detail,
            other => panic!("expected a quota refusal, got {other:?}"),
        }
    }

    #[test]
    fn uploads_in_progress_count_against_both_limits() {
        let quota = UploadQuota::new(3, 1000, 1, 400);
        let mut a = quota.reserve(0).unwrap();
        a.grow_to(300).unwrap();
        let mut b = quota.reserve(200).unwrap();
        assert_eq!(tally(&quota), Tally { stored: 1, stored_bytes: 400, uploading: 2, reserved_bytes: 500 });

        // 400 stored + 300 (a) + 301 (b) > 1000; b keeps what it had.
        let detail = refusal(b.grow_to(301));
        assert!(
            detail.contains("at most 1000 bytes together (--max-uploads-bytes); 400 are stored"),
            "{detail}"
        );
        assert!(
            detail.contains("300 reserved by other uploads") && detail.contains("at least 301"),
            "{detail}"
        );
        b.grow_to(150).unwrap();
        b.grow_to(300).unwrap();
        assert_eq!(tally(&quota).reserved_bytes, 600);

        // One stored and two in progress: no room for a fourth.
        let detail = refusal(quota.reserve(0));
        assert!(
            detail.contains("at most 3 uploaded data sets (--max-uploads); 1 are stored and 2"),
            "{detail}"
        );

        drop(a);
        assert_eq!(tally(&quota), Tally { stored: 1, stored_bytes: 400, uploading: 1, reserved_bytes: 300 });
        b.commit(250);
        assert_eq!(tally(&quota), Tally { stored: 2, stored_bytes: 650, uploading: 0, reserved_bytes: 0 });
        refusal(quota.reserve(351));
        let c = quota.reserve(350).unwrap();
        refusal(quota.reserve(0));
        drop(c);
        quota.release_stored(400);
        assert_eq!(tally(&quota), Tally { stored: 1, stored_bytes: 250, uploading: 0, reserved_bytes: 0 });
    }
}
