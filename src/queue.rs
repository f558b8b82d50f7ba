//! The durable priority queue: the handle every other part of spheroseg uses.
//!
//! Writes go to the single writer thread (`queue/writer.rs`) as commands with a oneshot reply; the
//! writer group-commits everything waiting into one redb transaction. A call that must be durable
//! (enqueue, complete, fail, cancel, retry, priority, pause) returns only after its changes reached
//! the disk, through the write-ahead log (`queue/wal.rs`) that sits beside the database file;
//! lease, heartbeat, progress and sweep need no sync, which is safe because a crash turns every
//! `active` job back into a queued one at the next open. Reads take a redb snapshot on the caller's
//! thread. See DESIGN.md, "The queue: the contract". Opening, with its recovery, is in
//! `queue/open.rs`; the calls worker threads make without a runtime in `queue/blocking.rs`.

mod announce;
mod backup;
mod blocking;
mod check;
mod error;
mod model;
mod open;
mod ping;
mod reserve;
mod slot;
mod stats;
mod store;
mod wal;
mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use announce::Listener;
pub use backup::{Backup, Hold};
pub use blocking::Blocking;
pub use check::{Check, check};
pub use error::QueueError;
pub use model::{
    Backoff, BulkAction, BulkOutcome, Change, Committed, Enqueued, FailOutcome, ImageRef, Job,
    JobError, JobFilter, JobId, JobState, Lease, LeaseToken, Limit, Mark, Millis, NewJob,
    NewVersion, Page, Priority, Requeue, ResultRef, ResultVersion, Retention, RetentionReport,
    SweepReport, Transition,
};
pub use open::Recovery;
pub use stats::{CommitLatency, LogStats, Percentiles, QueueStats, StateCounts, Throughput};
pub use store::OpenReport;

use crate::clock::Clock;
use crate::segment::SegmenterId;
use slot::Slot;
use stats::Recent;
use store::Store;
pub use writer::{Admit, Fit, Route};
use writer::{Command, Op};

/// Jobs one [`Queue::lease_routed`] may hold beyond the `n` it may lease, and jobs it may skip.
pub const HOLDS_PER_LEASE: usize = 64;

/// How the queue behaves; built from `Config`.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    pub backoff: Backoff,
    /// Lift a waiting job one priority level per this much waiting; `None` is strict priority.
    pub aging: Option<Duration>,
    pub max_attempts: u32,
    /// redb page cache.
    pub cache_bytes: usize,
    /// The most commands one transaction takes.
    pub max_batch: usize,
    /// Size of the write-ahead log file, allocated once; when it is full the writer checkpoints.
    pub wal_bytes: u64,
    /// The longest time between checkpoints (durable redb commits) while changes come in. It
    /// bounds how much the log holds, and so how long a replay after a crash takes.
    pub checkpoint_every: Duration,
    /// Newly queued jobs collect in a small tail index and move to the main one in groups of more
    /// than this many (see `queue/store.rs`); about one 4 KiB leaf's worth by default.
    pub ready_tail_spill: u64,
    /// Checkpoints save redb's allocator state, so that opening after a crash need not rebuild
    /// it by walking every table (redb's quick repair; see `benches/recovery.rs`).
    pub quick_repair: bool,
    /// Space kept back beside the database (at most a quarter of its file system) so that a full
    /// disk still lets the writer bring the database up to date; 0 keeps none (`queue/reserve.rs`).
    pub reserve_bytes: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            backoff: Backoff::default(),
            aging: None,
            max_attempts: 3,
            cache_bytes: 64 << 20,
            max_batch: 4096,
            wal_bytes: 8 << 20,
            checkpoint_every: Duration::from_secs(2),
            ready_tail_spill: 100,
            quick_repair: true,
            reserve_bytes: 16 << 20,
        }
    }
}

/// The queue handle: cheap to clone, safe to use from any thread or task.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database, which the writer may reopen in place (see `queue/slot.rs`).
    store: Arc<Slot>,
    tx: Mutex<Option<crossbeam_channel::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recent: Arc<Mutex<Recent>>,
    clock: Arc<dyn Clock>,
    /// The writer's failure, if one stopped it, and its counters (see `queue/writer.rs`).
    status: Arc<writer::Status>,
    /// Who hears of commits: the listener, the dispatcher's notification.
    announcer: Arc<announce::Announcer>,
}

impl Queue {
    /// Installs the one listener that hears every durable commit's transitions, in commit order
    /// (the first thing it hears is what the opening recovery did).
    pub fn listen(&self, listener: Listener) {
        self.inner.announcer.listen(listener);
    }

    /// Fires when a job may have become leasable: queued, requeued, retried, resumed. The
    /// dispatcher waits on it; a notification while nobody waits is kept for the next wait.
    pub fn ready(&self) -> Arc<tokio::sync::Notify> {
        self.inner.announcer.ready()
    }

    /// Hands a running job back after a shutdown stopped it: queued again at once, its attempt
    /// refunded. Durable.
    pub async fn interrupt(&self, id: JobId, token: LeaseToken) -> Result<Job, QueueError> {
        self.call(|reply| Op::Interrupt { id, token, reply }).await
    }

    /// Stops the writer after it committed everything sent so far, and waits for it. Later calls on
    /// any clone fail with [`QueueError::Closed`].
    pub fn close(&self) {
        let sender = self.inner.tx.lock().expect("queue sender lock").take();
        drop(sender);
        let handle = self.inner.writer.lock().expect("queue writer lock").take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("queue writer thread panicked");
        }
        self.inner.store.close();
    }

    fn store(&self) -> Result<Arc<Store>, QueueError> {
        self.inner.store.get()
    }

    /// Why changes are refused for lack of space, until a commit succeeds again; `None` while
    /// the queue takes them.
    pub fn disk_full(&self) -> Option<String> {
        self.inner.status.disk_full()
    }

    fn send<T>(
        &self,
        make: impl FnOnce(writer::Reply<T>) -> Op,
    ) -> oneshot::Receiver<Result<T, QueueError>> {
        let (reply, rx) = oneshot::channel();
        let guard = self.inner.tx.lock().expect("queue sender lock");
        if let Some(tx) = guard.as_ref() {
            // A send error drops the reply, which the receiver reports as Closed.
            let _ = tx.send(Command(make(reply)));
        }
        rx
    }

    async fn call<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Op) -> Result<T, QueueError> {
        self.send(make).await.unwrap_or(Err(QueueError::Closed))
    }

    fn call_blocking<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Op) -> Result<T, QueueError> {
        self.send(make)
            .blocking_recv()
            .unwrap_or(Err(QueueError::Closed))
    }

    /// The calls a worker thread makes, answered on that thread: the writer is another OS
    /// thread, so they need no async runtime. Never call them from inside one.
    pub fn blocking(&self) -> Blocking<'_> {
        Blocking(self)
    }

    /// Enqueues one job; durable when it returns. With a dedupe key that a live job holds, returns
    /// that job instead.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let mut v = self.enqueue_batch(vec![job]).await?;
        v.pop().ok_or(QueueError::Closed)
    }

    /// Enqueues many jobs in one commit: all of them or, if one is invalid, none.
    pub async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, QueueError> {
        self.call(|reply| Op::Enqueue { jobs, reply }).await
    }

    /// Enqueues `jobs` as [`Queue::enqueue_batch`] does and writes `marks` in the same durable
    /// commit: all of it, or (an invalid job or mark) none. `jobs` may be empty.
    pub async fn enqueue_marked(
        &self,
        jobs: Vec<NewJob>,
        marks: Vec<Mark>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        self.call(|reply| Op::EnqueueMarked { jobs, marks, reply })
            .await
    }

    /// The live job (not failed, cancelled or removed) that holds the dedupe key `key`.
    pub fn dedupe_holder(&self, key: &str) -> Result<Option<JobId>, QueueError> {
        self.store()?.dedupe_holder(key)
    }

    /// Every mark whose key starts with `prefix`, in key order, with the job ids appended to
    /// its value (see [`Mark`]).
    pub fn marks(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        self.store()?.marks(prefix)
    }

    /// The names of the projects that hold at least one job, in name order.
    pub fn projects(&self) -> Result<Vec<String>, QueueError> {
        self.store()?.projects()
    }

    /// Leases up to `n` jobs, highest priority first (FIFO inside a level), for `ttl`.
    pub async fn lease(&self, n: usize, ttl: Duration) -> Result<Vec<Lease>, QueueError> {
        self.call(|reply| Op::Lease {
            n,
            ttl,
            admit: None,
            reply,
        })
        .await
    }

    /// [`Queue::lease`], asking `admit` about each job in lease order before it is leased: the
    /// first job it refuses ends the lease and stays queued (strict order, no skipping).
    pub async fn lease_where(
        &self,
        n: usize,
        ttl: Duration,
        mut admit: Admit,
    ) -> Result<Vec<Lease>, QueueError> {
        let route: Route = Box::new(
            move |s: &SegmenterId| {
                if admit(s) { Fit::Take } else { Fit::Stop }
            },
        );
        self.lease_routed(n, ttl, route).await
    }

    /// [`Queue::lease_where`] whose test may also hold a job (`Fit::Hold`: it becomes delayed
    /// without a lease, and the jobs behind it are asked next) or skip it (`Fit::Skip`: it stays
    /// queued, and the jobs behind it at its priority are asked next). At most
    /// `n + HOLDS_PER_LEASE` jobs are held and `HOLDS_PER_LEASE` skipped per call, so one lease's
    /// commit stays small.
    pub async fn lease_routed(
        &self,
        n: usize,
        ttl: Duration,
        route: Route,
    ) -> Result<Vec<Lease>, QueueError> {
        self.call(|reply| Op::Lease {
            n,
            ttl,
            admit: Some(route),
            reply,
        })
        .await
    }

    /// Extends the leases of running jobs by `ttl` from now. Returns the ones that are no longer
    /// current (cancelled, expired and re-leased): their workers should stop.
    pub async fn heartbeat(
        &self,
        leases: Vec<(JobId, LeaseToken)>,
        ttl: Duration,
    ) -> Result<Vec<JobId>, QueueError> {
        self.call(|reply| Op::Heartbeat { leases, ttl, reply })
            .await
    }

    /// Completes an attempt and stores its result in the same durable commit.
    /// `objects` is how many the result holds (kept with the job for listings and events).
    pub async fn complete(
        &self,
        id: JobId,
        token: LeaseToken,
        result: Vec<u8>,
        objects: u32,
    ) -> Result<Job, QueueError> {
        self.call(|reply| Op::Complete {
            id,
            token,
            result,
            objects,
            reply,
        })
        .await
    }

    /// Queues every delayed job of `segmenter` now, e.g. once its ML service is back. Durable.
    pub async fn promote_segmenter(
        &self,
        segmenter: SegmenterId,
    ) -> Result<Vec<JobId>, QueueError> {
        self.call(|reply| Op::PromoteSegmenter { segmenter, reply })
            .await
    }

    /// [`Queue::complete`], sent now and answered later: the caller (a worker thread) goes on to
    /// its next job while the commit becomes durable; the future says how it went.
    pub fn complete_detached(
        &self,
        id: JobId,
        token: LeaseToken,
        result: Vec<u8>,
        objects: u32,
    ) -> impl Future<Output = Result<Job, QueueError>> + Send + 'static {
        let rx = self.send(|reply| Op::Complete {
            id,
            token,
            result,
            objects,
            reply,
        });
        async move { rx.await.unwrap_or(Err(QueueError::Closed)) }
    }

    /// Fails an attempt: a transient error with attempts left waits out a backoff, anything else
    /// fails the job.
    pub async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        error: JobError,
    ) -> Result<FailOutcome, QueueError> {
        self.call(|reply| Op::Fail {
            id,
            token,
            error,
            reply,
        })
        .await
    }

    /// Hands a leased job back without spending its attempt, to run again at `until` (e.g. while
    /// its ML service's circuit breaker is open). Durable.
    pub async fn release(
        &self,
        id: JobId,
        token: LeaseToken,
        until: Millis,
        reason: JobError,
    ) -> Result<Job, QueueError> {
        self.call(|reply| Op::Release {
            id,
            token,
            until,
            reason,
            reply,
        })
        .await
    }

    /// Whether any job refers to the image with this hash.
    pub fn image_referenced(&self, hash: &str) -> Result<bool, QueueError> {
        self.store()?.image_referenced(hash)
    }

    /// Cancels a queued, delayed or active job. Returns the job as it was before, so the caller can
    /// stop a running worker when it was active.
    pub async fn cancel(&self, id: JobId) -> Result<Job, QueueError> {
        self.call(|reply| Op::Cancel { id, reply }).await
    }

    /// Puts a failed or cancelled job back in the queue with a fresh set of attempts.
    pub async fn retry(&self, id: JobId) -> Result<Job, QueueError> {
        self.call(|reply| Op::Retry { id, reply }).await
    }

    /// Applies `action` to every job in `ids` it applies to, in one durable commit; the others
    /// (in another state, or gone) are skipped. Returns the jobs it changed.
    pub async fn bulk(
        &self,
        action: BulkAction,
        ids: Vec<JobId>,
    ) -> Result<Vec<BulkOutcome>, QueueError> {
        self.call(|reply| Op::Bulk { action, ids, reply }).await
    }

    /// Removes a finished job and its result.
    pub async fn delete(&self, id: JobId) -> Result<Job, QueueError> {
        self.call(|reply| Op::Delete { id, reply }).await
    }

    pub async fn change_priority(&self, id: JobId, priority: Priority) -> Result<Job, QueueError> {
        self.call(|reply| Op::ChangePriority {
            id,
            priority,
            reply,
        })
        .await
    }

    /// Pauses or resumes leasing; persisted across restarts.
    pub async fn set_paused(&self, paused: bool) -> Result<(), QueueError> {
        self.call(|reply| Op::SetPaused { paused, reply }).await
    }

    /// Moves delayed jobs whose backoff ended to the queue and requeues expired leases.
    pub async fn sweep(&self) -> Result<SweepReport, QueueError> {
        self.call(|reply| Op::Sweep { reply }).await
    }

    /// Removes finished jobs past their age or count limits (at most `limit` per call).
    pub async fn retain(
        &self,
        retention: Retention,
        limit: usize,
    ) -> Result<RetentionReport, QueueError> {
        self.call(|reply| Op::Retain {
            retention,
            limit,
            reply,
        })
        .await
    }

    pub fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        self.store()?.get(id)
    }

    /// The stored result bytes of a completed job: its latest version.
    pub fn result(&self, id: JobId) -> Result<Option<Vec<u8>>, QueueError> {
        self.store()?.result(id)
    }

    /// The stored bytes of version `version` of a job's result (1 is the segmenter's).
    pub fn result_version(&self, id: JobId, version: u32) -> Result<Option<Vec<u8>>, QueueError> {
        self.store()?.result_version(id, version)
    }

    /// Stores a new version of a completed job's result beside the ones before, which stay; it
    /// becomes the latest. Refused with [`QueueError::StaleVersion`] unless `version.base` is the
    /// latest. Durable; announced as a [`Change::ResultVersioned`] transition.
    pub async fn add_version(&self, id: JobId, version: NewVersion) -> Result<Job, QueueError> {
        self.call(|reply| Op::AddVersion { id, version, reply })
            .await
    }

    /// One page of jobs; pass the previous page's `next` as `cursor`. The order depends on the
    /// filter (newest first, or the state's natural order): see `Store::list`.
    pub fn list(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, QueueError> {
        self.store()?.list(filter, cursor, limit)
    }

    pub fn paused(&self) -> Result<bool, QueueError> {
        self.store()?.paused()
    }

    /// When a delayed job or a lease next falls due (for the dispatcher's timer).
    pub fn next_due(&self) -> Result<Option<Millis>, QueueError> {
        self.store()?.next_due()
    }

    /// Counts, oldest wait and pause from one snapshot, plus the recent-window figures. Fails once
    /// a storage failure stopped the queue, so health checks report it.
    pub fn stats(&self) -> Result<QueueStats, QueueError> {
        if let Some(msg) = self.inner.status.failure() {
            return Err(QueueError::Storage(msg.into()));
        }
        let now = self.inner.clock.now();
        let store = self.store()?;
        let snap = store.snapshot()?;
        let mut stats = QueueStats::from_counts(snap.counts);
        stats.oldest_queued_ms = snap.oldest_queued_at.map(|at| now.saturating_sub(at));
        stats.paused = snap.paused;
        stats.database_bytes = store.file_size();
        stats.log = self.inner.status.log_stats();
        self.inner
            .recent
            .lock()
            .expect("recent stats lock")
            .fill(now, &mut stats);
        Ok(stats)
    }
}

#[cfg(test)]
impl Queue {
    /// Stops the queue as a failed log sync would.
    fn fail_for_test(&self, msg: &str) {
        self.inner.status.fail(msg.into());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle going away closes the channel; join so the file is closed on return.
        let sender = self.tx.get_mut().map(Option::take);
        drop(sender);
        if let Ok(slot) = self.writer.get_mut()
            && let Some(handle) = slot.take()
        {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests;
