//! What a commit did, as the writer records it for the queue's listener: each job's transition
//! (the job as it is after it, and what changed) in commit order, and the jobs removed.

use super::{Job, JobId, JobState, Priority};

/// A state transition the writer committed: the job as it is after it, and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub job: Job,
    pub change: Change,
}

/// What a commit did to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Enqueued: queued, or delayed when it was given a start time.
    Queued,
    /// A person put a failed or cancelled job back in the queue.
    Retried,
    /// Leased to a worker: active.
    Started,
    Completed,
    /// A transient failure with attempts left: delayed until its backoff ends.
    Retrying,
    /// Handed back without spending its attempt (its ML service's breaker is open): delayed.
    Held,
    /// Its attempts are spent or its error is permanent.
    Failed,
    Cancelled {
        was: JobState,
    },
    /// Stopped by a shutdown while it ran: queued again, its attempt refunded.
    Interrupted,
    /// Queued again without a person: see the reason.
    Requeued {
        reason: Requeue,
    },
    PriorityChanged {
        from: Priority,
    },
    /// A completed job's result got a new version (corrected by hand, or an older one restored).
    ResultVersioned {
        version: u32,
        restored_from: Option<u32>,
    },
}

/// Why a job was queued again by the queue itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Its retry backoff (or hold) ended.
    Due,
    /// Its lease ran out: the worker stopped reporting.
    LeaseExpired,
    /// It was active when the previous process stopped.
    Orphan,
}

impl Requeue {
    pub fn as_str(self) -> &'static str {
        match self {
            Requeue::Due => "due",
            Requeue::LeaseExpired => "lease-expired",
            Requeue::Orphan => "orphan",
        }
    }
}

/// What one durable commit did, handed to the queue's listener in commit order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    pub transitions: Vec<Transition>,
    /// Jobs removed (bulk delete, retention).
    pub deleted: Vec<JobId>,
}

impl Committed {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.deleted.is_empty()
    }
}
