//! The file system that holds the data directory: its size and free space (statvfs of the data
//! directory itself, so a small tmpfs or a separate `/var` partition is what is reported), the
//! bytes the data directory itself holds (a walk of it, at most every [`Disk::SIZE_EVERY`]), the
//! low-water mark under which spheroseg takes no new images and reports itself not ready, and
//! whether a write was refused for lack of space since the last one that succeeded (or since the
//! free space grew by [`Disk::RECOVERED`], so that a server nobody writes to while it reports
//! itself not ready still becomes ready once space is freed).
//!
//! The queue keeps its own account of refused commits (`Queue::disk_full`); this one is the
//! image store's and the health check's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The low-water mark when none is configured: 1 GiB, or 2 % of the file system if that is less.
const DEFAULT_LOW_WATER: u64 = 1 << 30;

/// Whether an I/O error means no space is left (ENOSPC, or EDQUOT for a user's quota).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether an error, or any error it was caused by, is [`is_full`]; the storage engine's I/O
/// errors included.
pub fn caused_by_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && is_full(io)
        {
            return true;
        }
        if let Some(redb::Error::Io(io)) = e.downcast_ref::<redb::Error>()
            && is_full(io)
        {
            return true;
        }
        if let Some(redb::StorageError::Io(io)) = e.downcast_ref::<redb::StorageError>()
            && is_full(io)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The file system under a path, as statvfs and the mount table see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    /// Its mount point (the longest one that holds the path).
    pub mount: Option<PathBuf>,
    /// Its type, e.g. `ext4` or `tmpfs`.
    pub fs_type: Option<String>,
    pub total_bytes: u64,
    /// What an unprivileged process may still write.
    pub available_bytes: u64,
}

impl Filesystem {
    /// The file system that holds `path`; `None` if statvfs fails on it.
    pub fn of(path: &Path) -> Option<Filesystem> {
        let (total_bytes, available_bytes) = space(path)?;
        let (mount, fs_type) = mount_of(path).unzip();
        Some(Filesystem {
            mount,
            fs_type,
            total_bytes,
            available_bytes,
        })
    }
}

/// The total and available bytes of the file system that holds `path` (statvfs alone: no
/// mount table, so cheap enough for every upload).
fn space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((
        s.f_blocks.saturating_mul(s.f_frsize),
        s.f_bavail.saturating_mul(s.f_frsize),
    ))
}

/// The longest mount point in the mount table that holds `path`, and its type.
fn mount_of(path: &Path) -> Option<(PathBuf, String)> {
    let path = path.canonicalize().ok()?;
    let table = std::fs::read_to_string("/proc/self/mounts").ok()?;
    table
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            // The table escapes spaces and other odd bytes as octal: `\040`.
            let at = PathBuf::from(unescape(at));
            path.starts_with(&at).then(|| (at, kind.to_owned()))
        })
        .max_by_key(|(at, _)| at.as_os_str().len())
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What [`Disk::status`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    #[serde(flatten)]
    pub filesystem: Filesystem,
    /// Free space under this takes no new images and makes spheroseg not ready.
    pub low_water_bytes: u64,
    /// Free space is under the low-water mark.
    pub low: bool,
    /// The last write of an image failed for lack of space (and none has succeeded since).
    pub refused: Option<String>,
}

/// The data directory's file system, watched.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    /// Configured low-water mark; `None` is the default rule.
    low_water: Option<u64>,
    /// Why the last write was refused, and the free bytes then.
    refused: Mutex<Option<(String, u64)>>,
    /// The data directory's bytes, and when they were counted.
    size: Mutex<Option<(Instant, u64)>>,
}

impl Disk {
    /// Free space grown by this much (or by a sixteenth of the file system, if less) since a
    /// refused write counts as room again.
    pub const RECOVERED: u64 = 16 << 20;

    /// Watches the file system of `dir` with a low-water mark of `low_water_mb` MiB (0 for the
    /// default: 1 GiB or 2 %, whichever is smaller).
    pub fn new(dir: &Path, low_water_mb: u64) -> Disk {
        Disk {
            dir: dir.to_owned(),
            low_water: (low_water_mb > 0).then_some(low_water_mb << 20),
            refused: Mutex::new(None),
            size: Mutex::new(None),
        }
    }

    /// How long a count of the data directory's bytes is reused: a lab's directory holds
    /// thousands of images, and the status page asks every few seconds.
    pub const SIZE_EVERY: Duration = Duration::from_secs(30);

    /// Bytes in the files under the data directory (images, the database and its log, work
    /// files), counted at most every [`Disk::SIZE_EVERY`]. Symbolic links are not followed.
    pub fn data_bytes(&self) -> u64 {
        let mut size = self.size.lock().expect("disk size lock");
        match *size {
            Some((at, bytes)) if at.elapsed() < Self::SIZE_EVERY => bytes,
            _ => {
                let bytes = tree_bytes(&self.dir, 0);
                *size = Some((Instant::now(), bytes));
                bytes
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The low-water mark for a file system of `total` bytes.
    pub fn low_water(&self, total: u64) -> u64 {
        self.low_water
            .unwrap_or_else(|| DEFAULT_LOW_WATER.min(total / 50))
    }

    pub fn status(&self) -> DiskStatus {
        let filesystem = Filesystem::of(&self.dir).unwrap_or_default();
        let low_water_bytes = self.low_water(filesystem.total_bytes);
        let refused = {
            let mut r = self.refused.lock().expect("disk lock");
            let grown = Self::RECOVERED.min(filesystem.total_bytes / 16);
            if r.as_ref().is_some_and(|(_, free)| {
                filesystem.available_bytes >= free.saturating_add(grown).max(low_water_bytes)
            }) {
                *r = None;
            }
            r.as_ref().map(|(why, _)| why.clone())
        };
        DiskStatus {
            low: filesystem.total_bytes > 0 && filesystem.available_bytes < low_water_bytes,
            low_water_bytes,
            refused,
            filesystem,
        }
    }

    /// Free bytes, if the file system has fallen under its low-water mark.
    pub fn below_low_water(&self) -> Option<u64> {
        let (total, available) = space(&self.dir)?;
        (total > 0 && available < self.low_water(total)).then_some(available)
    }

    /// A write failed for lack of space.
    pub fn refused(&self, what: String) {
        let free = Filesystem::of(&self.dir).map_or(0, |f| f.available_bytes);
        *self.refused.lock().expect("disk lock") = Some((what, free));
    }

    /// A write succeeded.
    pub fn wrote(&self) {
        let mut r = self.refused.lock().expect("disk lock");
        if r.is_some() {
            *r = None;
        }
    }

    /// Free space in MB (decimal, as `df -H` shows it).
    pub fn free_mb(&self) -> u64 {
        Filesystem::of(&self.dir).map_or(0, |f| f.available_bytes / 1_000_000)
    }
}

/// Bytes in the regular files under `dir`, at most [`MAX_DEPTH`] levels down.
fn tree_bytes(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        } else if meta.is_dir() && depth < MAX_DEPTH {
            total = total.saturating_add(tree_bytes(&entry.path(), depth + 1));
        }
    }
    total
}

/// How deep [`tree_bytes`] looks: the data directory's own layout is two or three levels.
const MAX_DEPTH: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_system_of_the_directory_itself_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Filesystem::of(dir.path()).expect("statvfs");
        assert!(fs.total_bytes > 0 && fs.available_bytes <= fs.total_bytes);
        let mount = fs.mount.expect("a mount point");
        assert!(dir.path().canonicalize().expect("canon").starts_with(mount));
        assert!(fs.fs_type.is_some());
    }

    #[test]
    fn the_default_low_water_is_a_gib_or_two_percent() {
        let d = Disk::new(Path::new("/"), 0);
        assert_eq!(d.low_water(100 << 30), 1 << 30);
        assert_eq!(d.low_water(10 << 30), (10 << 30) / 50);
        assert_eq!(Disk::new(Path::new("/"), 64).low_water(100 << 30), 64 << 20);
    }

    #[test]
    fn refused_until_a_write_succeeds_or_space_is_freed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Disk::new(dir.path(), 0);
        d.refused("an upload".into());
        assert_eq!(d.status().refused.as_deref(), Some("an upload"));
        d.wrote();
        assert_eq!(d.status().refused, None);
        // Refused when the disk had (say) no room: the free space there now is far more.
        *d.refused.lock().expect("lock") = Some(("an upload".into(), 0));
        let fs = Filesystem::of(dir.path()).expect("statvfs");
        let grown = Disk::RECOVERED
            .min(fs.total_bytes / 16)
            .max(d.low_water(fs.total_bytes));
        assert_eq!(d.status().refused.is_none(), fs.available_bytes >= grown);
    }

    #[test]
    fn mount_table_escapes_are_read() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/odd\x"), r"/odd\x");
    }

    #[test]
    fn full_is_found_through_the_storage_engine() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = redb::Error::from(redb::StorageError::Io(full));
        assert!(caused_by_full(&e));
        let other = redb::Error::from(redb::StorageError::Io(std::io::Error::other("eio")));
        assert!(!caused_by_full(&other));
    }
}
