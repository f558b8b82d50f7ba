//! The file operations that make the queue and the image store durable, behind a trait, so that
//! the power-loss tests can run them on a simulated disk (`fsio/sim.rs`) that keeps what was
//! synced and loses, or tears, what was not. The write-ahead log, the redb file (through redb's
//! `StorageBackend`) and stored images go through [`Fs`]; everything else uses `std::fs` directly.

use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open file.
pub(crate) trait FileIo: Send + Sync + fmt::Debug {
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// (Only redb's backend on the simulated disk sets sizes; the real redb file has its own.)
    #[cfg_attr(not(test), allow(dead_code))]
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data, and its size, durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// A file system.
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    /// Opens a file for reading and writing, creating it (empty) if `create` and it is missing.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, linked, renamed or removed in it) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Links `to` to the file at `from`; `AlreadyExists` if `to` exists.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates or opens the redb database at `path`.
    fn database(
        &self,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<redb::Database, redb::DatabaseError>;
}

/// Reads a whole file.
pub(crate) fn read_all(file: &dyn FileIo) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
    let mut bytes = vec![0; len];
    file.read_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OsFs;

impl OsFs {
    pub(crate) fn shared() -> Arc<dyn Fs> {
        Arc::new(OsFs)
    }
}

#[derive(Debug)]
struct OsFile(std::fs::File);

impl FileIo for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Fs for OsFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn database(
        &self,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<redb::Database, redb::DatabaseError> {
        let mut builder = redb::Database::builder();
        builder.set_cache_size(cache_bytes);
        builder.create(path)
    }
}

/// redb's storage on one of our files (the simulated disk's; the real one uses redb's own).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Backend(pub(crate) Arc<dyn FileIo>);

#[cfg(test)]
impl redb::StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(data, offset)
    }
}

#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
pub(crate) mod stall;
