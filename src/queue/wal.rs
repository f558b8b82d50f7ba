//! The write-ahead log: what makes a commit durable between checkpoints.
//!
//! A durable redb commit writes every page the transaction touched (each table's leaf and branch
//! pages, the table tree, the allocator's system tables) before its one `fdatasync`: about eight
//! 4 KiB pages for a single-key change, and more for every table an enqueue touches. The writer
//! therefore commits redb without durability and makes each batch durable by appending its
//! changes, as one record, to this file and syncing that: one small write and one `fdatasync` per
//! batch. Every few seconds, or when the file is full, the writer makes a durable redb commit
//! instead (a checkpoint) and starts the log again from its first byte.
//!
//! The file is allocated once, filled with zeros, and then only overwritten in place, so a sync
//! writes the record's own blocks and never the file's size or extents (as an append would).
//!
//! Record layout, little-endian: `crc32 u32 | len u32 | generation u64 | lsn u64 | payload[len]`,
//! the checksum covering everything after itself. Replay reads records from offset 0 and stops at
//! the first one that does not follow: a bad checksum (a torn or never-written record), another
//! generation (a record left from before the last open), or a sequence number that is not the next
//! one (a record left from before the last checkpoint). Every open starts a new generation (a
//! random number, so that not even the log of another database file can pass) and every checkpoint
//! records the last sequence number it covers, so stale bytes can never pass for new records. What is replayed is therefore always a prefix of what was written, which is what
//! the writer's commit order needs.
//!
//! This file knows nothing of redb or of what a payload means (see `store::redo`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::QueueError;

/// Bytes in front of every payload.
pub(crate) const HEADER: usize = 24;

/// The log file and where the next record goes.
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    capacity: u64,
    /// Where the next record starts.
    pos: u64,
}

/// A generation number for a new open: random, never 0 (a new database's "no log yet") and never
/// the one before.
pub(crate) fn new_generation(previous: u64) -> u64 {
    loop {
        // The low half of a UUIDv7 is 62 random bits and the variant.
        let g = uuid::Uuid::now_v7().as_u128() as u64;
        if g != 0 && g != previous {
            return g;
        }
    }
}

/// One record found by [`Wal::replay`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) lsn: u64,
    pub(crate) payload: Vec<u8>,
}

impl Wal {
    /// Opens the log at `path`, creating it and filling it with `capacity` zero bytes (synced)
    /// when it is missing or shorter. Returns the log and whether the file already existed.
    pub(crate) fn open(path: &Path, capacity: u64) -> Result<(Wal, bool), QueueError> {
        let io = |source| QueueError::Io {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < capacity {
            let zeros = vec![0u8; 1 << 20];
            let mut at = len;
            while at < capacity {
                let n = (capacity - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at).map_err(io)?;
                at += n as u64;
            }
            file.sync_all().map_err(io)?;
            if !existed && let Some(dir) = path.parent() {
                // The new name must survive a crash too.
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        let wal = Wal {
            file,
            path: path.to_owned(),
            capacity: len.max(capacity),
            pos: 0,
        };
        Ok((wal, existed))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a record with a payload of `len` bytes fits after the ones written so far.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.pos + (HEADER + len) as u64 <= self.capacity
    }

    /// Writes a record after the previous one (not synced). The caller checks [`Wal::fits`] first.
    pub(crate) fn append(
        &mut self,
        generation: u64,
        lsn: u64,
        payload: &[u8],
    ) -> Result<(), QueueError> {
        debug_assert!(
            self.fits(payload.len()),
            "the caller checks that the record fits"
        );
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&generation.to_le_bytes());
        rec.extend_from_slice(&lsn.to_le_bytes());
        rec.extend_from_slice(payload);
        let crc = crc32fast::hash(&rec[4..]);
        rec[..4].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all_at(&rec, self.pos)
            .map_err(|e| self.io(e))?;
        self.pos += rec.len() as u64;
        Ok(())
    }

    /// A second handle on the file, for the thread that syncs it (`writer/syncer.rs`).
    pub(crate) fn sync_handle(&self) -> Result<File, QueueError> {
        self.file.try_clone().map_err(|e| self.io(e))
    }

    /// Forgets the last record, written at `at`, whose batch was not committed after all: its
    /// header is zeroed and synced so a replay stops before it, and the next record goes there.
    pub(crate) fn unwrite(&mut self, at: u64) -> Result<(), QueueError> {
        self.pos = at;
        self.file
            .write_all_at(&[0; HEADER], at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The file's size: the most the log holds before a checkpoint must make room.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Where the next record starts.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Starts again from the first byte, after a checkpoint made every record redundant.
    pub(crate) fn restart(&mut self) {
        self.pos = 0;
    }

    /// The records of `generation` numbered `after + 1, after + 2, …` from the start of the file,
    /// up to the first that is missing, torn or stale.
    pub(crate) fn replay(&self, generation: u64, after: u64) -> Result<Vec<Record>, QueueError> {
        let mut bytes = Vec::new();
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        let mut at = 0usize;
        let mut next = after + 1;
        while let Some(head) = bytes.get(at..at + HEADER) {
            let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
            let Some(body) = bytes.get(at + 4..at + HEADER + len) else {
                break;
            };
            if crc32fast::hash(body) != crc || word(8) != generation || word(16) != next {
                break;
            }
            out.push(Record {
                lsn: next,
                payload: body[HEADER - 4..].to_vec(),
            });
            at += HEADER + len;
            next += 1;
        }
        Ok(out)
    }

    fn io(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, cap: u64) -> Wal {
        Wal::open(&dir.join("q.wal"), cap).expect("open").0
    }

    #[test]
    fn a_new_log_is_zero_filled_and_replays_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, existed) = Wal::open(&dir.path().join("q.wal"), 4096).expect("open");
        assert!(!existed);
        assert_eq!(std::fs::metadata(wal.path()).expect("meta").len(), 4096);
        assert!(wal.replay(0, 0).expect("replay").is_empty());
    }

    #[test]
    fn records_replay_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        wal.append(3, 11, b"one").expect("append");
        wal.append(3, 12, b"two").expect("append");
        wal.sync_handle()
            .expect("handle")
            .sync_data()
            .expect("sync");
        drop(wal);
        let (wal, existed) = Wal::open(&dir.path().join("q.wal"), 4096).expect("reopen");
        assert!(existed);
        let got = wal.replay(3, 10).expect("replay");
        assert_eq!(
            got,
            vec![
                Record {
                    lsn: 11,
                    payload: b"one".to_vec()
                },
                Record {
                    lsn: 12,
                    payload: b"two".to_vec()
                },
            ]
        );
        // A checkpoint that covered 11 leaves only 12... which is not at the start: nothing.
        assert!(wal.replay(3, 11).expect("replay").is_empty());
        // Another generation's records are stale.
        assert!(wal.replay(4, 10).expect("replay").is_empty());
    }

    #[test]
    fn replay_stops_at_a_torn_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        wal.append(1, 1, b"first").expect("append");
        let second = wal.position();
        wal.append(1, 2, b"second").expect("append");
        wal.append(1, 3, b"third").expect("append");
        // One flipped payload byte in the second record.
        wal.file
            .write_all_at(b"X", second + HEADER as u64)
            .expect("corrupt");
        let got = wal.replay(1, 0).expect("replay");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"first");
    }

    #[test]
    fn records_after_a_restart_hide_the_stale_ones_behind_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        for lsn in 1..=5 {
            wal.append(1, lsn, b"same size").expect("append");
        }
        // A checkpoint covered 1..=5; the next record, 6, overwrites record 1's place, and the
        // stale record 2 behind it (same size, valid checksum) does not follow 6.
        wal.restart();
        wal.append(1, 6, b"same size").expect("append");
        let got = wal.replay(1, 5).expect("replay");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lsn, 6);
    }

    #[test]
    fn an_unwritten_record_is_not_replayed_and_its_place_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        wal.append(1, 1, b"kept").expect("append");
        let at = wal.position();
        wal.append(1, 2, b"rolled back").expect("append");
        wal.unwrite(at).expect("unwrite");
        assert_eq!(wal.replay(1, 0).expect("replay").len(), 1);
        wal.append(1, 2, b"instead").expect("append");
        let got = wal.replay(1, 0).expect("replay");
        assert_eq!(got[1].payload, b"instead");
    }

    #[test]
    fn fits_counts_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 100);
        assert!(wal.fits(100 - HEADER));
        assert!(!wal.fits(101 - HEADER));
        wal.append(1, 1, &[7; 50]).expect("append");
        assert!(!wal.fits(100 - HEADER - 74 + 1));
        assert!(wal.fits(100 - HEADER - 74));
    }
}
