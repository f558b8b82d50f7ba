//! One transaction's worth of work: the batch state the operations (`writer/ops.rs`) share, the
//! dispatch from a command to its operation, and the bookkeeping every state change goes through
//! (indexes, counters, image references, the sequence number).
//!
//! Counter and image-reference changes are summed in memory and written once per batch by
//! [`Batch::flush`], which also spills the ready index's tail.

use std::collections::HashMap;

use redb::ReadableTable;

use super::{Finish, Op, Refusal, Reply, finish};
use crate::queue::QueueError;
use crate::queue::QueueOptions;
use crate::queue::model::{
    Change, Committed, Job, JobError, JobId, JobState, LeaseToken, Millis, Transition,
};
use crate::queue::store::{
    META_NEXT_SEQ, META_PAUSED, Tables, count_key, index_insert, index_remove, spill_ready_tail,
};

/// After a commit: what the in-memory statistics learn.
pub(super) enum Observed {
    Wait(u64),
    /// A job became completed, failed or cancelled.
    Finished {
        run_ms: Option<u64>,
        state: JobState,
    },
}

/// One transaction's worth of work.
pub(super) struct Batch<'a> {
    pub(super) t: Tables<'a>,
    pub(super) options: &'a QueueOptions,
    pub(super) now: Millis,
    pub(super) next_seq: u64,
    pub(super) seq_dirty: bool,
    pub(super) counts: [[i64; 10]; 6],
    pub(super) image_refs: HashMap<String, i64>,
    pub(super) observed: Vec<Observed>,
    /// The batch's transitions, for the queue's listener (see [`Batch::record`]).
    pub(super) committed: Committed,
    /// Whether anything became leasable (a job queued, the queue resumed).
    pub(super) wake: bool,
    /// How many of `committed`'s transitions and deletions are in the jobs' histories already.
    pub(super) history_at: (usize, usize),
}

/// `Err` only for failures that must abort the whole batch (storage); refusals go to the reply.
fn answer<T: Send + 'static>(
    reply: Reply<T>,
    r: Result<T, QueueError>,
) -> Result<Finish, QueueError> {
    match r {
        Err(e @ (QueueError::Storage(_) | QueueError::DiskFull { .. })) => {
            let e = e.classify();
            let _ = reply.send(Err(Refusal::of(&e).error()));
            Err(e)
        }
        r => Ok(finish(reply, r)),
    }
}

impl<'a> Batch<'a> {
    pub(super) fn open(
        tx: &'a redb::WriteTransaction,
        options: &'a QueueOptions,
        now: Millis,
    ) -> Result<Self, QueueError> {
        let mut t = Tables::open(tx)?;
        let next_seq = t.meta()?.get(META_NEXT_SEQ)?.map_or(0, |v| v.value());
        Ok(Batch {
            t,
            options,
            now,
            next_seq,
            seq_dirty: false,
            counts: [[0; 10]; 6],
            image_refs: HashMap::new(),
            observed: Vec::new(),
            committed: Committed::default(),
            wake: false,
            history_at: (0, 0),
        })
    }

    /// Applies one operation; its answer, and whether the answer may go out as soon as the
    /// batch committed, before earlier batches are durable. Heartbeats and leases: nothing is
    /// acknowledged by them, and a worker should not wait behind other callers' syncs to keep
    /// its lease or to start its next job. A lease lost to a power cut leaves its job queued,
    /// with no attempt spent; the log holds records in order, so any later durable change (the
    /// job's result) makes the lease durable first. The job's `started` event still comes
    /// after the sync; progress reported before it follows it (`EventBus::publish_progress`).
    pub(super) fn apply(&mut self, op: Op) -> Result<(Finish, bool), QueueError> {
        let immediate = matches!(op, Op::Heartbeat { .. } | Op::Lease { .. });
        self.apply_op(op).map(|f| (f, immediate))
    }

    fn apply_op(&mut self, op: Op) -> Result<Finish, QueueError> {
        match op {
            Op::Enqueue { jobs, reply } => {
                let r = self.enqueue(jobs);
                answer(reply, r)
            }
            Op::EnqueueMarked { jobs, marks, reply } => {
                let r = self.enqueue_marked(jobs, marks);
                answer(reply, r)
            }
            Op::Lease {
                n,
                ttl,
                admit,
                reply,
            } => {
                let r = self.lease(n, ttl, admit);
                answer(reply, r)
            }
            Op::Heartbeat { leases, ttl, reply } => {
                let r = self.heartbeat(&leases, ttl);
                answer(reply, r)
            }
            Op::Complete {
                id,
                token,
                result,
                objects,
                reply,
            } => {
                let r = self.complete(id, token, &result, objects);
                answer(reply, r)
            }
            Op::Fail {
                id,
                token,
                error,
                reply,
            } => {
                let r = self.fail(id, token, error);
                answer(reply, r)
            }
            Op::Release {
                id,
                token,
                until,
                reason,
                reply,
            } => {
                let r = self.release(id, token, until, reason);
                answer(reply, r)
            }
            Op::Cancel { id, reply } => {
                let r = self.cancel(id);
                answer(reply, r)
            }
            Op::Retry { id, reply } => {
                let r = self.retry(id);
                answer(reply, r)
            }
            Op::Delete { id, reply } => {
                let r = self.delete(id).map(|(job, _)| job);
                answer(reply, r)
            }
            Op::Bulk { action, ids, reply } => {
                let r = self.bulk(action, &ids);
                answer(reply, r)
            }
            Op::ChangePriority {
                id,
                priority,
                reply,
            } => {
                let r = self.change_priority(id, priority);
                answer(reply, r)
            }
            Op::SetPaused { paused, reply } => {
                let r = self
                    .t
                    .meta()?
                    .insert(META_PAUSED, u64::from(paused))
                    .map(|_| ())
                    .map_err(QueueError::from);
                self.wake |= !paused;
                answer(reply, r)
            }
            Op::Interrupt { id, token, reply } => {
                let r = self.interrupt(id, token);
                answer(reply, r)
            }
            Op::AddVersion { id, version, reply } => {
                let r = self.add_version(id, version);
                answer(reply, r)
            }
            Op::PromoteSegmenter { segmenter, reply } => {
                let r = self.promote_segmenter(&segmenter);
                answer(reply, r)
            }
            Op::Sweep { reply } => {
                let r = self.sweep();
                answer(reply, r)
            }
            Op::Retain {
                retention,
                limit,
                reply,
            } => {
                let r = self.retain(&retention, limit);
                answer(reply, r)
            }
            Op::Ping { reply } => answer(reply, Ok(())),
            // `Writer::run` takes backups out of batches; one here would be a bug.
            Op::Backup { reply, .. } => answer(
                reply,
                Err(QueueError::Storage(
                    "a backup cannot run inside a batch".into(),
                )),
            ),
        }
    }

    // ---- bookkeeping shared by the operations ----

    /// Records a transition of `job` (as it now is) for the queue's listener. Called once an
    /// operation's writes are done, so a refused operation records nothing.
    pub(super) fn record(&mut self, job: &Job, change: Change) {
        if job.state == JobState::Queued {
            self.wake = true;
        }
        self.committed.transitions.push(Transition {
            job: job.clone(),
            change,
        });
    }

    /// Takes a job out of its state's indexes and counters (before its state changes).
    pub(super) fn leave(&mut self, job: &Job) -> Result<(), QueueError> {
        index_remove(&mut self.t, job)?;
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] -= 1;
        Ok(())
    }

    /// Puts a job into its (new) state's indexes and counters and writes the record.
    pub(super) fn enter(&mut self, job: &Job) -> Result<(), QueueError> {
        index_insert(&mut self.t, job, self.options.ready_tail_spill)?;
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] += 1;
        self.t.put_job(job)
    }

    pub(super) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        self.seq_dirty = true;
        s
    }

    /// A queued job no one can run before `until` becomes delayed until then, with `reason`,
    /// without a lease or an attempt (`Change::Held`).
    pub(super) fn delay(
        &mut self,
        mut job: Job,
        until: Millis,
        reason: JobError,
    ) -> Result<(), QueueError> {
        self.leave(&job)?;
        job.state = JobState::Delayed;
        job.run_at = Some(until.max(self.now));
        job.last_error = Some(reason);
        job.updated_at = self.now;
        self.enter(&job)?;
        self.record(&job, Change::Held);
        Ok(())
    }

    /// Makes a job queued at the back of its priority level.
    pub(super) fn requeue(&mut self, job: &mut Job) -> Result<(), QueueError> {
        job.state = JobState::Queued;
        job.seq = self.take_seq();
        job.queued_at = self.now;
        job.run_at = None;
        job.lease_until = None;
        job.updated_at = self.now;
        Ok(())
    }

    /// Makes a job completed, failed or cancelled; failed and cancelled release the dedupe key.
    pub(super) fn finish_as(&mut self, job: &mut Job, state: JobState) -> Result<(), QueueError> {
        job.state = state;
        job.finished_at = Some(self.now);
        job.run_at = None;
        job.lease_until = None;
        job.updated_at = self.now;
        if state != JobState::Completed {
            self.release_dedupe(job)?;
        }
        self.observed.push(Observed::Finished {
            run_ms: job.started_at.map(|s| self.now.saturating_sub(s)),
            state,
        });
        Ok(())
    }

    pub(super) fn release_dedupe(&mut self, job: &Job) -> Result<(), QueueError> {
        if let Some(key) = &job.dedupe_key {
            let holds = self
                .t
                .dedupe()?
                .get(key.as_str())?
                .is_some_and(|v| v.value() == job.id.0);
            if holds {
                self.t.dedupe()?.remove(key.as_str())?;
            }
        }
        Ok(())
    }

    /// Checks that `token` is the job's current lease, and the job active.
    pub(super) fn fenced(&mut self, id: JobId, token: LeaseToken) -> Result<Job, QueueError> {
        let job = self.t.job(id)?;
        if job.state != JobState::Active || job.lease != token {
            return Err(QueueError::Stale {
                id,
                token,
                current: job.lease,
                state: job.state,
            });
        }
        Ok(job)
    }

    /// Counts in `state` including this batch's unwritten changes.
    pub(super) fn count(&mut self, state: JobState) -> Result<u64, QueueError> {
        let s = state.index();
        let mut n: i64 = 0;
        for p in 1..=10u8 {
            n += self
                .t
                .meta()?
                .get(count_key(state, p).as_str())?
                .map_or(0, |v| v.value()) as i64;
            n += self.counts[s as usize][p as usize - 1];
        }
        Ok(n.max(0) as u64)
    }

    /// Writes the batch's history entries, the summed counter and image-reference changes and
    /// the sequence counter.
    pub(super) fn flush(&mut self) -> Result<(), QueueError> {
        self.write_history()?;
        for state in JobState::ALL {
            for p in 1..=10u8 {
                let d = std::mem::take(&mut self.counts[state.index() as usize][p as usize - 1]);
                if d == 0 {
                    continue;
                }
                let key = count_key(state, p);
                let cur = self.t.meta()?.get(key.as_str())?.map_or(0, |v| v.value()) as i64;
                let n = cur + d;
                if n < 0 {
                    // Only a damaged file gets here (a log record that passed its checksum but
                    // was not written by spheroseg): the counter is clamped rather than the
                    // process stopped (`rebuild_indexes` recounts from the jobs).
                    tracing::error!(%state, priority = p, count = n, "a job counter went negative; the database is inconsistent");
                }
                if n <= 0 {
                    self.t.meta()?.remove(key.as_str())?;
                } else {
                    self.t.meta()?.insert(key.as_str(), n as u64)?;
                }
            }
        }
        for (hash, d) in std::mem::take(&mut self.image_refs) {
            self.add_image_ref(&hash, d)?;
        }
        if self.seq_dirty {
            self.t.meta()?.insert(META_NEXT_SEQ, self.next_seq)?;
            self.seq_dirty = false;
        }
        spill_ready_tail(&mut self.t, self.options.ready_tail_spill)?;
        Ok(())
    }

    /// Applies a reference change now; returns true when no job refers to the image any more.
    pub(super) fn add_image_ref(&mut self, hash: &str, d: i64) -> Result<bool, QueueError> {
        let pending = self.image_refs.remove(hash).unwrap_or(0);
        let cur = self.t.image_refs()?.get(hash)?.map_or(0, |v| v.value()) as i64;
        let n = cur + pending + d;
        if n <= 0 {
            self.t.image_refs()?.remove(hash)?;
            Ok(true)
        } else {
            self.t.image_refs()?.insert(hash, n as u64)?;
            Ok(false)
        }
    }
}
