//! A disk whose syncs can be made to hang, for the watchdog's tests: the operating system's
//! file system, except that while [`StallFs::stall`] is in force every `sync_data` of a file it
//! opened waits (as an `fdatasync` on a dying disk or a hung network share does) until
//! [`StallFs::release`].

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use super::{FileIo, Fs, OsFs};

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    stalled: bool,
    /// Syncs waiting at the gate.
    waiting: usize,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().expect("gate lock");
        s.waiting += 1;
        self.changed.notify_all();
        while s.stalled {
            s = self.changed.wait(s).expect("gate lock");
        }
        s.waiting -= 1;
    }

    fn set(&self, stalled: bool) {
        self.state.lock().expect("gate lock").stalled = stalled;
        self.changed.notify_all();
    }
}

/// See the module doc.
#[derive(Debug, Default, Clone)]
pub(crate) struct StallFs {
    gate: Arc<Gate>,
}

impl StallFs {
    /// Syncs from now on wait until [`StallFs::release`].
    pub(crate) fn stall(&self) {
        self.gate.set(true);
    }

    /// Blocks until a sync waits at the stall.
    pub(crate) fn wait_for_stalled_sync(&self) {
        let mut s = self.gate.state.lock().expect("gate lock");
        while s.waiting == 0 {
            s = self.gate.changed.wait(s).expect("gate lock");
        }
    }

    /// Lets every waiting and later sync through.
    pub(crate) fn release(&self) {
        self.gate.set(false);
    }
}

#[derive(Debug)]
struct StallFile {
    file: Arc<dyn FileIo>,
    gate: Arc<Gate>,
}

impl FileIo for StallFile {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        self.file.sync_data()
    }
}

impl Fs for StallFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        Ok(Arc::new(StallFile {
            file: OsFs.open(path, create)?,
            gate: Arc::clone(&self.gate),
        }))
    }

    fn exists(&self, path: &Path) -> bool {
        OsFs.exists(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        OsFs.create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        OsFs.sync_dir(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.hard_link(from, to)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsFs.read(path)
    }

    fn database(
        &self,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<redb::Database, redb::DatabaseError> {
        OsFs.database(path, cache_bytes)
    }
}
