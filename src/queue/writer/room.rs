//! The writer short of space: what it must still do before it takes changes again after a
//! commit (or the opening) failed for lack of space, and how it does it (see the module doc of
//! `writer.rs`): reopen redb, redo the log in the reserve's room, requeue orphans, and make the
//! reserve again.

use std::time::{Duration, Instant};

use super::super::QueueError;
use super::super::reserve::Reserve;
use super::{Committed, Position, Refusal, Writer, recover_orphans, replay};

/// What the writer must do before it takes changes again, after a commit (or the opening) failed
/// for lack of space.
pub(super) struct Pending {
    pub(super) why: String,
    /// The storage engine failed a write and refuses everything until the database is reopened.
    pub(super) reopen: bool,
    /// The opening's recovery (requeueing orphans) has not run.
    pub(super) recover: bool,
    /// The log is redone and the database current (the reserve made room for it): all that is
    /// left is room for the reserve again.
    pub(super) caught_up: bool,
    pub(super) tried: Instant,
}

/// How the writer starts out on the disk.
pub(crate) struct Room {
    pub(crate) reserve: Reserve,
    /// Set if the opening could not take changes for lack of space.
    pub(crate) unfinished: Option<Unfinished>,
}

/// Why the opening could not take changes (a full disk), and how far it got.
pub(crate) struct Unfinished {
    pub(crate) why: String,
    /// It redid the log and recovered (in the reserve's room); only the reserve is missing.
    pub(crate) caught_up: bool,
}

/// How often a writer short of space tries again.
const ROOM_RETRY: Duration = Duration::from_millis(500);

impl Writer {
    /// Why this batch is refused before it starts: the queue stopped, or it still waits for
    /// room (and trying again, at most every [`ROOM_RETRY`], did not find it).
    pub(super) fn refusal(&mut self) -> Option<Refusal> {
        if let Some(msg) = self.status.failure() {
            return Some(Refusal::Storage(msg));
        }
        let pending = self.pending.as_ref()?;
        if pending.tried.elapsed() >= ROOM_RETRY {
            self.repair();
        }
        if let Some(msg) = self.status.failure() {
            return Some(Refusal::Storage(msg));
        }
        self.pending
            .as_ref()
            .map(|p| Refusal::DiskFull(p.why.clone()))
    }

    /// Reopens the database after the storage engine failed a write.
    pub(super) fn reopen(&mut self) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        match self.slot.reopen().map_err(QueueError::classify) {
            Ok(()) => p.reopen = false,
            Err(QueueError::DiskFull { detail }) => p.why = detail,
            Err(e) => self.fail_stop(&e),
        }
    }

    /// Finishes what a lack of space interrupted: reopens the database if need be, redoes the
    /// log on it and starts a new generation (as an open does), requeues orphans if the opening
    /// could not, and makes the reserve again. Leaves `pending` set if there is still no room.
    pub(super) fn repair(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.reopen) {
            self.reopen();
        }
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        p.tried = Instant::now();
        if p.reopen {
            return;
        }
        if !p.caught_up {
            let recover = p.recover;
            let attempt = (|| -> Result<(Position, usize, Committed), QueueError> {
                let store = self.slot.get()?;
                let (at, redone) = replay(&store, &self.log.wal, true)?;
                // The log starts over: numbers from here on are new records, not yet synced.
                self.log.restart_at(at);
                self.syncer.rewind(at.lsn);
                let committed = if recover {
                    recover_orphans(&store, &self.options, self.clock.now())?
                } else {
                    Committed::default()
                };
                Ok((at, redone, committed))
            })();
            match attempt.map_err(QueueError::classify) {
                Ok((at, redone, committed)) => {
                    tracing::info!(redone, "the queue's database is up to date again");
                    self.status.log_in_use(0, self.log.wal.capacity());
                    // Announced in order with the batches' replies.
                    self.syncer.reply(at.lsn, None, Vec::new(), committed, true);
                    if let Some(p) = self.pending.as_mut() {
                        p.caught_up = true;
                        p.recover = false;
                    }
                }
                Err(QueueError::DiskFull { detail }) => {
                    if let Some(p) = self.pending.as_mut() {
                        // A failed commit leaves the storage engine refusing until reopened;
                        // and if the redo did commit, what is left is the recovery.
                        p.reopen = true;
                        p.why = detail;
                        p.recover = recover;
                    }
                    return;
                }
                Err(e) => {
                    self.fail_stop(&e);
                    return;
                }
            }
        }
        match self.reserve.room_again() {
            Ok(false) => {}
            ready => {
                if let Err(e) = ready {
                    tracing::warn!(error = %e, "cannot reserve space for the queue's recovery");
                }
                tracing::info!("the queue takes changes again: there is room on the disk");
                self.pending = None;
                self.status.set_disk_full(None);
            }
        }
    }

    /// After a commit failed for lack of space: the database must be reopened, and the batch's
    /// error is the caller's.
    pub(super) fn short_of_space(&mut self, e: QueueError) -> QueueError {
        let detail = match &e {
            QueueError::DiskFull { detail } => detail.clone(),
            e => e.to_string(),
        };
        self.pending = Some(Pending {
            why: detail,
            reopen: true,
            recover: false,
            caught_up: false,
            tried: Instant::now(),
        });
        e
    }
}
