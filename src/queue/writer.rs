//! The writer thread: the only code that opens write transactions.
//!
//! It blocks for one command, takes every other command already waiting (up to `max_batch`), applies
//! them in order inside one transaction and commits once. The transaction's changes go to the
//! write-ahead log (`queue/wal.rs`) as one record first; then redb commits with
//! `Durability::None`. If any command of the batch must be durable, the sync thread
//! (`writer/syncer.rs`) is asked to sync the log before redb commits, and sends the batch's replies
//! once the sync is done: a reply means the change is on disk. Every `checkpoint_every`, or when the
//! log is full, a batch commits redb durably instead and the log starts over.
//!
//! A batch refused before its log record is written (a storage error while applying, a log write
//! that failed) leaves nothing behind: the transaction is dropped and every command gets the error.
//! A failure after that (redb's commit, the sync) stops the queue: every later command gets the
//! error until spheroseg restarts, and the restart replays what reached the log, which may include
//! the failed batch.
//!
//! Except a lack of space (ENOSPC, EDQUOT) while writing: that batch is refused with
//! [`QueueError::DiskFull`] and the queue goes on. If its record was already in the log, the
//! record is taken back (zeroed and synced) so no replay redoes what its callers were told failed.
//! redb refuses everything after a failed write until it is reopened. So, before it replies, the
//! writer frees the space it keeps in reserve (`queue/reserve.rs`), reopens redb and finishes as
//! an open does: redo the log, start a new generation durably, and requeue orphans if the opening
//! itself was short of space; reads then show every acknowledged change. Without a reserve (or
//! if even that was not room enough) it reopens redb (reads see the last checkpoint) and tries
//! again before each later batch, at most every `ROOM_RETRY` (`writer/room.rs`). Until that
//! succeeds and the reserve could be made again, with as much free beside it, every batch is
//! refused with `DiskFull`. A failed sync is never retried: it stays fail-stop.
//!
//! Every batch that changes anything is logged, durable or not: redoing a durable batch's changes
//! is only right on top of the batches before it, so the log must hold them all, in order.
//!
//! Each operation checks everything it needs before its first write, so an operation that is
//! refused (stale attempt, wrong state, invalid job) leaves nothing behind in the shared
//! transaction. Counter and image-reference changes are summed in memory and written once per
//! batch.
//!
//! - `command`: the operations callers send and how a refused one is answered
//! - `batch`, `ops`, `marks`: applying operations inside one transaction
//! - `redo`: redoing the log and requeueing orphans (at open, and after a full disk)
//! - `room`: the writer short of space, until it takes changes again
//! - `backup`: a copy of the database between two batches
//! - `syncer`, `status`, `waiter`: the sync thread, what both threads report, how they wait

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::Durability;

use super::reserve::Reserve;

use super::QueueError;
use super::QueueOptions;
use super::model::{Committed, Millis};
use super::slot::Slot;
use super::stats::Recent;
use super::store::{META, META_WAL_CLEAN, META_WAL_LSN};
use super::wal::Wal;
use crate::clock::Clock;
use crate::queue::backup::Hold;
use batch::{Batch, Observed};
pub use command::{Admit, Fit, Route};
pub(crate) use command::{Command, Copied, Op, Refusal, Reply};
use command::{Finish, finish};
pub(crate) use redo::{recover_orphans, replay};
use room::Pending;
pub(crate) use room::{Room, Unfinished};
pub(crate) use status::Status;
use syncer::Syncer;
use waiter::Waiter;

/// The write-ahead log and where this process is in it.
pub(crate) struct Log {
    wal: Wal,
    /// This process's generation (see `queue/wal.rs`).
    generation: u64,
    /// The last record written (or covered by the last checkpoint).
    lsn: u64,
    /// The last record the sync thread was asked to make durable.
    requested: u64,
    /// A sync was asked for since the last record: the next one starts on a fresh boundary.
    fresh: bool,
    last_checkpoint: Instant,
}

/// Where a log starts: its generation, and the last record the database already includes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Position {
    generation: u64,
    lsn: u64,
}

impl Log {
    pub(crate) fn new(wal: Wal, at: Position) -> Log {
        Log {
            wal,
            generation: at.generation,
            lsn: at.lsn,
            requested: at.lsn,
            fresh: false,
            last_checkpoint: Instant::now(),
        }
    }

    /// Starts again at `at`, from the log's first byte.
    fn restart_at(&mut self, at: Position) {
        self.wal.restart();
        self.generation = at.generation;
        self.lsn = at.lsn;
        self.requested = at.lsn;
        self.last_checkpoint = Instant::now();
    }
}

/// What the writer and its sync thread report to the rest of the queue.
pub(crate) struct Outlets {
    /// The failure that stopped them, and their counters.
    pub(crate) status: Arc<Status>,
    /// Wait, run and commit times for `stats()`.
    pub(crate) recent: Arc<Mutex<Recent>>,
    /// Who hears of commits.
    pub(crate) announcer: Arc<crate::queue::announce::Announcer>,
}

/// Starts the writer thread and its sync thread. When the channel closes the writer lets the sync
/// thread send every reply still waiting, then commits a last durable checkpoint.
/// `room.unfinished` says why the opening could not commit (a full disk): the writer then finishes
/// it (redo, recover) before its first batch that finds room.
pub(crate) fn spawn(
    slot: Arc<Slot>,
    rx: crossbeam_channel::Receiver<Command>,
    options: QueueOptions,
    clock: Arc<dyn Clock>,
    log: Log,
    outlets: Outlets,
    room: Room,
) -> Result<JoinHandle<()>, QueueError> {
    let Room {
        reserve,
        unfinished,
    } = room;
    let Outlets {
        status,
        recent,
        announcer,
    } = outlets;
    status.set_synced_lsn(log.lsn);
    let syncer = Syncer::spawn(
        log.wal.sync_handle(),
        log.wal.path().to_owned(),
        log.lsn,
        Arc::clone(&status),
        Arc::clone(&recent),
        announcer,
    )?;
    status.log_in_use(0, log.wal.capacity());
    let pending = match unfinished {
        Some(Unfinished { why, caught_up }) => {
            status.set_disk_full(Some(why.clone()));
            Some(Pending {
                why,
                reopen: !caught_up,
                recover: !caught_up,
                caught_up,
                tried: Instant::now(),
            })
        }
        None => {
            // Without room for it the queue works as well, only a full disk then leaves reads
            // at the last checkpoint until there is room.
            match reserve.ensure() {
                Ok(true) => {}
                Ok(false) => tracing::warn!("no room to reserve space for the queue's recovery"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reserve space for the queue's recovery")
                }
            }
            None
        }
    };
    std::thread::Builder::new()
        .name("queue-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                slot,
                options,
                clock,
                recent,
                log,
                syncer,
                status,
                pending,
                reserve,
            };
            let mut waiter = Waiter::default();
            while let Some(batch) = waiter.batch(&rx, writer.options.max_batch) {
                writer.run(batch.into_iter().map(|cmd| cmd.0).collect());
            }
            if let Err(e) = writer.close() {
                tracing::error!(error = %e, "final queue checkpoint failed; the next open replays the write-ahead log");
            }
            tracing::debug!("queue writer stopped");
        })
        .map_err(|source| QueueError::Io {
            path: "queue-writer thread".into(),
            source,
        })
}

/// What applying a batch produced, for after its commit.
struct Applied {
    /// Answers sent by the sync thread once what they depend on is durable.
    finishes: Vec<Finish>,
    /// Answers sent as soon as the batch committed (see `Batch::apply`).
    immediate: Vec<Finish>,
    observed: Vec<Observed>,
    committed: Committed,
    wake: bool,
}

struct Writer {
    slot: Arc<Slot>,
    options: QueueOptions,
    clock: Arc<dyn Clock>,
    recent: Arc<Mutex<Recent>>,
    log: Log,
    syncer: Syncer,
    status: Arc<Status>,
    /// Set while a lack of space keeps the queue from taking changes.
    pending: Option<Pending>,
    /// Room kept back so that a full disk still lets the log be redone (`reserve.rs`).
    reserve: Reserve,
}

impl Writer {
    fn run_batch(&mut self, ops: Vec<Op>) {
        let durable = ops.iter().any(Op::durable);
        let now = self.clock.now();
        let started = Instant::now();
        self.status.batch(ops.len());
        if let Some(why) = self.refusal() {
            for op in ops {
                op.refuse(&why);
            }
            return;
        }
        let store = match self.slot.get() {
            Ok(store) => store,
            Err(e) => {
                let why = Refusal::of(&e);
                for op in ops {
                    op.refuse(&why);
                }
                return;
            }
        };
        let tx = match store.db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "queue cannot begin a transaction");
                let why = Refusal::Storage(format!("storage error: {e}"));
                for op in ops {
                    op.refuse(&why);
                }
                return;
            }
        };
        let mut out = Applied {
            finishes: Vec::with_capacity(ops.len()),
            immediate: Vec::new(),
            observed: Vec::new(),
            committed: Committed::default(),
            wake: false,
        };
        let outcome = self.apply_all(tx, ops, now, durable, &mut out);
        drop(store);
        let Applied {
            mut finishes,
            immediate,
            observed,
            committed,
            wake,
        } = out;
        match outcome {
            Ok(()) => {
                if !committed.transitions.is_empty() || durable {
                    self.status.set_disk_full(None);
                }
                if !observed.is_empty() {
                    let mut recent = self.recent.lock().expect("recent stats lock");
                    for o in observed {
                        match o {
                            Observed::Wait(ms) => recent.record_wait(ms),
                            Observed::Finished { run_ms, completed } => {
                                recent.record_finish(now, run_ms, completed)
                            }
                        }
                    }
                }
                for f in immediate {
                    f(None);
                }
                let after = self.log.requested;
                self.syncer
                    .reply(after, durable.then_some(started), finishes, committed, wake);
            }
            Err(e) => {
                finishes.extend(immediate);
                let why = Refusal::of(&e);
                if let Refusal::DiskFull(detail) = &why {
                    tracing::warn!(%detail, commands = finishes.len(), "queue batch refused: disk full");
                    self.status.set_disk_full(Some(detail.clone()));
                } else {
                    tracing::error!(error = %e, commands = finishes.len(), "queue batch failed");
                }
                // Reads need a working database while the writer waits for room: with the
                // reserve's room it is brought up to date at once, else reopened as it was at
                // the last checkpoint. Before the replies, so a caller told of the full disk
                // reads what was acknowledged.
                if self.pending.is_some() && self.reserve.release() {
                    self.repair();
                } else if self.pending.as_ref().is_some_and(|p| p.reopen) {
                    self.reopen();
                }
                for f in finishes {
                    f(Some(&why));
                }
            }
        }
    }

    /// Stops the queue after a failure that left the log and redb out of step.
    fn fail_stop(&self, e: &QueueError) {
        let msg = format!("{e}; the queue accepts no more changes: restart spheroseg");
        if self.status.fail(msg) {
            tracing::error!(error = %e, "queue commit failed; the queue accepts no more changes until restarted");
        }
    }

    /// Applies every operation in one transaction, logs it and commits it (see the module doc).
    fn apply_all(
        &mut self,
        mut tx: redb::WriteTransaction,
        ops: Vec<Op>,
        now: Millis,
        durable: bool,
        out: &mut Applied,
    ) -> Result<(), QueueError> {
        let checkpoint;
        let mut logged_at = None;
        {
            let applied = (|| -> Result<Option<Vec<u8>>, QueueError> {
                let mut b = Batch::open(&tx, &self.options, now)?;
                let mut ops = ops.into_iter();
                while let Some(op) = ops.next() {
                    match b.apply(op) {
                        Ok((f, true)) => out.immediate.push(f),
                        Ok((f, false)) => out.finishes.push(f),
                        Err(e) => {
                            let e = e.classify();
                            let why = Refusal::of(&e);
                            ops.for_each(|rest| rest.refuse(&why));
                            return Err(e);
                        }
                    }
                }
                b.flush()?;
                out.observed.append(&mut b.observed);
                out.committed = std::mem::take(&mut b.committed);
                out.wake = b.wake;
                Ok(b.t.take_log())
            })();
            // A storage error inside the transaction may have been a failed write of the
            // storage engine's cache, which then refuses everything until reopened.
            let payload = match applied.map_err(QueueError::classify) {
                Ok(p) => p,
                Err(e @ QueueError::DiskFull { .. }) => return Err(self.short_of_space(e)),
                Err(e) => return Err(e),
            };
            checkpoint = payload.as_ref().is_some_and(|p| {
                !self.log.wal.fits(p.len(), self.log.fresh)
                    || self.log.last_checkpoint.elapsed() >= self.options.checkpoint_every
            });
            if let Some(p) = payload.filter(|_| !checkpoint) {
                let before = self.log.wal.position();
                // What is known to be on disk as this record is written (never itself).
                let durable = self.status.synced_lsn().min(self.log.lsn);
                let written = self.log.wal.append(
                    self.log.generation,
                    self.log.lsn + 1,
                    durable,
                    &p,
                    self.log.fresh,
                );
                let at = match written {
                    Ok(at) => at,
                    Err(e) => {
                        // Nothing else was written: the batch is refused, the queue goes on.
                        if let Err(undo) = self.log.wal.unwrite(before) {
                            self.fail_stop(&undo);
                        }
                        return Err(e.classify());
                    }
                };
                self.log.fresh = false;
                self.log.lsn += 1;
                logged_at = Some(at);
                self.status
                    .log_in_use(self.log.wal.position(), self.log.wal.capacity());
            }
        }
        if checkpoint {
            if let Err(e) = self.checkpoint(tx, false) {
                return Err(match e.classify() {
                    e @ QueueError::DiskFull { .. } => self.short_of_space(e),
                    e => {
                        self.fail_stop(&e);
                        e
                    }
                });
            }
        } else {
            tx.set_durability(Durability::None)
                .map_err(|e| QueueError::Storage(Box::new(e)))?;
            if durable && self.log.requested < self.log.lsn {
                // The sync runs while redb commits; the next record keeps off its sectors.
                self.log.requested = self.log.lsn;
                self.log.fresh = true;
                self.syncer.sync(self.log.lsn);
            }
            if let Err(e) = tx.commit() {
                let e = QueueError::from(e).classify();
                if matches!(e, QueueError::DiskFull { .. })
                    && let Some(at) = logged_at
                {
                    // The caller hears that the batch failed, so its record must not be redone:
                    // taken back (zeroed and synced), and its number given to the next one.
                    if let Err(undo) = self.log.wal.unwrite(at) {
                        self.fail_stop(&undo);
                        return Err(e);
                    }
                    self.log.lsn -= 1;
                    self.log.requested = self.log.requested.min(self.log.lsn);
                    self.log.fresh = true;
                    self.syncer.rewind(self.log.lsn);
                    return Err(self.short_of_space(e));
                }
                self.fail_stop(&e);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Lets the sync thread finish, then commits the last checkpoint: everything so far committed
    /// durably, and the log marked clean.
    fn close(&mut self) -> Result<(), QueueError> {
        self.syncer.stop();
        if let Some(msg) = self.status.failure() {
            return Err(QueueError::Storage(msg.into()));
        }
        if let Some(p) = self.pending.as_ref().filter(|p| !p.caught_up) {
            // The next open redoes the log.
            return Err(QueueError::DiskFull {
                detail: p.why.clone(),
            });
        }
        let store = self.slot.get()?;
        let tx = store.db.begin_write()?;
        self.checkpoint(tx, true)
    }

    /// Commits `tx` durably as a checkpoint: it records the last log record it covers (and, on
    /// close, that the log is clean), and the log starts over.
    fn checkpoint(
        &mut self,
        mut tx: redb::WriteTransaction,
        clean: bool,
    ) -> Result<(), QueueError> {
        tx.set_quick_repair(self.options.quick_repair);
        {
            let mut meta = tx.open_table(META)?;
            meta.insert(META_WAL_LSN, self.log.lsn)?;
            if clean {
                meta.insert(META_WAL_CLEAN, 1)?;
            }
        }
        tx.commit()?;
        self.log.wal.restart();
        self.log.last_checkpoint = Instant::now();
        self.status.checkpointed();
        self.status.log_in_use(0, self.log.wal.capacity());
        Ok(())
    }
}

mod backup;
mod batch;
mod command;
mod marks;
mod ops;
mod redo;
mod room;
mod status;
mod syncer;
mod versions;
mod waiter;
