//! Room the queue keeps back for its own recovery: a file beside the database (`<db>.reserve`,
//! as CockroachDB keeps a ballast file), removed the moment a commit fails for lack of space. The
//! writer then redoes its log into the database at once, so reads stay current (every
//! acknowledged job visible, counts right) while changes are refused, and it takes changes again
//! only once the file could be made again and as much is free beside it: the next full disk
//! finds the same room.
//!
//! The file is allocated (`fallocate`), not sparse, and where the file system cannot allocate
//! it is written with bytes that do not compress to nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The reserve is at most this fraction of its file system's size (it matters only on tiny ones).
const MAX_SHARE: u64 = 4;

#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// The reserve of the database at `db`: `bytes` (0: none), at most a quarter of the file system.
    pub(crate) fn new(db: &Path, bytes: u64) -> Reserve {
        Reserve {
            path: db.with_extension("reserve"),
            bytes,
        }
    }

    /// The size it should have: `bytes`, at most a quarter of the file system that holds it.
    fn size(&self) -> u64 {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        match crate::disk::Filesystem::of(dir) {
            Some(fs) if fs.total_bytes > 0 => self.bytes.min(fs.total_bytes / MAX_SHARE),
            _ => self.bytes,
        }
    }

    /// Makes the file if it is missing or short. `Ok(false)`: there is no room for it yet.
    pub(crate) fn ensure(&self) -> io::Result<bool> {
        if self.bytes == 0 {
            return Ok(true);
        }
        let want = self.size();
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.len() >= want
            && m.blocks() * 512 >= want
        {
            return Ok(true);
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        match allocate(&file, want).and_then(|()| file.sync_all()) {
            Ok(()) => {
                tracing::debug!(path = %self.path.display(), bytes = want, "space reserved for the queue's recovery");
                Ok(true)
            }
            Err(e) if crate::disk::is_full(&e) => {
                drop(file);
                // Whatever part of it was made is room the queue needs now.
                let _ = std::fs::remove_file(&self.path);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// After a full disk: the reserve is made again and as much is free beside it, so the queue
    /// does not take changes again for the few bytes a refused batch left.
    pub(crate) fn room_again(&self) -> io::Result<bool> {
        if self.bytes == 0 || !self.ensure()? {
            return Ok(self.bytes == 0);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Ok(crate::disk::Filesystem::of(dir).is_none_or(|fs| fs.available_bytes >= self.size()))
    }

    /// Frees the room; `true` if there was a file to remove.
    pub(crate) fn release(&self) -> bool {
        if self.bytes == 0 {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(path = %self.path.display(), "the disk is full: freed the queue's reserved space to bring the database up to date");
                true
            }
            Err(_) => false,
        }
    }
}

/// Allocates `len` bytes of `file`.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use rustix::io::Errno;
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
            // Bytes no file system compresses away or deduplicates into nothing.
            let mut chunk = vec![0u8; 1 << 20];
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for b in &mut chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let mut at = 0;
            while at < len {
                let n = (len - at).min(chunk.len() as u64) as usize;
                file.write_all_at(&chunk[..n], at)?;
                at += n as u64;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_made_once_freed_on_release_and_made_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserve::new(&dir.path().join("q.redb"), 1 << 20);
        assert!(r.ensure().expect("room"));
        let m = std::fs::metadata(dir.path().join("q.reserve")).expect("made");
        assert_eq!(m.len(), 1 << 20);
        assert!(m.blocks() * 512 >= 1 << 20, "allocated, not sparse");
        assert!(r.ensure().expect("kept"));
        assert!(r.release());
        assert!(!dir.path().join("q.reserve").exists());
        assert!(!r.release(), "nothing left to free");
        assert!(r.ensure().expect("room again"));
        assert!(dir.path().join("q.reserve").exists());
    }

    #[test]
    fn none_is_made_when_it_is_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserve::new(&dir.path().join("q.redb"), 0);
        assert!(r.ensure().expect("nothing to do"));
        assert!(!dir.path().join("q.reserve").exists());
        assert!(!r.release());
    }
}
