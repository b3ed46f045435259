//! The archive container: which kind it is (by its first bytes, never its name) and its entries
//! one at a time, streaming. Tar is read through [`tar::Archive`] (behind
//! [`flate2::read::GzDecoder`] when gzipped), zip through [`zip::ZipArchive`]; every byte they
//! hand out passes through the [`Meter`]. Entries that could hurt an extractor — names that
//! leave the archive, links, devices — are refused here, so the layouts only ever see plain
//! files and folders with safe relative names.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::GzDecoder;
use tar::EntryType;

use super::meter::Meter;
use super::{ImportError, invalid};

/// Bytes read to tell the container apart: a tar header block.
const HEAD: usize = 512;

/// One file or folder of the archive.
pub(super) struct Entry<'r> {
    /// The name as stored in the archive, for messages.
    pub name: String,
    /// The name's components, without empty and `.` ones.
    pub components: Vec<String>,
    pub is_dir: bool,
    /// The content, counted against the budget (empty for a folder).
    pub data: &'r mut dyn Read,
}

/// What a caller does with each entry.
pub(super) type Visit<'v> = dyn FnMut(Entry<'_>) -> Result<(), ImportError> + 'v;

/// Calls `visit` with each file and folder of the archive at `path`, in archive order.
pub(super) fn for_each_entry(path: &Path, meter: &Meter, visit: &mut Visit<'_>) -> Result<(), ImportError> {
    let mut file = meter.watched(File::open(path)?);
    let head = read_head(&mut file).map_err(|e| meter.fail(e))?;
    file.seek(SeekFrom::Start(0))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        read_gzipped_tar(file, meter, visit)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        read_zip(BufReader::new(file), meter, visit)
    } else if is_tar(&head) {
        read_tar(meter.counted(BufReader::new(file)), meter, visit).map(drop)
    } else {
        Err(invalid("is not a tar, gzipped tar or zip archive"))
    }
}

/// Up to [`HEAD`] bytes from the start of `reader`.
fn read_head(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD);
    reader.take(HEAD as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Whether `head` starts a tar archive: a ustar (or GNU) header, or the zero block of an empty
/// archive.
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar") || (head.len() == HEAD && head.iter().all(|b| *b == 0))
}

fn read_gzipped_tar(file: impl Read, meter: &Meter, visit: &mut Visit<'_>) -> Result<(), ImportError> {
    let mut unzipped = meter.counted(GzDecoder::new(BufReader::new(file)));
    let head = read_head(&mut unzipped).map_err(|e| meter.fail(e))?;
    if !is_tar(&head) {
        return Err(invalid(
            "is gzip-compressed but holds no tar archive; gzip is accepted around a tar only",
        ));
    }
    let mut rest = read_tar(Cursor::new(head).chain(unzipped), meter, visit)?;
    // To the end of the gzip stream: its checksum is checked there, and padding past the tar
    // counts against the budget like the rest.
    io::copy(&mut rest, &mut io::sink()).map_err(|e| meter.fail(e))?;
    Ok(())
}

/// Reads the tar archive in `reader`, returning the reader positioned after it.
fn read_tar<R: Read>(reader: R, meter: &Meter, visit: &mut Visit<'_>) -> Result<R, ImportError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| meter.fail(e))? {
        let mut entry = entry.map_err(|e| meter.fail(e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let components = safe_components(&name)?;
        let is_dir = match kind {
            EntryType::Regular | EntryType::Continuous => false,
            EntryType::Directory => true,
            EntryType::Symlink | EntryType::Link => return Err(link(&name)),
            EntryType::Char | EntryType::Block | EntryType::Fifo => return Err(special(&name)),
            other => {
                return Err(invalid(format!(
                    "{name} is a tar entry of type {:?}, not a regular file or folder",
                    other.as_byte() as char
                )));
            }
        };
        let mut data = Whole { remaining: entry.size(), inner: &mut entry };
        visit_entry(visit, Entry { name, components, is_dir, data: &mut data })?;
    }
    Ok(archive.into_inner())
}

fn read_zip<R: Read + Seek>(file: R, meter: &Meter, visit: &mut Visit<'_>) -> Result<(), ImportError> {
    let zip_error = |err: zip::result::ZipError| match err {
        zip::result::ZipError::Io(err) => meter.fail(err),
        other => invalid(format!("is a truncated, corrupt or unsupported zip archive: {other}")),
    };
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(zip_error)?;
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        if file.enclosed_name().is_none() {
            return Err(escapes(&name));
        }
        let components = safe_components(&name)?;
        let is_dir = match file.unix_mode().map(|mode| mode & 0o170_000) {
            None | Some(0 | 0o100_000) => file.is_dir(),
            Some(0o040_000) => true,
            Some(0o120_000) => return Err(link(&name)),
            Some(_) => return Err(special(&name)),
        };
        let remaining = meter.remaining();
        if !is_dir && file.size() > remaining {
            return Err(meter.bomb());
        }
        // The declared size is only a claim: the read itself is capped.
        let mut data = meter.counted((&mut file).take(remaining.saturating_add(1)));
        visit_entry(visit, Entry { name, components, is_dir, data: &mut data })?;
    }
    Ok(())
}

/// Hands `entry` to `visit`, except a folder named `.` or `./`; a file needs a name.
fn visit_entry(visit: &mut Visit<'_>, entry: Entry<'_>) -> Result<(), ImportError> {
    match (entry.components.is_empty(), entry.is_dir) {
        (false, _) => visit(entry),
        (true, true) => Ok(()),
        (true, false) => Err(invalid(format!("has a file with no name (`{}`)", entry.name))),
    }
}

/// The components of entry name `name`, refusing any that would leave the archive: absolute
/// names, `..`, backslashes and drive letters (which mean something on Windows), NUL bytes.
fn safe_components(name: &str) -> Result<Vec<String>, ImportError> {
    if name.starts_with('/') || name.contains(['\\', '\0']) {
        return Err(escapes(name));
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component.as_bytes() {
            [] | b"." => {}
            b".." => return Err(escapes(name)),
            [drive, b':', ..] if drive.is_ascii_alphabetic() => return Err(escapes(name)),
            _ => components.push(component.to_string()),
        }
    }
    Ok(components)
}

fn escapes(name: &str) -> ImportError {
    invalid(format!("{name} points outside the archive; entry names must be relative paths without `..`"))
}

fn link(name: &str) -> ImportError {
    invalid(format!("{name} is a link; links are not allowed, only regular files and folders"))
}

fn special(name: &str) -> ImportError {
    invalid(format!("{name} is a device or FIFO; only regular files and folders are allowed"))
}

/// A tar entry's data, which must be as long as its header says: the tar reader ends a file cut
/// short without a word.
struct Whole<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Whole<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of a file",
            ));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}
