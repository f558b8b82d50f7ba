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
//! again before each later batch, at most every [`ROOM_RETRY`]. Until that succeeds and the
//! reserve could be made again, with as much free beside it, every batch is refused with
//! `DiskFull`. A failed sync is never retried: it stays fail-stop.
//!
//! Every batch that changes anything is logged, durable or not: redoing a durable batch's changes
//! is only right on top of the batches before it, so the log must hold them all, in order.
//!
//! Each operation checks everything it needs before its first write, so an operation that is
//! refused (stale attempt, wrong state, invalid job) leaves nothing behind in the shared
//! transaction. Counter and image-reference changes are summed in memory and written once per
//! batch.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableTable};

use super::reserve::Reserve;
use tokio::sync::oneshot;

use super::QueueError;
use super::QueueOptions;
use super::model::{
    BulkAction, BulkOutcome, Change, Committed, Enqueued, FailOutcome, Job, JobError, JobId,
    JobState, Lease, LeaseToken, Mark, Millis, NewJob, Priority, Requeue, Retention,
    RetentionReport, SweepReport,
};
use super::slot::Slot;
use super::stats::Recent;
use super::store::{
    META, META_WAL_CLEAN, META_WAL_FORMAT, META_WAL_GENERATION, META_WAL_LSN, Store, Tables, due,
    redo,
};
use super::wal::Wal;
use crate::clock::Clock;
use crate::error_code::ErrorCode;
use crate::segment::SegmenterId;
use batch::{Batch, Observed};
pub(crate) use status::Status;
use syncer::Syncer;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// One request to the writer.
pub(crate) struct Command(pub(crate) Op);

pub(crate) enum Op {
    Enqueue {
        jobs: Vec<NewJob>,
        reply: Reply<Vec<Enqueued>>,
    },
    /// An enqueue and the marks that go with it (`model::Mark`), in one operation.
    EnqueueMarked {
        jobs: Vec<NewJob>,
        marks: Vec<Mark>,
        reply: Reply<Vec<Enqueued>>,
    },
    Lease {
        n: usize,
        ttl: Duration,
        reply: Reply<Vec<Lease>>,
    },
    Heartbeat {
        leases: Vec<(JobId, LeaseToken)>,
        ttl: Duration,
        reply: Reply<Vec<JobId>>,
    },
    Complete {
        id: JobId,
        token: LeaseToken,
        result: Vec<u8>,
        objects: u32,
        reply: Reply<Job>,
    },
    Fail {
        id: JobId,
        token: LeaseToken,
        error: JobError,
        reply: Reply<FailOutcome>,
    },
    Release {
        id: JobId,
        token: LeaseToken,
        until: Millis,
        reason: JobError,
        reply: Reply<Job>,
    },
    Cancel {
        id: JobId,
        reply: Reply<Job>,
    },
    Retry {
        id: JobId,
        reply: Reply<Job>,
    },
    Delete {
        id: JobId,
        reply: Reply<Job>,
    },
    Bulk {
        action: BulkAction,
        ids: Vec<JobId>,
        reply: Reply<Vec<BulkOutcome>>,
    },
    ChangePriority {
        id: JobId,
        priority: Priority,
        reply: Reply<Job>,
    },
    SetPaused {
        paused: bool,
        reply: Reply<()>,
    },
    Interrupt {
        id: JobId,
        token: LeaseToken,
        reply: Reply<Job>,
    },
    PromoteSegmenter {
        segmenter: SegmenterId,
        reply: Reply<Vec<JobId>>,
    },
    Sweep {
        reply: Reply<SweepReport>,
    },
    Retain {
        retention: Retention,
        limit: usize,
        reply: Reply<RetentionReport>,
    },
}

impl Op {
    /// Whether the caller is told only after the commit reached the disk. Leases, heartbeats,
    /// progress and sweeps may be lost in a crash: the next open requeues every active job anyway.
    fn durable(&self) -> bool {
        !matches!(
            self,
            Op::Lease { .. } | Op::Heartbeat { .. } | Op::Sweep { .. }
        )
    }

    /// Answers the caller with `why`, without doing anything.
    fn refuse(self, why: &Refusal) {
        fn no<T>(reply: Reply<T>, why: &Refusal) {
            let _ = reply.send(Err(why.error()));
        }
        match self {
            Op::Enqueue { reply, .. } => no(reply, why),
            Op::EnqueueMarked { reply, .. } => no(reply, why),
            Op::Lease { reply, .. } => no(reply, why),
            Op::Heartbeat { reply, .. } => no(reply, why),
            Op::Complete { reply, .. } => no(reply, why),
            Op::Fail { reply, .. } => no(reply, why),
            Op::Release { reply, .. } => no(reply, why),
            Op::Cancel { reply, .. } => no(reply, why),
            Op::Retry { reply, .. } => no(reply, why),
            Op::Delete { reply, .. } => no(reply, why),
            Op::Bulk { reply, .. } => no(reply, why),
            Op::ChangePriority { reply, .. } => no(reply, why),
            Op::SetPaused { reply, .. } => no(reply, why),
            Op::Interrupt { reply, .. } => no(reply, why),
            Op::PromoteSegmenter { reply, .. } => no(reply, why),
            Op::Sweep { reply, .. } => no(reply, why),
            Op::Retain { reply, .. } => no(reply, why),
        }
    }
}

/// Why a batch's commands were refused, as each of their callers hears it.
#[derive(Clone, Debug)]
pub(crate) enum Refusal {
    /// The queue failed and stopped, or the storage engine failed this batch.
    Storage(String),
    /// There was no room for the batch; the queue goes on once there is.
    DiskFull(String),
}

impl Refusal {
    pub(crate) fn of(e: &QueueError) -> Refusal {
        match e {
            QueueError::DiskFull { detail } => Refusal::DiskFull(detail.clone()),
            e => Refusal::Storage(e.to_string()),
        }
    }

    pub(crate) fn error(&self) -> QueueError {
        match self {
            Refusal::Storage(msg) => QueueError::Storage(msg.clone().into()),
            Refusal::DiskFull(detail) => QueueError::DiskFull {
                detail: detail.clone(),
            },
        }
    }
}

/// Sends an operation's answer once the batch's commit is known.
type Finish = Box<dyn FnOnce(Option<&Refusal>) + Send>;

fn finish<T: Send + 'static>(reply: Reply<T>, result: Result<T, QueueError>) -> Finish {
    Box::new(move |commit_failed| {
        let answer = match commit_failed {
            None => result,
            Some(why) => Err(why.error()),
        };
        // The caller may have gone away; its answer is then nobody's business.
        let _ = reply.send(answer);
    })
}

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

/// Redoes the log records that the last durable commit does not include, then starts a new
/// generation, in one durable transaction. Runs at open, before anything else writes, and when
/// the writer reopens the database. Returns where the log starts and how many records were
/// redone.
pub(crate) fn replay(
    store: &Store,
    wal: &Wal,
    existed: bool,
) -> Result<(Position, usize), QueueError> {
    let tx = store.db.begin_write()?;
    let (generation, lsn, redone);
    {
        let mut t = Tables::open(&tx)?;
        let meta = |t: &mut Tables<'_>, key: &str, absent: u64| -> Result<u64, QueueError> {
            Ok(t.meta()?.get(key)?.map_or(absent, |v| v.value()))
        };
        let previous = meta(&mut t, META_WAL_GENERATION, 0)?;
        let after = meta(&mut t, META_WAL_LSN, 0)?;
        if !existed && meta(&mut t, META_WAL_CLEAN, 1)? == 0 {
            tracing::error!(
                wal = %wal.path().display(),
                "the write-ahead log is missing after an unclean shutdown: changes acknowledged since the last checkpoint are lost"
            );
        }
        let format = meta(&mut t, META_WAL_FORMAT, 1)?;
        let records = wal.replay(previous, after, format)?;
        for record in &records {
            redo(&mut t, &record.payload)?;
        }
        redone = records.len();
        generation = super::wal::new_generation(previous);
        lsn = after + redone as u64;
        t.meta()?.insert(META_WAL_GENERATION, generation)?;
        t.meta()?.insert(META_WAL_LSN, lsn)?;
        t.meta()?.insert(META_WAL_CLEAN, 0)?;
        t.meta()?.insert(META_WAL_FORMAT, super::wal::FORMAT)?;
    }
    tx.commit()?;
    Ok((Position { generation, lsn }, redone))
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
                writer.run_batch(batch.into_iter().map(|cmd| cmd.0).collect());
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

/// Requeues every job still `active` in the file: the process that leased it is gone. Runs in its
/// own durable transaction before the writer starts. The attempt is refunded, since the job did
/// not fail; a job that keeps being interrupted (a crash loop, say) fails after `max_attempts`.
pub(crate) fn recover_orphans(
    store: &Store,
    options: &QueueOptions,
    now: Millis,
) -> Result<Committed, QueueError> {
    let tx = store.db.begin_write()?;
    let committed;
    {
        let mut b = Batch::open(&tx, options, now)?;
        let active = due(&**b.t.leases()?, Millis::MAX)?;
        for raw in active {
            let mut job = b.t.job(JobId(raw))?;
            b.leave(&job)?;
            job.interruptions += 1;
            job.lease_until = None;
            if job.interruptions > job.max_attempts {
                job.last_error = Some(JobError::permanent(
                    ErrorCode::INTERRUPTED,
                    format!(
                        "the job was running when spheroseg stopped {} times; it may be what stops it",
                        job.interruptions
                    ),
                ));
                b.finish_as(&mut job, JobState::Failed)?;
                b.enter(&job)?;
                b.record(&job, Change::Failed);
            } else {
                job.attempts = job.attempts.saturating_sub(1);
                b.requeue(&mut job)?;
                b.enter(&job)?;
                b.record(
                    &job,
                    Change::Requeued {
                        reason: Requeue::Orphan,
                    },
                );
            }
        }
        b.flush()?;
        committed = std::mem::take(&mut b.committed);
    }
    tx.commit()?;
    Ok(committed)
}

/// Waits for the next message on a channel (commands for the writer, work for the sync thread). A
/// caller that awaits each call sends its next command some tens of microseconds after its reply
/// (its task has to be woken and scheduled first); putting the thread to sleep and waking it again
/// would add about as much to every call. So while messages keep coming that close together, the
/// thread first polls for up to [`Waiter::SPIN`], yielding its core between polls, and only then
/// sleeps; after a longer quiet spell it sleeps at once, so an idle queue costs no CPU. On this
/// 2-core machine a 50 µs window missed most of a single producer's next calls; 100 to 250 µs
/// caught them (one awaited enqueue went from 0.79 to 0.86-1.0 × the disk's append+fdatasync rate).
#[derive(Default)]
struct Waiter {
    /// The last message came within a few windows of the one before it.
    busy: bool,
}

impl Waiter {
    const SPIN: Duration = Duration::from_micros(100);

    /// The next message and every other one already waiting, up to `max` in all; `None` once the
    /// channel is closed and empty.
    fn batch<T>(&mut self, rx: &crossbeam_channel::Receiver<T>, max: usize) -> Option<Vec<T>> {
        let first = self.next(rx)?;
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(max.saturating_sub(1)));
        Some(batch)
    }

    fn next<T>(&mut self, rx: &crossbeam_channel::Receiver<T>) -> Option<T> {
        let start = Instant::now();
        if self.busy {
            while start.elapsed() < Self::SPIN {
                match rx.try_recv() {
                    Ok(cmd) => return Some(cmd),
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                    Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
                }
            }
        }
        let cmd = rx.recv().ok();
        self.busy = start.elapsed() < 4 * Self::SPIN;
        cmd
    }
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

/// What the writer must do before it takes changes again, after a commit (or the opening) failed
/// for lack of space.
struct Pending {
    why: String,
    /// The storage engine failed a write and refuses everything until the database is reopened.
    reopen: bool,
    /// The opening's recovery (requeueing orphans) has not run.
    recover: bool,
    /// The log is redone and the database current (the reserve made room for it): all that is
    /// left is room for the reserve again.
    caught_up: bool,
    tried: Instant,
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

    /// Why this batch is refused before it starts: the queue stopped, or it still waits for
    /// room (and trying again, at most every [`ROOM_RETRY`], did not find it).
    fn refusal(&mut self) -> Option<Refusal> {
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
    fn reopen(&mut self) {
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
    fn repair(&mut self) {
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

    /// Stops the queue after a failure that left the log and redb out of step.
    fn fail_stop(&self, e: &QueueError) {
        let msg = format!("{e}; the queue accepts no more changes: restart spheroseg");
        if self.status.fail(msg) {
            tracing::error!(error = %e, "queue commit failed; the queue accepts no more changes until restarted");
        }
    }

    /// After a commit failed for lack of space: the database must be reopened, and the batch's
    /// error is the caller's.
    fn short_of_space(&mut self, e: QueueError) -> QueueError {
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

mod batch;
mod marks;
mod ops;
mod status;
mod syncer;
