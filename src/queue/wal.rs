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
//! Record layout, little-endian: `crc32 u32 | len u32 | generation u64 | lsn u64 | durable u64 |
//! payload[len]`, the checksum covering everything after itself; `durable` is the last sequence
//! number known to be on disk when the record was written. Replay reads records from offset 0 and
//! stops at the first one that does not follow: a bad checksum (a torn or never-written record),
//! another generation (a record left from before the last open), or a sequence number that is not
//! the next one (a record left from before the last checkpoint). Every open starts a new
//! generation (a random number, so that not even the log of another database file can pass) and
//! every checkpoint records the last sequence number it covers, so stale bytes can never pass for
//! new records. What is replayed is therefore always a prefix of what was written, which is what
//! the writer's commit order needs.
//!
//! Records written between two syncs are packed; the first record written after a sync was asked
//! for starts on a fresh 4 KiB boundary, so no write ever rewrites a sector that holds bytes a sync
//! may already have acknowledged, and a torn write can only damage records nobody was told about.
//! Replay therefore looks for the next record where the last one ended and, failing that, at the
//! next boundary. When replay stops at a damaged record but a later record of the same generation
//! is intact and says the damaged one was already on disk when it was written, the log was
//! damaged after it was written, not torn by a crash: the open is refused with
//! [`QueueError::Corrupt`] rather than silently dropping acknowledged changes.
//!
//! Version 1 of the layout (without `durable`, always packed) is still read, for a log left by an
//! older build; the database's `wal_format` says which one a log uses.
//!
//! This file knows nothing of redb or of what a payload means (see `store::redo`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::QueueError;
use crate::fsio::{FileIo, Fs};

/// Bytes in front of every payload.
pub(crate) const HEADER: usize = 32;
/// The header of layout version 1.
const HEADER_V1: usize = 24;
/// The layout this build writes.
pub(crate) const FORMAT: u64 = 2;
/// Where a record written after a sync may start.
pub(crate) const ALIGN: u64 = 4096;

/// The log file and where the next record goes.
pub(crate) struct Wal {
    file: Arc<dyn FileIo>,
    path: PathBuf,
    capacity: u64,
    /// Where the last record ended.
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

fn align_up(at: u64) -> u64 {
    at.div_ceil(ALIGN) * ALIGN
}

/// One record found by [`Wal::replay`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) lsn: u64,
    pub(crate) payload: Vec<u8>,
}

/// A record header as read.
struct Head {
    crc: u32,
    len: usize,
    generation: u64,
    lsn: u64,
    durable: u64,
}

fn head(bytes: &[u8], at: usize, format: u64) -> Option<Head> {
    let size = if format == 1 { HEADER_V1 } else { HEADER };
    let h = bytes.get(at..at + size)?;
    let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    Some(Head {
        crc: u32::from_le_bytes(h[..4].try_into().expect("4 bytes")),
        len: u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize,
        generation: word(8),
        lsn: word(16),
        durable: if format == 1 { 0 } else { word(24) },
    })
}

/// The payload of the record at `at` if it is intact (its checksum holds).
fn intact(bytes: &[u8], at: usize, h: &Head, format: u64) -> Option<Vec<u8>> {
    let size = if format == 1 { HEADER_V1 } else { HEADER };
    let body = bytes.get(at + 4..at.checked_add(size)?.checked_add(h.len)?)?;
    (crc32fast::hash(body) == h.crc).then(|| body[size - 4..].to_vec())
}

impl Wal {
    /// Opens the log at `path`, creating it and filling it with `capacity` zero bytes (synced)
    /// when it is missing or shorter. Returns the log and whether the file already existed.
    pub(crate) fn open(fs: &dyn Fs, path: &Path, capacity: u64) -> Result<(Wal, bool), QueueError> {
        let io = |source| QueueError::Io {
            path: path.to_owned(),
            source,
        };
        let existed = fs.exists(path);
        let file = fs.open(path, true).map_err(io)?;
        let len = file.len().map_err(io)?;
        if len < capacity {
            let zeros = vec![0u8; 1 << 20];
            let mut at = len;
            while at < capacity {
                let n = (capacity - at).min(zeros.len() as u64) as usize;
                file.write_at(&zeros[..n], at).map_err(io)?;
                at += n as u64;
            }
            file.sync_data().map_err(io)?;
            if !existed && let Some(dir) = path.parent() {
                // The new name must survive a crash too.
                fs.sync_dir(dir).map_err(io)?;
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

    /// Where a record goes: after the last one, or on the next boundary if `fresh`.
    fn start(&self, fresh: bool) -> u64 {
        if fresh { align_up(self.pos) } else { self.pos }
    }

    /// Whether a record with a payload of `len` bytes fits after the ones written so far.
    pub(crate) fn fits(&self, len: usize, fresh: bool) -> bool {
        self.start(fresh) + (HEADER + len) as u64 <= self.capacity
    }

    /// Writes a record (not synced), after the previous one or, if `fresh` (a sync was asked for
    /// since the previous one), on the next 4 KiB boundary. Returns where it starts. The caller
    /// checks [`Wal::fits`] first.
    pub(crate) fn append(
        &mut self,
        generation: u64,
        lsn: u64,
        durable: u64,
        payload: &[u8],
        fresh: bool,
    ) -> Result<u64, QueueError> {
        debug_assert!(
            self.fits(payload.len(), fresh),
            "the caller checks that the record fits"
        );
        let at = self.start(fresh);
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&generation.to_le_bytes());
        rec.extend_from_slice(&lsn.to_le_bytes());
        rec.extend_from_slice(&durable.to_le_bytes());
        rec.extend_from_slice(payload);
        let crc = crc32fast::hash(&rec[4..]);
        rec[..4].copy_from_slice(&crc.to_le_bytes());
        self.file.write_at(&rec, at).map_err(|e| self.io(e))?;
        self.pos = at + rec.len() as u64;
        Ok(at)
    }

    /// A second handle on the file, for the thread that syncs it (`writer/syncer.rs`).
    pub(crate) fn sync_handle(&self) -> Arc<dyn FileIo> {
        Arc::clone(&self.file)
    }

    /// Forgets the last record, written at `at`, whose batch was not committed after all: its
    /// header is zeroed and synced so a replay stops before it, and the next record goes there.
    pub(crate) fn unwrite(&mut self, at: u64) -> Result<(), QueueError> {
        self.pos = at;
        self.file
            .write_at(&[0; HEADER], at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The file's size: the most the log holds before a checkpoint must make room.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Where the last record ended.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Starts again from the first byte, after a checkpoint made every record redundant.
    pub(crate) fn restart(&mut self) {
        self.pos = 0;
    }

    /// The records of `generation` numbered `after + 1, after + 2, …` from the start of the file,
    /// up to the first that is missing, torn or stale, in layout `format`. Refused as corrupt if
    /// a later intact record says the first missing one had been on disk.
    pub(crate) fn replay(
        &self,
        generation: u64,
        after: u64,
        format: u64,
    ) -> Result<Vec<Record>, QueueError> {
        let bytes = crate::fsio::read_all(&*self.file).map_err(|e| self.io(e))?;
        let size = if format == 1 { HEADER_V1 } else { HEADER };
        let mut out = Vec::new();
        let mut at = 0usize;
        let mut next = after + 1;
        loop {
            let candidates = if format == 1 {
                vec![at]
            } else {
                let aligned = align_up(at as u64) as usize;
                if aligned == at {
                    vec![at]
                } else {
                    vec![at, aligned]
                }
            };
            let found = candidates.into_iter().find_map(|p| {
                let h = head(&bytes, p, format)?;
                if h.generation != generation || h.lsn != next {
                    return None;
                }
                Some((p, h.len, intact(&bytes, p, &h, format)?))
            });
            let Some((p, len, payload)) = found else {
                break;
            };
            out.push(Record { lsn: next, payload });
            at = p + size + len;
            next += 1;
        }
        if format != 1 {
            self.check_tail(&bytes, at, generation, next)?;
        }
        Ok(out)
    }

    /// Replay stopped at `at`, missing record `next`: refuses if an intact record further on
    /// says `next` had been on disk (see the module doc).
    fn check_tail(
        &self,
        bytes: &[u8],
        at: usize,
        generation: u64,
        next: u64,
    ) -> Result<(), QueueError> {
        let wanted = generation.to_le_bytes();
        let rest = bytes.get(at + 1..).unwrap_or_default();
        // The generation is a random 64-bit number: found first, then the checksum checked.
        for found in memchr::memmem::find_iter(rest, &wanted) {
            let Some(p) = (at + 1 + found).checked_sub(8) else {
                continue;
            };
            if p <= at {
                continue;
            }
            let Some(h) = head(bytes, p, FORMAT) else {
                continue;
            };
            if h.lsn > next && h.durable >= next && intact(bytes, p, &h, FORMAT).is_some() {
                return Err(QueueError::Corrupt {
                    detail: format!(
                        "write-ahead log {}: record {next} near byte {at} is damaged, but record {} at byte {p}, written after record {next} was on disk, is intact; the disk lost acknowledged changes",
                        self.path.display(),
                        h.lsn
                    ),
                });
            }
        }
        Ok(())
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
    use crate::fsio::OsFs;

    fn open(dir: &Path, cap: u64) -> Wal {
        Wal::open(&OsFs, &dir.join("q.wal"), cap).expect("open").0
    }

    fn sync(wal: &Wal) {
        wal.sync_handle().sync_data().expect("sync");
    }

    #[test]
    fn a_new_log_is_zero_filled_and_replays_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, existed) = Wal::open(&OsFs, &dir.path().join("q.wal"), 4096).expect("open");
        assert!(!existed);
        assert_eq!(std::fs::metadata(wal.path()).expect("meta").len(), 4096);
        assert!(wal.replay(0, 0, FORMAT).expect("replay").is_empty());
    }

    #[test]
    fn records_replay_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 16384);
        wal.append(3, 11, 10, b"one", false).expect("append");
        // A sync was asked for: the next record starts on a fresh boundary.
        let at = wal.append(3, 12, 11, b"two", true).expect("append");
        assert_eq!(at, ALIGN);
        wal.append(3, 13, 11, b"three", false).expect("append");
        sync(&wal);
        drop(wal);
        let (wal, existed) = Wal::open(&OsFs, &dir.path().join("q.wal"), 16384).expect("reopen");
        assert!(existed);
        let got = wal.replay(3, 10, FORMAT).expect("replay");
        let lsns: Vec<_> = got.iter().map(|r| (r.lsn, r.payload.clone())).collect();
        assert_eq!(
            lsns,
            vec![
                (11, b"one".to_vec()),
                (12, b"two".to_vec()),
                (13, b"three".to_vec())
            ]
        );
        // A checkpoint that covered 11 leaves only 12... which is not at the start: nothing.
        assert!(wal.replay(3, 11, FORMAT).expect("replay").is_empty());
        // Another generation's records are stale.
        assert!(wal.replay(4, 10, FORMAT).expect("replay").is_empty());
    }

    #[test]
    fn replay_stops_at_a_torn_record_that_was_never_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        wal.append(1, 1, 0, b"first", false).expect("append");
        let second = wal.position();
        wal.append(1, 2, 0, b"second", false).expect("append");
        // Written before record 2 was known to be on disk.
        wal.append(1, 3, 1, b"third", false).expect("append");
        // One flipped payload byte in the second record.
        wal.file
            .write_at(b"X", second + HEADER as u64)
            .expect("corrupt");
        let got = wal
            .replay(1, 0, FORMAT)
            .expect("a torn tail, not corruption");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"first");
    }

    #[test]
    fn a_damaged_record_that_was_on_disk_refuses_the_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 16384);
        wal.append(1, 1, 0, b"first", false).expect("append");
        let second = wal.append(1, 2, 1, b"second", true).expect("append");
        // Written once record 2 was on disk.
        wal.append(1, 3, 2, b"third", true).expect("append");
        wal.file
            .write_at(b"X", second + HEADER as u64)
            .expect("corrupt");
        let e = wal.replay(1, 0, FORMAT).unwrap_err();
        assert!(
            matches!(&e, QueueError::Corrupt { detail } if detail.contains("record 2") && detail.contains("record 3")),
            "{e}"
        );
    }

    #[test]
    fn records_after_a_restart_hide_the_stale_ones_behind_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        for lsn in 1..=5 {
            wal.append(1, lsn, lsn - 1, b"same size", false)
                .expect("append");
        }
        // A checkpoint covered 1..=5; the next record, 6, overwrites record 1's place, and the
        // stale record 2 behind it (same size, valid checksum) does not follow 6.
        wal.restart();
        wal.append(1, 6, 5, b"same size", false).expect("append");
        let got = wal.replay(1, 5, FORMAT).expect("replay");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lsn, 6);
    }

    #[test]
    fn an_unwritten_record_is_not_replayed_and_its_place_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 4096);
        wal.append(1, 1, 0, b"kept", false).expect("append");
        let at = wal.append(1, 2, 0, b"rolled back", false).expect("append");
        wal.unwrite(at).expect("unwrite");
        assert_eq!(wal.replay(1, 0, FORMAT).expect("replay").len(), 1);
        wal.append(1, 2, 0, b"instead", false).expect("append");
        let got = wal.replay(1, 0, FORMAT).expect("replay");
        assert_eq!(got[1].payload, b"instead");
    }

    #[test]
    fn fits_counts_the_header_and_the_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 8192);
        assert!(wal.fits(8192 - HEADER, false));
        assert!(!wal.fits(8193 - HEADER, false));
        wal.append(1, 1, 0, &[7; 50], false).expect("append");
        assert!(wal.fits(8192 - HEADER - 82, false));
        assert!(!wal.fits(8192 - HEADER - 82 + 1, false));
        assert!(wal.fits(4096 - HEADER, true));
        assert!(!wal.fits(4097 - HEADER, true));
    }

    #[test]
    fn a_log_of_the_first_layout_is_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), 4096);
        let mut at = 0u64;
        for (lsn, payload) in [(1u64, &b"old"[..]), (2, b"older")] {
            let mut rec = vec![0; 4];
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&9u64.to_le_bytes());
            rec.extend_from_slice(&lsn.to_le_bytes());
            rec.extend_from_slice(payload);
            let crc = crc32fast::hash(&rec[4..]);
            rec[..4].copy_from_slice(&crc.to_le_bytes());
            wal.file.write_at(&rec, at).expect("write");
            at += rec.len() as u64;
        }
        let got = wal.replay(9, 0, 1).expect("replay");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload, b"older");
    }
}
