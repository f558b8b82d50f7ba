//! The image store: original images under `data_dir/images/`, named by their SHA-256.
//!
//! Storing checks the image first: its header against the decode limits (before any pixel buffer
//! exists), then a full decode inside the process's decode budget, so a non-image, a truncated
//! file or an oversized one is refused here, not found by a worker later. The bytes go to a temp
//! file of their own under `images/incoming/` (unique per request, so identical uploads at the
//! same moment cannot collide), are fsynced, and are linked into place without replacing a file
//! that is already there: an image once stored is never rewritten. Then the directory is fsynced;
//! only after that may an enqueue commit refer to it.
//!
//! Every store returns a [`Pin`] on the hash, which the caller holds until its enqueue has
//! committed. The garbage collector skips pinned hashes and decides and deletes under the same
//! lock, so it cannot remove a file between an upload finding it already stored and that upload's
//! commit; a new job for an image already stored (a rerun) pins it with [`ImageStore::pin_stored`]
//! the same way. It removes image files and previews no job refers to, and temp files no request holds
//! (what a crash left): `images/garbage.rs`. Previews for browsers are in `images/preview.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::disk::Disk;
use crate::error_code::ErrorCode;
use crate::fsio::{Fs, OsFs};
use crate::segment::decode::Encoded;
use crate::segment::decode::{DecodeError, DecodeLimits, Header, decode_from, probe_from};
use crate::segment::{DecodeBudget, Decoded};
use decoded::DecodedCache;
use serde::{Deserialize, Serialize};

/// How long a check waits for the decode budget before the request is refused as busy.
const BUDGET_WAIT: Duration = Duration::from_secs(5);
/// The most bytes of images decoded at upload kept for their jobs.
const DECODED_CAP: u64 = 256 << 20;

/// An image in the store: a content-addressed file under `data_dir/images/`, as jobs refer to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Lowercase hex content hash; also the file name in the image store.
    pub hash: String,
    /// The name the image arrived with (upload file name or path), for people and exports.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Why an image was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    /// The bytes are not an image spheroseg accepts.
    #[error("{name}: {source}")]
    Refused { name: String, source: DecodeError },
    /// Decoding it alone would need more memory than the whole decode budget.
    #[error(
        "{name}: decoding this image needs {needed_mb} MiB, more than the decode budget of {budget_mb} MiB (limits.decode_budget_mb)"
    )]
    OverBudget {
        name: String,
        needed_mb: u64,
        budget_mb: u64,
    },
    /// Smaller than the segmenter it is for can work on.
    #[error(
        "{name}: the image is {width}×{height}; the segmenter needs at least {min}×{min} pixels"
    )]
    TooSmall {
        name: String,
        width: u32,
        height: u32,
        min: u32,
    },
    /// Other images hold the decode budget; the same request may succeed in a moment.
    #[error(
        "busy decoding other images ({in_use_mb} of {budget_mb} MiB of the decode budget in use); try again in a few seconds"
    )]
    Busy { in_use_mb: u64, budget_mb: u64 },
    /// The disk holding the data directory is full.
    #[error("disk full: {free_mb} MB free on {}; free some space and try again", dir.display())]
    DiskFull { dir: PathBuf, free_mb: u64 },
    /// The file system failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImageStoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ImageStoreError::Refused { source, .. } => source.code(),
            ImageStoreError::OverBudget { .. } => ErrorCode::IMAGE_TOO_LARGE,
            ImageStoreError::TooSmall { .. } => ErrorCode::IMAGE_TOO_SMALL,
            ImageStoreError::Busy { .. } => ErrorCode::BUSY,
            ImageStoreError::DiskFull { .. } => ErrorCode::DISK_FULL,
            ImageStoreError::Io { .. } if self.is_missing() => ErrorCode::IMAGE_MISSING,
            ImageStoreError::Io { .. } => ErrorCode::IO_ERROR,
        }
    }

    /// The stored file is not there (removed behind the store's back).
    pub fn is_missing(&self) -> bool {
        matches!(self, ImageStoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A stored image and the pin that keeps the collector off it until the caller's commit.
#[derive(Debug)]
pub struct Stored {
    pub image: ImageRef,
    pub pin: Pin,
}

/// Holds a hash out of garbage collection while it lives.
#[derive(Debug)]
pub struct Pin {
    pins: Arc<Mutex<HashMap<String, usize>>>,
    hash: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().expect("pins lock");
        if let Some(n) = pins.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.hash);
            }
        }
    }
}

/// A temp file an upload streams into (from [`ImageStore::incoming`]); removed when dropped
/// unless stored.
#[derive(Debug)]
pub struct Incoming {
    path: PathBuf,
    /// Open since it was created, for [`ImageStore::put`] to write without opening it again.
    file: Arc<dyn crate::fsio::FileIo>,
    live: Arc<Mutex<HashSet<PathBuf>>>,
    fs: Arc<dyn Fs>,
}

impl Incoming {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = self.fs.remove_file(&self.path);
        self.live.lock().expect("incoming lock").remove(&self.path);
    }
}

/// Content-addressed originals.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
    data_dir: PathBuf,
    limits: DecodeLimits,
    budget: DecodeBudget,
    pins: Arc<Mutex<HashMap<String, usize>>>,
    /// Temp files requests are writing.
    live: Arc<Mutex<HashSet<PathBuf>>>,
    /// Images with a side shorter than this are refused (see [`ImageStore::requiring`]).
    min_side: u32,
    /// What the checks decoded, kept for the workers (`images/decoded.rs`).
    decoded: Arc<DecodedCache>,
    /// The data directory's file system: under its low-water mark no image is taken.
    disk: Arc<Disk>,
    /// Where stored images are written, linked and synced (the power-loss tests simulate it).
    fs: Arc<dyn Fs>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageStoreError + '_ {
    move |source| ImageStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ImageStore {
    /// Opens (or creates) `data_dir/images`, with no decode budget of its own (see
    /// [`ImageStore::with_budget`]).
    pub fn open(data_dir: &Path, limits: DecodeLimits) -> Result<Self, ImageStoreError> {
        Self::open_on(OsFs::shared(), data_dir, limits)
    }

    /// [`ImageStore::open`] on the file system `fs` (the power-loss tests' simulated disk).
    pub(crate) fn open_on(
        fs: Arc<dyn Fs>,
        data_dir: &Path,
        limits: DecodeLimits,
    ) -> Result<Self, ImageStoreError> {
        let dir = data_dir.join("images");
        let incoming = dir.join("incoming");
        if !fs.exists(&incoming) {
            fs.create_dir_all(&incoming).map_err(io(&dir))?;
            // The new directories must survive a power cut with the files put in them.
            for d in [data_dir, &dir] {
                fs.sync_dir(d).map_err(io(d))?;
            }
        }
        Ok(ImageStore {
            dir,
            data_dir: data_dir.to_owned(),
            limits,
            budget: DecodeBudget::default(),
            pins: Arc::default(),
            live: Arc::default(),
            min_side: 1,
            decoded: Arc::new(DecodedCache::new(DECODED_CAP)),
            disk: Arc::new(Disk::new(data_dir, 0)),
            fs,
        })
    }

    /// Watches `disk` (shared with the health checks) instead of a default one.
    pub fn with_disk(mut self, disk: Arc<Disk>) -> Self {
        self.disk = disk;
        self
    }

    pub fn disk(&self) -> &Arc<Disk> {
        &self.disk
    }

    /// Refuses new images while the file system is under its low-water mark.
    fn room(&self) -> Result<(), ImageStoreError> {
        match self.disk.below_low_water() {
            Some(free) => Err(ImageStoreError::DiskFull {
                dir: self.data_dir.clone(),
                free_mb: free / 1_000_000,
            }),
            None => Ok(()),
        }
    }

    /// Checks images inside `budget`, shared with the workers; a quarter of it (at most 256 MiB)
    /// holds images decoded at upload for their jobs.
    pub fn with_budget(mut self, budget: DecodeBudget) -> Self {
        self.decoded = Arc::new(DecodedCache::new((budget.total() / 4).min(DECODED_CAP)));
        self.budget = budget;
        self
    }

    /// The same store, refusing images with a side shorter than `min_side` (what the segmenter
    /// they are for can work on).
    pub fn requiring(&self, min_side: u32) -> Self {
        ImageStore {
            min_side,
            ..self.clone()
        }
    }

    pub fn budget(&self) -> &DecodeBudget {
        &self.budget
    }

    /// What the decoder may accept.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Where the image with this hash lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        Self::file_in(&self.data_dir, hash)
    }

    /// An I/O error, as disk-full (with the free space) when it is one.
    pub fn io_error(&self, path: &Path, e: std::io::Error) -> ImageStoreError {
        if crate::disk::is_full(&e) {
            self.disk
                .refused(format!("writing {} failed: {e}", path.display()));
            ImageStoreError::DiskFull {
                dir: self.data_dir.clone(),
                free_mb: self.disk.free_mb(),
            }
        } else {
            io(path)(e)
        }
    }

    fn pin(&self, hash: &str) -> Pin {
        *self
            .pins
            .lock()
            .expect("pins lock")
            .entry(hash.to_owned())
            .or_default() += 1;
        Pin {
            pins: Arc::clone(&self.pins),
            hash: hash.to_owned(),
        }
    }

    /// Pins the stored image `hash` for a new job that refers to it without storing it again (a
    /// rerun), if the image is still there. Pinned first, then looked for: the collector either
    /// removed it before (`None`) or cannot remove it until the pin drops.
    pub fn pin_stored(&self, hash: &str) -> Option<Pin> {
        let pin = self.pin(hash);
        self.fs.exists(&self.path(hash)).then_some(pin)
    }

    /// A fresh temp file for an upload being streamed to disk.
    pub fn incoming(&self) -> Result<Incoming, ImageStoreError> {
        self.room()?;
        let path = self
            .dir
            .join("incoming")
            .join(format!("{}.tmp", uuid::Uuid::now_v7()));
        self.live
            .lock()
            .expect("incoming lock")
            .insert(path.clone());
        let file = match self.fs.open(&path, true) {
            Ok(file) => file,
            Err(e) => {
                // Whatever the failed open left behind goes, as an `Incoming` dropped would.
                let _ = self.fs.remove_file(&path);
                self.live.lock().expect("incoming lock").remove(&path);
                return Err(self.io_error(&path, e));
            }
        };
        Ok(Incoming {
            path,
            file,
            live: Arc::clone(&self.live),
            fs: Arc::clone(&self.fs),
        })
    }

    /// Checks an encoded image: header within the limits, then a full decode inside the budget.
    fn check<E: Encoded>(
        &self,
        input: &E,
        name: &str,
    ) -> Result<(Header, Decoded), ImageStoreError> {
        let refused = |source| ImageStoreError::Refused {
            name: name.to_owned(),
            source,
        };
        let header = probe_from(input, &self.limits).map_err(refused)?;
        if header.width.min(header.height) < self.min_side {
            return Err(ImageStoreError::TooSmall {
                name: name.to_owned(),
                width: header.width,
                height: header.height,
                min: self.min_side,
            });
        }
        let needed = header.footprint().decode_bytes();
        if needed > self.budget.total() {
            return Err(ImageStoreError::OverBudget {
                name: name.to_owned(),
                needed_mb: needed >> 20,
                budget_mb: self.budget.total() >> 20,
            });
        }
        let _reserved = self
            .budget
            .reserve(needed, BUDGET_WAIT)
            .ok_or_else(|| self.busy())?;
        let decoded = decode_from(input, &self.limits).map_err(refused)?;
        Ok((header, decoded))
    }

    /// The image of `hash` as its upload check decoded it, if it is still kept (once).
    pub fn take_decoded(&self, hash: &str) -> Option<Arc<Decoded>> {
        self.decoded.take(hash)
    }

    fn busy(&self) -> ImageStoreError {
        ImageStoreError::Busy {
            in_use_mb: self.budget.in_use() >> 20,
            budget_mb: self.budget.total() >> 20,
        }
    }

    /// Checks and stores `bytes`; durable on return. `name` is kept for people, never used as a
    /// path.
    pub fn put(&self, bytes: &[u8], name: &str) -> Result<Stored, ImageStoreError> {
        let (header, decoded) = self.check(&bytes, name)?;
        let hash = content_hash(bytes);
        let pin = self.pin(&hash);
        if !self.fs.exists(&self.path(&hash)) {
            // (`incoming` refuses under the low-water mark.)
            let tmp = self.incoming()?;
            let write = || -> std::io::Result<()> {
                tmp.file.write_at(bytes, 0)?;
                tmp.file.sync_data()
            };
            write().map_err(|e| self.io_error(tmp.path(), e))?;
            self.link(&tmp, &hash)?;
        }
        self.decoded.keep(&hash, decoded);
        Ok(Stored {
            image: image_ref(hash, name, &header, bytes.len() as u64),
            pin,
        })
    }

    /// Checks and stores an upload already written to `tmp` (from [`ImageStore::incoming`]): the
    /// file is decoded to check it, hashed as a stream, and linked into place, so the request
    /// body is never held in memory whole. The temp file is gone afterwards, stored or refused.
    pub fn put_upload(&self, tmp: Incoming, name: &str) -> Result<Stored, ImageStoreError> {
        let (header, decoded) = self.check(&tmp.path(), name)?;
        let mut file = std::fs::File::open(tmp.path()).map_err(io(tmp.path()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(io(tmp.path()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        let hash = hex(&hasher.finalize());
        let pin = self.pin(&hash);
        if !self.fs.exists(&self.path(&hash)) {
            file.sync_all().map_err(|e| self.io_error(tmp.path(), e))?;
            self.link(&tmp, &hash)?;
        }
        self.decoded.keep(&hash, decoded);
        Ok(Stored {
            image: image_ref(hash, name, &header, bytes),
            pin,
        })
    }

    /// Makes a synced temp file the image `hash` unless one is there already (which then stays
    /// as it is), and syncs the directory.
    fn link(&self, tmp: &Incoming, hash: &str) -> Result<(), ImageStoreError> {
        let path = self.path(hash);
        let parent = path.parent().expect("image paths have a fan-out directory");
        if !self.fs.exists(parent) {
            self.fs
                .create_dir_all(parent)
                .map_err(|e| self.io_error(parent, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| self.io_error(&self.dir, e))?;
        }
        match self.fs.hard_link(tmp.path(), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            // A file system without hard links: rename, unless the image arrived meanwhile.
            Err(_) if !self.fs.exists(&path) => self
                .fs
                .rename(tmp.path(), &path)
                .map_err(|e| self.io_error(&path, e))?,
            Err(_) => return Ok(()),
        }
        self.fs
            .sync_dir(parent)
            .map_err(|e| self.io_error(parent, e))?;
        self.disk.wrote();
        Ok(())
    }

    /// Reads and stores a local file.
    pub fn put_path(&self, path: &Path) -> Result<Stored, ImageStoreError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.put(&bytes, &name)
    }

    /// The original bytes.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>, ImageStoreError> {
        let path = self.path(hash);
        self.fs.read(&path).map_err(io(&path))
    }
}

fn image_ref(hash: String, name: &str, header: &Header, bytes: u64) -> ImageRef {
    ImageRef {
        hash,
        name: name.chars().take(255).collect(),
        width: header.width,
        height: header.height,
        bytes,
    }
}

/// The image store's name for `bytes`: their SHA-256, lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

mod copy;
mod decoded;
mod garbage;
mod preview;
mod stored;

pub use copy::copy_store;

#[cfg(test)]
mod tests;
