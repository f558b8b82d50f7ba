//! What callers send the writer: one operation per command, with the channel its answer goes
//! back on, and why a refused batch's commands were refused.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;

use super::super::QueueError;
use super::super::model::{
    BulkAction, BulkOutcome, Enqueued, FailOutcome, Job, JobError, JobId, Lease, LeaseToken, Mark,
    Millis, NewJob, NewVersion, Priority, Retention, RetentionReport, SweepReport,
};
use crate::queue::backup::Hold;
use crate::segment::SegmenterId;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// Whether the dispatcher can take the next job (asked with its segmenter, in lease order): a
/// `false` ends the lease there, the job stays where it is.
pub type Admit = Box<dyn FnMut(&SegmenterId) -> bool + Send>;

/// What the dispatcher says of the next job in lease order (asked with its segmenter).
#[derive(Clone, Debug, PartialEq)]
pub enum Fit {
    /// Lease it.
    Take,
    /// End the lease here; the job stays where it is.
    Stop,
    /// Not now (what it needs is busy): it stays where it is, and the jobs queued behind it at
    /// its priority are asked next (never those of a lower one: strict priority). With aging on,
    /// as `Stop`.
    Skip,
    /// Nothing can run it before `until` (every service of its segmenter refuses calls): it
    /// becomes delayed until then without being leased (no attempt, no lease), with `reason`,
    /// and the lease goes on with the jobs behind it.
    Hold { until: Millis, reason: JobError },
}

/// The dispatcher's test of each job in lease order.
pub type Route = Box<dyn FnMut(&SegmenterId) -> Fit + Send>;

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
        admit: Option<Route>,
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
    AddVersion {
        id: JobId,
        version: NewVersion,
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
    /// Changes nothing: answered once the writer has run it through a transaction and the sync
    /// thread has passed it, so an answer shows both threads at work (the systemd watchdog).
    Ping {
        reply: Reply<()>,
    },
    /// Copy the database as every batch before this one left it to `to`, then run `hold`, with no
    /// batch in between (`writer/backup.rs`).
    Backup {
        to: PathBuf,
        hold: Option<Hold>,
        reply: Reply<Copied>,
    },
}

/// What the writer's part of a backup did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Copied {
    /// The size of the copy.
    pub(crate) bytes: u64,
    /// How long no batch could run: the checkpoint, the copy and the hold.
    pub(crate) paused: Duration,
}

impl Op {
    /// Whether the caller is told only after the commit reached the disk. Leases, heartbeats,
    /// progress and sweeps may be lost in a crash: the next open requeues every active job anyway.
    pub(super) fn durable(&self) -> bool {
        !matches!(
            self,
            Op::Lease { .. } | Op::Heartbeat { .. } | Op::Sweep { .. } | Op::Ping { .. }
        )
    }

    /// Answers the caller with `why`, without doing anything.
    pub(super) fn refuse(self, why: &Refusal) {
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
            Op::AddVersion { reply, .. } => no(reply, why),
            Op::PromoteSegmenter { reply, .. } => no(reply, why),
            Op::Sweep { reply, .. } => no(reply, why),
            Op::Retain { reply, .. } => no(reply, why),
            Op::Ping { reply } => no(reply, why),
            Op::Backup { reply, .. } => no(reply, why),
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
pub(super) type Finish = Box<dyn FnOnce(Option<&Refusal>) + Send>;

pub(super) fn finish<T: Send + 'static>(reply: Reply<T>, result: Result<T, QueueError>) -> Finish {
    Box::new(move |commit_failed| {
        let answer = match commit_failed {
            None => result,
            Some(why) => Err(why.error()),
        };
        // The caller may have gone away; its answer is then nobody's business.
        let _ = reply.send(answer);
    })
}
