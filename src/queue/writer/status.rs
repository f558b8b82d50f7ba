//! What the writer and its sync thread tell the rest of the queue: the failure that stopped them,
//! if one did, and counters of their work (for `stats()`, so for `/api/queue` and `/metrics`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::queue::stats::LogStats;

#[derive(Debug, Default)]
pub(crate) struct Status {
    /// The first failure that stopped the queue.
    failure: Mutex<Option<String>>,
    /// Why the last batch was refused for lack of space, until one commits.
    disk_full: Mutex<Option<String>>,
    batches: AtomicU64,
    commands: AtomicU64,
    syncs: AtomicU64,
    checkpoints: AtomicU64,
    log_bytes: AtomicU64,
    log_capacity: AtomicU64,
    /// The last log record known to be on disk.
    synced_lsn: AtomicU64,
}

impl Status {
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().expect("status lock").clone()
    }

    /// Records the failure that stops the queue; returns false if one already had.
    pub(crate) fn fail(&self, msg: String) -> bool {
        let mut failure = self.failure.lock().expect("status lock");
        if failure.is_some() {
            return false;
        }
        *failure = Some(msg);
        true
    }

    pub(crate) fn disk_full(&self) -> Option<String> {
        self.disk_full.lock().expect("status lock").clone()
    }

    pub(super) fn set_disk_full(&self, why: Option<String>) {
        let mut d = self.disk_full.lock().expect("status lock");
        if d.is_some() || why.is_some() {
            *d = why;
        }
    }

    pub(super) fn batch(&self, commands: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.commands.fetch_add(commands as u64, Relaxed);
    }

    pub(super) fn set_synced_lsn(&self, lsn: u64) {
        self.synced_lsn.store(lsn, Relaxed);
    }

    pub(super) fn synced_lsn(&self) -> u64 {
        self.synced_lsn.load(Relaxed)
    }

    pub(super) fn synced(&self) {
        self.syncs.fetch_add(1, Relaxed);
    }

    pub(super) fn checkpointed(&self) {
        self.checkpoints.fetch_add(1, Relaxed);
    }

    pub(super) fn log_in_use(&self, bytes: u64, capacity: u64) {
        self.log_bytes.store(bytes, Relaxed);
        self.log_capacity.store(capacity, Relaxed);
    }

    pub(crate) fn log_stats(&self) -> LogStats {
        LogStats {
            batches: self.batches.load(Relaxed),
            commands: self.commands.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            log_bytes: self.log_bytes.load(Relaxed),
            log_capacity: self.log_capacity.load(Relaxed),
        }
    }
}
