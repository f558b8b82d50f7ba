//! A simulated disk for power-loss tests, after redb's `crash_consistency` tests and Jepsen's
//! LazyFS: every file has a durable copy and a volatile one. Writes and size changes go to the
//! volatile copy and are remembered; `sync_data` makes the file's volatile copy durable. Directory
//! changes (create, link, rename, remove, mkdir) are remembered per directory and become durable
//! when that directory is synced.
//!
//! [`SimFs::power_cut`] returns the disk as it comes back after the power failed: every file's
//! durable copy plus a random subset of its unsynced writes, in order, each kept whole, dropped,
//! or torn at 512-byte sectors (some sectors reached the platter, some did not, and a sector
//! written in part may lose the bytes it held before, as a drive rewriting it would); and a random
//! prefix of the unsynced directory changes (a journal replays in order). Handles from before
//! the cut refuse every call, as a dead process's would.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proptest::prelude::Rng;

use super::{Backend, FileIo, Fs};

const SECTOR: u64 = 512;

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<Change>,
}

/// What a directory entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

/// One directory change, and the directory (or directories) whose sync makes it durable.
#[derive(Clone, Debug)]
struct DirChange {
    dirs: Vec<PathBuf>,
    /// Names set (`Some`) or removed (`None`) by the change.
    names: Vec<(PathBuf, Option<Entry>)>,
}

#[derive(Debug, Default)]
struct State {
    /// Incremented by a power cut: handles of an earlier epoch are dead.
    epoch: u64,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// The names as the running process sees them.
    names: BTreeMap<PathBuf, Entry>,
    /// The names as they are on disk.
    durable_names: BTreeMap<PathBuf, Entry>,
    unsynced_dirs: Vec<DirChange>,
    /// Bytes of file contents the disk holds at most: past it, writes fail with ENOSPC.
    capacity: Option<u64>,
    /// Every sync fails with EIO (a dying disk).
    failing_syncs: bool,
    /// Counters, for the test's report.
    syncs: u64,
    writes: u64,
}

impl State {
    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }

    fn change_dir(&mut self, change: DirChange) {
        for (name, entry) in &change.names {
            match entry {
                Some(e) => {
                    self.names.insert(name.clone(), *e);
                }
                None => {
                    self.names.remove(name);
                }
            }
        }
        self.unsynced_dirs.push(change);
    }

    fn apply_durable(&mut self, change: &DirChange) {
        for (name, entry) in &change.names {
            match entry {
                Some(e) => {
                    self.durable_names.insert(name.clone(), *e);
                }
                None => {
                    self.durable_names.remove(name);
                }
            }
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn apply(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
        Change::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

/// The simulated disk. Cheap to clone: clones share it.
#[derive(Clone, Debug, Default)]
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    epoch: u64,
}

fn dead() -> io::Error {
    io::Error::other("the process that opened this file lost power")
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.state.lock().expect("sim lock");
        if s.epoch != self.epoch {
            return Err(dead());
        }
        f(&mut s, self.inode)
    }
}

impl FileIo for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|s, i| Ok(s.inodes[&i].current.len() as u64))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|s, i| {
            let cur = &s.inodes[&i].current;
            let end = offset as usize + buf.len();
            if end > cur.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf.copy_from_slice(&cur[offset as usize..end]);
            Ok(())
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|s, i| {
            let grows =
                (offset + buf.len() as u64).saturating_sub(s.inodes[&i].current.len() as u64);
            if s.capacity.is_some_and(|c| s.used() + grows > c) {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let change = Change::Write {
                offset,
                data: buf.to_vec(),
            };
            s.writes += 1;
            let inode = s.inodes.get_mut(&i).expect("inode");
            apply(&mut inode.current, &change);
            inode.unsynced.push(change);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|s, i| {
            let grows = len.saturating_sub(s.inodes[&i].current.len() as u64);
            if s.capacity.is_some_and(|c| s.used() + grows > c) {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let inode = s.inodes.get_mut(&i).expect("inode");
            let change = Change::SetLen(len);
            apply(&mut inode.current, &change);
            inode.unsynced.push(change);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|s, i| {
            if s.failing_syncs {
                return Err(io::Error::other("EIO: the disk failed the write-back"));
            }
            s.syncs += 1;
            let inode = s.inodes.get_mut(&i).expect("inode");
            inode.durable = inode.current.clone();
            inode.unsynced.clear();
            Ok(())
        })
    }
}

impl SimFs {
    /// A disk that holds at most `bytes` of file contents.
    pub(crate) fn with_capacity(bytes: u64) -> SimFs {
        let fs = SimFs::default();
        fs.state.lock().expect("sim lock").capacity = Some(bytes);
        fs
    }

    /// Changes the most file contents the disk holds (`None`: no limit).
    pub(crate) fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().expect("sim lock").capacity = bytes;
    }

    /// Bytes of file contents on the disk now.
    pub(crate) fn used(&self) -> u64 {
        self.state.lock().expect("sim lock").used()
    }

    /// Makes every later sync fail (or work again).
    pub(crate) fn fail_syncs(&self, failing: bool) {
        self.state.lock().expect("sim lock").failing_syncs = failing;
    }

    /// Calls `sync_data` and directory syncs made so far, and writes.
    pub(crate) fn counters(&self) -> (u64, u64) {
        let s = self.state.lock().expect("sim lock");
        (s.syncs, s.writes)
    }

    /// The disk after a power cut at this moment (see the module doc); this one is dead.
    pub(crate) fn power_cut(&self, rng: &mut impl Rng) -> SimFs {
        let mut s = self.state.lock().expect("sim lock");
        let mut after = State {
            epoch: s.epoch + 1,
            next_inode: s.next_inode,
            capacity: s.capacity,
            ..State::default()
        };
        // A journal replays a prefix of the directory changes.
        let pending = std::mem::take(&mut s.unsynced_dirs);
        let kept = (rng.next_u32() as usize) % (pending.len() + 1);
        for change in &pending[..kept] {
            s.apply_durable(change);
        }
        after.durable_names = s.durable_names.clone();
        after.names = s.durable_names.clone();
        for (&ino, inode) in &s.inodes {
            let mut bytes = inode.durable.clone();
            for change in &inode.unsynced {
                match (rng.next_u32() % 3, change) {
                    (0, _) => {}
                    (1, c) => apply(&mut bytes, c),
                    (_, Change::Write { offset, data }) => {
                        // Torn: each sector it covers reached the disk or did not.
                        let (start, end) = (*offset, offset + data.len() as u64);
                        let mut at = start;
                        while at < end {
                            let next = ((at / SECTOR) + 1) * SECTOR;
                            let piece = (at - start) as usize..(next.min(end) - start) as usize;
                            let partial = piece.len() < SECTOR as usize;
                            match rng.next_u32() % 4 {
                                0 | 1 => apply(
                                    &mut bytes,
                                    &Change::Write {
                                        offset: at,
                                        data: data[piece].to_vec(),
                                    },
                                ),
                                // A sector written in part and torn loses what it held before
                                // too (the drive rewrote the whole sector).
                                2 if partial => {
                                    let from = (next - SECTOR) as usize;
                                    let to = (next as usize).min(bytes.len());
                                    if from < to {
                                        bytes[from..to].fill(0xA5);
                                    }
                                }
                                _ => {}
                            }
                            at = next;
                        }
                    }
                    (_, c @ Change::SetLen(_)) => apply(&mut bytes, c),
                }
            }
            after.inodes.insert(
                ino,
                Inode {
                    durable: bytes.clone(),
                    current: bytes,
                    unsynced: Vec::new(),
                },
            );
        }
        // The old process's handles die with it.
        s.epoch = u64::MAX;
        SimFs {
            state: Arc::new(Mutex::new(after)),
        }
    }

    fn file(&self, s: &State, inode: u64) -> Arc<dyn FileIo> {
        Arc::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
            epoch: s.epoch,
        })
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl Fs for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let mut s = self.state.lock().expect("sim lock");
        match s.names.get(path) {
            Some(Entry::File(ino)) => {
                let ino = *ino;
                Ok(self.file(&s, ino))
            }
            Some(Entry::Dir) => Err(io::Error::other("is a directory")),
            None if create => {
                if !matches!(s.names.get(&parent(path)), Some(Entry::Dir)) {
                    return Err(not_found(&parent(path)));
                }
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                s.change_dir(DirChange {
                    dirs: vec![parent(path)],
                    names: vec![(path.to_owned(), Some(Entry::File(ino)))],
                });
                Ok(self.file(&s, ino))
            }
            None => Err(not_found(path)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.state
            .lock()
            .expect("sim lock")
            .names
            .contains_key(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim lock");
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(p) = at {
            if p.as_os_str().is_empty() || s.names.contains_key(p) {
                break;
            }
            missing.push(p.to_owned());
            at = p.parent();
        }
        for dir in missing.into_iter().rev() {
            s.change_dir(DirChange {
                dirs: vec![parent(&dir)],
                names: vec![(dir, Some(Entry::Dir))],
            });
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim lock");
        if !matches!(s.names.get(path), Some(Entry::Dir)) {
            return Err(not_found(path));
        }
        s.syncs += 1;
        // Every change of this directory, in order, reaches the disk (with the changes before
        // it in other directories that it depends on, as a journal commit would).
        let pending = std::mem::take(&mut s.unsynced_dirs);
        let last = pending
            .iter()
            .rposition(|c| c.dirs.iter().any(|d| d == path));
        let (done, rest) = match last {
            Some(i) => pending.split_at(i + 1),
            None => pending.split_at(0),
        };
        for change in done {
            s.apply_durable(change);
        }
        s.unsynced_dirs = rest.to_vec();
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim lock");
        let entry = *s.names.get(from).ok_or_else(|| not_found(from))?;
        if s.names.contains_key(to) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        s.change_dir(DirChange {
            dirs: vec![parent(to)],
            names: vec![(to.to_owned(), Some(entry))],
        });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim lock");
        let entry = *s.names.get(from).ok_or_else(|| not_found(from))?;
        s.change_dir(DirChange {
            dirs: vec![parent(from), parent(to)],
            names: vec![(from.to_owned(), None), (to.to_owned(), Some(entry))],
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim lock");
        if !s.names.contains_key(path) {
            return Err(not_found(path));
        }
        s.change_dir(DirChange {
            dirs: vec![parent(path)],
            names: vec![(path.to_owned(), None)],
        });
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state.lock().expect("sim lock");
        match s.names.get(path) {
            Some(Entry::File(ino)) => Ok(s.inodes[ino].current.clone()),
            _ => Err(not_found(path)),
        }
    }

    fn database(
        &self,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<redb::Database, redb::DatabaseError> {
        let file = self.open(path, true)?;
        let mut builder = redb::Database::builder();
        builder.set_cache_size(cache_bytes);
        builder.create_with_backend(Backend(file))
    }
}

impl SimFs {
    /// A disk with the directory `dir` (and its parents) already durable.
    pub(crate) fn with_dir(self, dir: &Path) -> SimFs {
        self.create_dir_all(dir).expect("mkdir");
        let mut s = self.state.lock().expect("sim lock");
        let pending = std::mem::take(&mut s.unsynced_dirs);
        for change in &pending {
            s.apply_durable(change);
        }
        drop(s);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    fn rng(seed: u8) -> TestRng {
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32])
    }

    #[test]
    fn synced_data_survives_and_unsynced_data_may_not() {
        let fs = SimFs::default().with_dir(Path::new("/d"));
        let f = fs.open(Path::new("/d/f"), true).expect("create");
        f.write_at(b"kept", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        // Unsynced, in sectors of its own.
        f.write_at(&[7; 2048], 512).expect("write");
        let mut seen_partial = false;
        for seed in 0..32 {
            let after = fs.power_cut_copy(&mut rng(seed));
            let bytes = after
                .read(Path::new("/d/f"))
                .expect("the synced file is there");
            assert_eq!(&bytes[..4], b"kept");
            seen_partial |=
                bytes.len() > 512 && bytes[512..].contains(&0) && bytes[512..].contains(&7);
        }
        assert!(
            seen_partial,
            "some cuts tear the unsynced write at sector boundaries"
        );
        assert!(f.len().is_ok());
    }

    #[test]
    fn a_torn_write_into_a_shared_sector_can_damage_what_the_sector_held() {
        let fs = SimFs::default().with_dir(Path::new("/d"));
        let f = fs.open(Path::new("/d/f"), true).expect("create");
        f.write_at(b"kept", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        f.write_at(b"later", 4).expect("write");
        let damaged = (0..64).any(|seed| {
            let after = fs.power_cut_copy(&mut rng(seed));
            after.read(Path::new("/d/f")).expect("there")[..4] != *b"kept"
        });
        assert!(
            damaged,
            "why the log starts a record after a sync on a fresh boundary"
        );
    }

    #[test]
    fn a_name_is_durable_only_once_its_directory_is_synced() {
        let fs = SimFs::default().with_dir(Path::new("/d"));
        let f = fs.open(Path::new("/d/f"), true).expect("create");
        f.write_at(b"x", 0).expect("write");
        f.sync_data().expect("sync");
        let mut lost = false;
        for seed in 0..16 {
            lost |= !fs.power_cut_copy(&mut rng(seed)).exists(Path::new("/d/f"));
        }
        assert!(lost, "without a directory sync the new name can be lost");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        for seed in 0..16 {
            assert!(fs.power_cut_copy(&mut rng(seed)).exists(Path::new("/d/f")));
        }
    }

    #[test]
    fn handles_die_with_the_power_and_a_full_disk_refuses_writes() {
        let fs = SimFs::with_capacity(100).with_dir(Path::new("/d"));
        let f = fs.open(Path::new("/d/f"), true).expect("create");
        assert_eq!(
            f.write_at(&[1; 101], 0).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        f.write_at(&[1; 100], 0).expect("fits");
        let _after = fs.power_cut(&mut rng(1));
        assert!(f.write_at(b"x", 0).is_err());
    }

    impl SimFs {
        /// [`SimFs::power_cut`] of a copy, leaving this disk as it is.
        fn power_cut_copy(&self, rng: &mut impl Rng) -> SimFs {
            let s = self.state.lock().expect("sim lock");
            let copy = SimFs {
                state: Arc::new(Mutex::new(State {
                    epoch: s.epoch,
                    inodes: s.inodes.clone(),
                    next_inode: s.next_inode,
                    names: s.names.clone(),
                    durable_names: s.durable_names.clone(),
                    unsynced_dirs: s.unsynced_dirs.clone(),
                    capacity: s.capacity,
                    failing_syncs: s.failing_syncs,
                    syncs: 0,
                    writes: 0,
                })),
            };
            drop(s);
            copy.power_cut(rng)
        }
    }
}
