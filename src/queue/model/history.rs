//! A job's history: what happened to it, one entry per transition the writer committed, in
//! commit order, and the attempts read from those entries (each lease opens one; the transition
//! that ends that lease closes it with its outcome and error).
//!
//! What the job record holds is not stored when it happens. The enqueue: `created_at` says when,
//! and a read puts it first ([`History::with_enqueue`]). A lease: `started_at`, the lease token,
//! attempts and segmenter say it, so it is stored with the job's next transition, which always
//! follows before another lease ([`History::catch_up`]), and a read of a running job adds it. So
//! an enqueue writes no history, a lease batch does not touch the table, and a run costs one
//! write (see `benches/queue.rs`, (c) and (e)).
//!
//! Bounded: a job keeps at most [`History::MAX_ENTRIES`] entries. Past that the oldest go and
//! `dropped` counts them, so a job retried by hand for weeks cannot grow its record without
//! limit.

use serde::{Deserialize, Serialize};

use super::{Change, Job, JobError, JobState, LeaseToken, Millis, Priority, Requeue};
use crate::segment::SegmenterId;

/// One transition of a job, as its history keeps it (postcard, inside the history record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Millis,
    pub change: Change,
    /// The state the transition left the job in.
    pub state: JobState,
    /// The priority after it (a priority change's new one).
    pub priority: Priority,
    /// Attempts spent after it.
    pub attempts: u32,
    /// The lease after it: the one a `Started` took, and the one a transition that ends an
    /// attempt ended.
    pub lease: LeaseToken,
    /// The segmenter it was leased for (on `Started` only).
    pub segmenter: Option<SegmenterId>,
    /// The error it recorded: a failed attempt's, a lease that ran out, a hold's reason.
    pub error: Option<JobError>,
}

/// Everything a job's history holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Entries left out to keep the bound (the oldest).
    pub dropped: u32,
    /// The latest lease whose start is in `entries` (or was, before the bound dropped it).
    pub last_lease: u32,
}

/// One run of a job: from its lease to the transition that ended it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Attempts spent once it started (a refunded run and the one after it share a number).
    pub number: u32,
    pub lease: LeaseToken,
    pub segmenter: Option<SegmenterId>,
    pub started_at: Millis,
    /// `None` while it runs.
    pub ended_at: Option<Millis>,
    /// What ended it; `None` while it runs.
    pub outcome: Option<Change>,
    pub error: Option<JobError>,
}

impl History {
    /// The most entries a job keeps.
    pub const MAX_ENTRIES: usize = 64;

    /// Appends an entry, dropping the oldest past the bound.
    pub fn push(&mut self, entry: HistoryEntry) {
        if self.entries.len() >= Self::MAX_ENTRIES {
            self.entries.remove(0);
            self.dropped = self.dropped.saturating_add(1);
        }
        self.entries.push(entry);
    }

    /// Adds the start of `job`'s current lease, unless the history has it already: at `job`'s
    /// `started_at`, with `attempts` spent once it started and its `priority` then.
    pub(crate) fn catch_up(&mut self, job: &Job, attempts: u32, priority: Priority) {
        if job.lease.0 <= self.last_lease || job.started_at.is_none() {
            return;
        }
        self.last_lease = job.lease.0;
        self.push(HistoryEntry {
            at: job.started_at.unwrap_or(job.updated_at),
            change: Change::Started,
            state: JobState::Active,
            priority,
            attempts,
            lease: job.lease,
            segmenter: Some(job.segmenter.clone()),
            error: None,
        });
    }

    /// What a read shows of `job`: its enqueue, the stored entries, and the start of the
    /// attempt it runs now.
    pub(crate) fn of_job(self, job: &Job) -> History {
        let mut h = self.with_enqueue(job);
        if job.state == JobState::Active {
            h.catch_up(job, job.attempts, job.priority);
        }
        h
    }

    /// The stored entries of `job` with its enqueue first: queued at `created_at`, at the
    /// priority the first kept priority change started from (else the job's own).
    fn with_enqueue(mut self, job: &Job) -> History {
        let priority = self
            .entries
            .iter()
            .find_map(|e| match e.change {
                Change::PriorityChanged { from } => Some(from),
                _ => None,
            })
            .unwrap_or(job.priority);
        self.entries.insert(
            0,
            HistoryEntry {
                at: job.created_at,
                change: Change::Queued,
                state: JobState::Queued,
                priority,
                attempts: 0,
                lease: LeaseToken(0),
                segmenter: None,
                error: None,
            },
        );
        self
    }

    /// The attempts, oldest first. One whose start was dropped from the history is left out.
    pub fn attempts(&self) -> Vec<Attempt> {
        let mut out: Vec<Attempt> = Vec::new();
        for e in &self.entries {
            if e.change == Change::Started {
                out.push(Attempt {
                    number: e.attempts,
                    lease: e.lease,
                    segmenter: e.segmenter.clone(),
                    started_at: e.at,
                    ended_at: None,
                    outcome: None,
                    error: None,
                });
            } else if ends_attempt(e.change)
                && let Some(open) = out.last_mut().filter(|a| a.outcome.is_none())
                && open.lease == e.lease
            {
                open.ended_at = Some(e.at);
                open.outcome = Some(e.change);
                open.error = e.error.clone();
            }
        }
        out
    }
}

/// Whether a transition ends the attempt its lease belongs to (when the job was active).
fn ends_attempt(change: Change) -> bool {
    matches!(
        change,
        Change::Completed
            | Change::Retrying
            | Change::Held
            | Change::Failed
            | Change::Interrupted
            | Change::Cancelled {
                was: JobState::Active
            }
            | Change::Requeued {
                reason: Requeue::LeaseExpired | Requeue::Orphan
            }
    )
}

impl Change {
    /// The stable lowercase name of the change, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Queued => "queued",
            Change::Retried => "retried",
            Change::Started => "started",
            Change::Completed => "completed",
            Change::Retrying => "retrying",
            Change::Held => "held",
            Change::Failed => "failed",
            Change::Cancelled { .. } => "cancelled",
            Change::Interrupted => "interrupted",
            Change::Requeued { .. } => "requeued",
            Change::PriorityChanged { .. } => "priority_changed",
            Change::ResultVersioned { .. } => "result_corrected",
        }
    }

    /// Whether the entry of this change keeps the job's error (the others have none to keep).
    pub(crate) fn keeps_error(self) -> bool {
        matches!(
            self,
            Change::Retrying
                | Change::Held
                | Change::Failed
                | Change::Requeued {
                    reason: Requeue::LeaseExpired
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code::ErrorCode;

    fn entry(at: Millis, change: Change, lease: u32) -> HistoryEntry {
        HistoryEntry {
            at,
            change,
            state: JobState::Queued,
            priority: Priority::DEFAULT,
            attempts: lease,
            lease: LeaseToken(lease),
            segmenter: (change == Change::Started).then(SegmenterId::default),
            error: change
                .keeps_error()
                .then(|| JobError::transient(ErrorCode::INTERNAL_ERROR, format!("boom {lease}"))),
        }
    }

    #[test]
    fn attempts_pair_leases_with_their_ends() {
        let mut h = History::default();
        h.push(entry(2, Change::Started, 1));
        h.push(entry(3, Change::Retrying, 1));
        h.push(entry(
            4,
            Change::Requeued {
                reason: Requeue::Due,
            },
            1,
        ));
        h.push(entry(5, Change::Started, 2));
        h.push(entry(
            6,
            Change::PriorityChanged {
                from: Priority::MIN,
            },
            2,
        ));
        let a = h.attempts();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].outcome, Some(Change::Retrying));
        assert_eq!(a[0].ended_at, Some(3));
        assert_eq!(
            a[0].error.as_ref().map(|e| e.message.as_str()),
            Some("boom 1")
        );
        assert_eq!(
            (a[1].started_at, a[1].ended_at, a[1].outcome),
            (5, None, None)
        );
    }

    #[test]
    fn history_is_bounded_and_drops_the_oldest() {
        let mut h = History::default();
        for i in 0..200 {
            h.push(entry(i, Change::Started, i as u32));
        }
        assert_eq!(h.entries.len(), History::MAX_ENTRIES);
        assert_eq!(h.dropped, 200 - History::MAX_ENTRIES as u32);
        assert_eq!(h.entries[0].at, 200 - History::MAX_ENTRIES as u64);
        assert_eq!(h.entries.last().map(|e| e.at), Some(199));
    }
}
