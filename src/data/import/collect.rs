//! Sorting the archive's entries as they stream past: which are images of a class folder
//! (`[top/]train/<class>/<file>`, `[top/]test/<class>/<file>`; decoded on the spot, so only
//! pixels are kept), which are IDX files (by base name, anywhere), which are skipped (folders,
//! hidden entries, `__MACOSX/`) and which are refused (anything else). [`Collected::finish`]
//! says which layout the archive turned out to use, and hands over what it gathered.

use std::collections::BTreeSet;
use std::io::Read;

use flate2::read::GzDecoder;

use super::container::Entry;
use super::decode::{Pixels, decode};
use super::meter::Meter;
use super::{ImportError, ImportOptions, invalid};

/// The training or the test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Part {
    Train,
    Test,
}

impl Part {
    fn from_folder(name: &str) -> Option<Self> {
        match name {
            "train" => Some(Self::Train),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// The two files of an IDX split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdxKind {
    Images,
    Labels,
}

/// A decoded image of a class folder.
#[derive(Debug)]
pub(super) struct Image {
    pub part: Part,
    pub class: String,
    /// Its name in the archive.
    pub name: String,
    pub pixels: Pixels,
}

/// An IDX file, decompressed if it was gzipped.
#[derive(Debug)]
pub(super) struct IdxFile {
    pub part: Part,
    pub kind: IdxKind,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Where an entry belongs.
#[derive(Debug, PartialEq)]
enum Place {
    Skip,
    /// A class folder, or a hidden file in one: the class exists, with or without images.
    Folder {
        top: Option<String>,
        part: Part,
        class: String,
    },
    Image {
        top: Option<String>,
        part: Part,
        class: String,
    },
    Idx(Part, IdxKind),
    Stray,
}

/// What an archive held, in the one layout it used.
pub(super) enum Gathered {
    /// Every class folder seen (with or without images), and the images.
    Folders(BTreeSet<(Part, String)>, Vec<Image>),
    Idx(Vec<IdxFile>),
}

/// What the archive held, so far.
#[derive(Debug, Default)]
pub(super) struct Collected {
    entries: usize,
    /// The folder that wraps the class folders (`Some(None)`: none, they are at the top).
    top: Option<Option<String>>,
    /// Every class folder seen, with or without images.
    folders: BTreeSet<(Part, String)>,
    images: Vec<Image>,
    idx: Vec<IdxFile>,
    /// Bytes of decoded pixels so far.
    decoded: u64,
    /// Bytes of the images as decoded before any resize, so far.
    source: u64,
}

impl Collected {
    /// Takes in one entry of the archive.
    pub(super) fn add(
        &mut self,
        entry: Entry<'_>,
        meter: &Meter,
        options: &ImportOptions,
    ) -> Result<(), ImportError> {
        self.entries += 1;
        let name = entry.components.join("/");
        match place(&entry.components, entry.is_dir) {
            Place::Skip => Ok(()),
            Place::Stray => Err(invalid(format!(
                "{name} is neither in a class folder (train/<class>/ or test/<class>/) nor an IDX file"
            ))),
            Place::Folder { top, part, class } => {
                self.note_top(top, &name)?;
                self.folders.insert((part, class));
                Ok(())
            }
            Place::Image { top, part, class } => {
                self.note_top(top, &name)?;
                self.folders.insert((part, class.clone()));
                let bytes = read_all(entry.data, meter)?;
                let pixels = decode(&name, &bytes, options, &mut self.source)?;
                self.decoded = self.decoded.saturating_add(pixels.len());
                if self.decoded > options.max_expanded_bytes {
                    return Err(invalid(format!(
                        "decodes to more than {} bytes of pixels, the most this server accepts",
                        options.max_expanded_bytes
                    )));
                }
                self.images.push(Image { part, class, name, pixels });
                Ok(())
            }
            Place::Idx(part, kind) => {
                let mut bytes = read_all(entry.data, meter)?;
                if name.ends_with(".gz") {
                    bytes = gunzip(&bytes, &name, meter)?;
                }
                self.idx.push(IdxFile { part, kind, name, bytes });
                Ok(())
            }
        }
    }

    /// Checks that class folders all sit in the same place: at the top, or in one folder.
    fn note_top(&mut self, top: Option<String>, name: &str) -> Result<(), ImportError> {
        let place = |top: &Option<String>| match top {
            Some(top) => format!("inside {top}/"),
            None => "at the top of the archive".to_string(),
        };
        match &self.top {
            None => self.top = Some(top),
            Some(seen) if *seen == top => {}
            Some(seen) => {
                return Err(invalid(format!(
                    "{name} is {}, but the other class folders are {}; put train/ and test/ in one place",
                    place(&top),
                    place(seen)
                )));
            }
        }
        Ok(())
    }

    /// The data set, in the layout the archive used.
    pub(super) fn finish(self) -> Result<Gathered, ImportError> {
        if self.entries == 0 {
            return Err(invalid("is an empty archive"));
        }
        match (self.idx.first(), self.folders.first()) {
            (Some(file), Some((part, class))) => Err(invalid(format!(
                "holds both class folders ({}/{class}/) and IDX files ({}); send one layout only",
                if *part == Part::Train { "train" } else { "test" },
                file.name
            ))),
            (Some(_), None) => Ok(Gathered::Idx(self.idx)),
            (None, _) => Ok(Gathered::Folders(self.folders, self.images)),
        }
    }
}

/// Where the entry with name `components` belongs.
fn place(components: &[String], is_dir: bool) -> Place {
    let hidden = |c: &String| c.starts_with('.') || c == "__MACOSX";
    // `part/class` for a folder, `part/class/file` for a file, perhaps inside a `top/`.
    let depth = if is_dir { 2 } else { 3 };
    let (top, rest) = match components.len() {
        n if n == depth => (None, components),
        n if n == depth + 1 => (Some(components[0].clone()), &components[1..]),
        _ => (None, &[][..]),
    };
    let class = match rest {
        [part, class, ..] if !hidden(part) && !hidden(class) && !top.as_ref().is_some_and(hidden) => {
            Part::from_folder(part).map(|part| (part, class.clone()))
        }
        _ => None,
    };
    let is_hidden = components.iter().any(hidden);
    match class {
        Some((part, class)) if is_dir || is_hidden => Place::Folder { top, part, class },
        _ if is_dir || is_hidden => Place::Skip,
        class => match (components.last().and_then(|name| idx_slot(name)), class) {
            (Some((part, kind)), _) => Place::Idx(part, kind),
            (None, Some((part, class))) => Place::Image { top, part, class },
            (None, None) => Place::Stray,
        },
    }
}

/// The split and kind of an IDX file with base name `name`: `train-`, `t10k-` or `test-`, then
/// `images-idx3-ubyte` or `labels-idx1-ubyte` (or with `.idx` for `-idx`), optionally `.gz`.
fn idx_slot(name: &str) -> Option<(Part, IdxKind)> {
    let name = name.strip_suffix(".gz").unwrap_or(name).replace(".idx", "-idx");
    let (part, kind) = name.split_once('-')?;
    let part = match part {
        "train" => Part::Train,
        "t10k" | "test" => Part::Test,
        _ => return None,
    };
    match kind {
        "images-idx3-ubyte" => Some((part, IdxKind::Images)),
        "labels-idx1-ubyte" => Some((part, IdxKind::Labels)),
        _ => None,
    }
}

/// The rest of `data`.
fn read_all(data: &mut dyn Read, meter: &Meter) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).map_err(|e| meter.fail(e))?;
    Ok(bytes)
}

/// Gzipped entry `name`, decompressed within the budget.
fn gunzip(bytes: &[u8], name: &str, meter: &Meter) -> Result<Vec<u8>, ImportError> {
    let mut out = Vec::new();
    meter.counted(GzDecoder::new(bytes)).read_to_end(&mut out).map_err(|e| {
        if meter.exceeded() { meter.bomb() } else { invalid(format!("{name} is not a valid gzip file: {e}")) }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str, is_dir: bool) -> Place {
        place(&path.split('/').map(String::from).collect::<Vec<_>>(), is_dir)
    }

    #[test]
    fn entries_are_placed_by_their_path() {
        let image = |top: Option<&str>, part, class: &str| Place::Image {
            top: top.map(String::from),
            part,
            class: class.to_string(),
        };
        assert_eq!(at("train/cat/a.png", false), image(None, Part::Train, "cat"));
        assert_eq!(at("data/test/dog/b.jpg", false), image(Some("data"), Part::Test, "dog"));
        let folder = Place::Folder { top: None, part: Part::Train, class: "cat".into() };
        assert_eq!(at("train/cat", true), folder);
        assert_eq!(at("train/cat/.DS_Store", false), folder);
        assert_eq!(at("data/train", true), Place::Skip);
        assert_eq!(at("__MACOSX/train/cat/._a.png", false), Place::Skip);
        assert_eq!(at("train/.ipynb_checkpoints/a.png", false), Place::Skip);
        assert_eq!(at("README.md", false), Place::Stray);
        assert_eq!(at("train/cat/deeper/a.png", false), Place::Stray);
        assert_eq!(at("mnist/raw/t10k-labels-idx1-ubyte.gz", false), Place::Idx(Part::Test, IdxKind::Labels));
        assert_eq!(at("train-images.idx3-ubyte", false), Place::Idx(Part::Train, IdxKind::Images));
        assert_eq!(at("val-images-idx3-ubyte", false), Place::Stray);
    }
}
