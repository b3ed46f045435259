//! The byte budget of one import and the readers that enforce it. [`Meter`] counts every byte
//! read out of the archive after decompression ([`Counted`]) and stops the read once past the
//! cap, so a decompression bomb costs at most the cap; it also remembers whether the archive
//! file itself failed to read ([`Watched`]). Whatever [`io::Error`] comes out of the stack of
//! readers, [`Meter::fail`] tells which of the three it was: server trouble, the cap, or a
//! corrupt archive.

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};

use super::{ImportError, invalid};

/// The byte budget of one import.
pub(super) struct Meter {
    limit: u64,
    used: Cell<u64>,
    exceeded: Cell<bool>,
    file_failed: Cell<bool>,
}

impl Meter {
    pub(super) fn new(limit: u64) -> Self {
        Self { limit, used: Cell::new(0), exceeded: Cell::new(false), file_failed: Cell::new(false) }
    }

    /// Bytes that may still be read.
    pub(super) fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used.get())
    }

    /// `inner`, with every byte read from it counted against the budget.
    pub(super) fn counted<R: Read>(&self, inner: R) -> Counted<'_, R> {
        Counted { inner, meter: self }
    }

    /// `inner`, the archive file itself, with its failures remembered.
    pub(super) fn watched<R>(&self, inner: R) -> Watched<'_, R> {
        Watched { inner, meter: self }
    }

    /// Whether a read has gone past the budget.
    pub(super) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// The refusal of an archive that expands past the budget.
    pub(super) fn bomb(&self) -> ImportError {
        self.exceeded.set(true);
        invalid(format!("expands past {} bytes when unpacked, the most this server accepts", self.limit))
    }

    /// What a failed read means: the file could not be read (server trouble), the budget ran
    /// out, or the archive is corrupt.
    pub(super) fn fail(&self, err: io::Error) -> ImportError {
        if self.file_failed.get() {
            ImportError::Io(err)
        } else if self.exceeded.get() {
            self.bomb()
        } else {
            invalid(format!("is a truncated or corrupt archive: {err}"))
        }
    }

    fn count(&self, n: usize) -> io::Result<()> {
        let used = self.used.get().saturating_add(n as u64);
        self.used.set(used);
        if used > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("the archive expands past the import's byte budget"));
        }
        Ok(())
    }
}

/// A reader whose bytes count against a [`Meter`].
pub(super) struct Counted<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.meter.count(0)?;
        let n = self.inner.read(buf)?;
        self.meter.count(n)?;
        Ok(n)
    }
}

/// The archive file, whose failures are server trouble rather than a corrupt upload.
pub(super) struct Watched<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if let Err(err) = &result
            && err.kind() != io::ErrorKind::Interrupted
        {
            self.meter.file_failed.set(true);
        }
        result
    }
}

/// Seeks are not watched: the one way they fail on a file is a position out of range, which a
/// corrupt zip asks for.
impl<R: Seek> Seek for Watched<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}
