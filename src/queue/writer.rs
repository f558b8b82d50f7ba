//! The writer thread: the only code that opens write transactions.
//!
//! It blocks for one command, takes every other command already waiting (up to `max_batch`), applies
//! them in order inside one transaction and commits once: durably if any command needs it, else
//! with `Durability::None` (redb persists those with the next durable commit). Replies go out only
//! after the commit; if the commit fails, every command of the batch gets the error and none of
//! their effects remain.
//!
//! Each operation checks everything it needs before its first write, so an operation that is
//! refused (stale attempt, wrong state, invalid job) leaves nothing behind in the shared
//! transaction. Counter and image-reference changes are summed in memory and written once per
//! batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Durability, ReadableTable};
use tokio::sync::oneshot;

use super::QueueError;
use super::QueueOptions;
use super::model::{
    Enqueued, FailOutcome, Job, JobError, JobId, JobState, Lease, Millis, NewJob, Priority,
    ResultRef, Retention, RetentionReport, SweepReport,
};
use super::stats::Recent;
use super::store::{
    META_NEXT_SEQ, META_PAUSED, Store, Tables, count_key, index_insert, index_remove,
};
use crate::clock::Clock;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// One request to the writer.
pub(crate) struct Command(pub(crate) Op);

pub(crate) enum Op {
    Enqueue {
        jobs: Vec<NewJob>,
        reply: Reply<Vec<Enqueued>>,
    },
    Lease {
        n: usize,
        ttl: Duration,
        reply: Reply<Vec<Lease>>,
    },
    Heartbeat {
        leases: Vec<(JobId, u32)>,
        ttl: Duration,
        reply: Reply<Vec<JobId>>,
    },
    Progress {
        id: JobId,
        attempt: u32,
        progress: u8,
        reply: Reply<()>,
    },
    Complete {
        id: JobId,
        attempt: u32,
        result: Vec<u8>,
        reply: Reply<Job>,
    },
    Fail {
        id: JobId,
        attempt: u32,
        error: JobError,
        reply: Reply<FailOutcome>,
    },
    Release {
        id: JobId,
        attempt: u32,
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
    ChangePriority {
        id: JobId,
        priority: Priority,
        reply: Reply<Job>,
    },
    SetPaused {
        paused: bool,
        reply: Reply<()>,
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
            Op::Lease { .. } | Op::Heartbeat { .. } | Op::Progress { .. } | Op::Sweep { .. }
        )
    }
}

/// Sends an operation's answer once the batch's commit is known.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

fn finish<T: Send + 'static>(reply: Reply<T>, result: Result<T, QueueError>) -> Finish {
    Box::new(move |commit_failed| {
        let answer = match commit_failed {
            None => result,
            Some(msg) => Err(QueueError::Storage(msg.into())),
        };
        // The caller may have gone away; its answer is then nobody's business.
        let _ = reply.send(answer);
    })
}

/// After a commit: what the in-memory statistics learn.
enum Observed {
    Wait(u64),
    Finished {
        run_ms: Option<u64>,
        completed: bool,
    },
}

/// Starts the writer thread.
pub(crate) fn spawn(
    store: Arc<Store>,
    rx: crossbeam_channel::Receiver<Command>,
    options: QueueOptions,
    clock: Arc<dyn Clock>,
    recent: Arc<Mutex<Recent>>,
) -> Result<JoinHandle<()>, QueueError> {
    std::thread::Builder::new()
        .name("queue-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                store,
                options,
                clock,
                recent,
            };
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first.0];
                while batch.len() < writer.options.max_batch {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd.0),
                        Err(_) => break,
                    }
                }
                writer.run_batch(batch);
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
pub(crate) fn recover(
    store: &Store,
    options: &QueueOptions,
    now: Millis,
) -> Result<Vec<JobId>, QueueError> {
    let tx = store.db.begin_write()?;
    let mut recovered = Vec::new();
    {
        let mut b = Batch::open(&tx, options, now)?;
        let active: Vec<u128> =
            b.t.leases
                .iter()?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
        for raw in active {
            let mut job = b.t.job(JobId(raw))?;
            b.leave(&job)?;
            job.interruptions += 1;
            job.lease_until = None;
            if job.interruptions > job.max_attempts {
                job.last_error = Some(JobError::permanent(
                    "interrupted",
                    format!(
                        "the job was running when spheroseg stopped {} times; it may be what stops it",
                        job.interruptions
                    ),
                ));
                b.finish_as(&mut job, JobState::Failed)?;
            } else {
                job.attempt_base = (job.attempt_base + 1).min(job.attempt);
                b.requeue(&mut job)?;
            }
            b.enter(&job)?;
            recovered.push(job.id);
        }
        b.flush()?;
    }
    tx.commit()?;
    Ok(recovered)
}

struct Writer {
    store: Arc<Store>,
    options: QueueOptions,
    clock: Arc<dyn Clock>,
    recent: Arc<Mutex<Recent>>,
}

impl Writer {
    fn run_batch(&mut self, ops: Vec<Op>) {
        let durable = ops.iter().any(Op::durable);
        let now = self.clock.now();
        let mut finishes: Vec<Finish> = Vec::with_capacity(ops.len());
        let mut observed = Vec::new();
        let outcome = self.apply_all(ops, now, durable, &mut finishes, &mut observed);
        match outcome {
            Ok(()) => {
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
                for f in finishes {
                    f(None);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, commands = finishes.len(), "queue commit failed; the batch was rolled back");
                let msg = e.to_string();
                for f in finishes {
                    f(Some(&msg));
                }
            }
        }
    }

    /// Applies every operation in one transaction and commits it.
    fn apply_all(
        &self,
        ops: Vec<Op>,
        now: Millis,
        durable: bool,
        finishes: &mut Vec<Finish>,
        observed: &mut Vec<Observed>,
    ) -> Result<(), QueueError> {
        let mut tx = self.store.db.begin_write()?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| QueueError::Storage(Box::new(e)))?;
        {
            let mut b = Batch::open(&tx, &self.options, now)?;
            for op in ops {
                finishes.push(b.apply(op)?);
            }
            b.flush()?;
            observed.append(&mut b.observed);
        }
        tx.commit()?;
        Ok(())
    }
}

/// One transaction's worth of work.
struct Batch<'a> {
    t: Tables<'a>,
    options: &'a QueueOptions,
    now: Millis,
    next_seq: u64,
    seq_dirty: bool,
    counts: [[i64; 10]; 6],
    image_refs: HashMap<String, i64>,
    observed: Vec<Observed>,
}

/// `Err` only for failures that must abort the whole batch (storage); refusals go to the reply.
fn answer<T: Send + 'static>(
    reply: Reply<T>,
    r: Result<T, QueueError>,
) -> Result<Finish, QueueError> {
    match r {
        Err(e @ QueueError::Storage(_)) => {
            let _ = reply.send(Err(QueueError::Storage(e.to_string().into())));
            Err(e)
        }
        r => Ok(finish(reply, r)),
    }
}

impl<'a> Batch<'a> {
    fn open(
        tx: &'a redb::WriteTransaction,
        options: &'a QueueOptions,
        now: Millis,
    ) -> Result<Self, QueueError> {
        let t = Tables::open(tx)?;
        let next_seq = t.meta.get(META_NEXT_SEQ)?.map_or(0, |v| v.value());
        Ok(Batch {
            t,
            options,
            now,
            next_seq,
            seq_dirty: false,
            counts: [[0; 10]; 6],
            image_refs: HashMap::new(),
            observed: Vec::new(),
        })
    }

    fn apply(&mut self, op: Op) -> Result<Finish, QueueError> {
        match op {
            Op::Enqueue { jobs, reply } => {
                let r = self.enqueue(jobs);
                answer(reply, r)
            }
            Op::Lease { n, ttl, reply } => {
                let r = self.lease(n, ttl);
                answer(reply, r)
            }
            Op::Heartbeat { leases, ttl, reply } => {
                let r = self.heartbeat(&leases, ttl);
                answer(reply, r)
            }
            Op::Progress {
                id,
                attempt,
                progress,
                reply,
            } => {
                let r = self.progress(id, attempt, progress);
                answer(reply, r)
            }
            Op::Complete {
                id,
                attempt,
                result,
                reply,
            } => {
                let r = self.complete(id, attempt, &result);
                answer(reply, r)
            }
            Op::Fail {
                id,
                attempt,
                error,
                reply,
            } => {
                let r = self.fail(id, attempt, error);
                answer(reply, r)
            }
            Op::Release {
                id,
                attempt,
                until,
                reason,
                reply,
            } => {
                let r = self.release(id, attempt, until, reason);
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
                    .meta
                    .insert(META_PAUSED, u64::from(paused))
                    .map(|_| ())
                    .map_err(QueueError::from);
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
        }
    }

    // ---- bookkeeping shared by the operations ----

    /// Takes a job out of its state's indexes and counters (before its state changes).
    fn leave(&mut self, job: &Job) -> Result<(), QueueError> {
        index_remove(&mut self.t, job)?;
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] -= 1;
        Ok(())
    }

    /// Puts a job into its (new) state's indexes and counters and writes the record.
    fn enter(&mut self, job: &Job) -> Result<(), QueueError> {
        index_insert(&mut self.t, job)?;
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] += 1;
        self.t.put_job(job)
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        self.seq_dirty = true;
        s
    }

    /// Makes a job queued at the back of its priority level.
    fn requeue(&mut self, job: &mut Job) -> Result<(), QueueError> {
        job.state = JobState::Queued;
        job.seq = self.take_seq();
        job.queued_at = self.now;
        job.run_at = None;
        job.lease_until = None;
        job.updated_at = self.now;
        Ok(())
    }

    /// Makes a job completed, failed or cancelled; failed and cancelled release the dedupe key.
    fn finish_as(&mut self, job: &mut Job, state: JobState) -> Result<(), QueueError> {
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
            completed: state == JobState::Completed,
        });
        Ok(())
    }

    fn release_dedupe(&mut self, job: &Job) -> Result<(), QueueError> {
        if let Some(key) = &job.dedupe_key {
            let holds = self
                .t
                .dedupe
                .get(key.as_str())?
                .is_some_and(|v| v.value() == job.id.0);
            if holds {
                self.t.dedupe.remove(key.as_str())?;
            }
        }
        Ok(())
    }

    /// Checks that `attempt` is the job's current, active attempt.
    fn fenced(&self, id: JobId, attempt: u32) -> Result<Job, QueueError> {
        let job = self.t.job(id)?;
        if job.state != JobState::Active || job.attempt != attempt {
            return Err(QueueError::Stale {
                id,
                attempt,
                current: job.attempt,
                state: job.state,
            });
        }
        Ok(job)
    }

    /// Counts in `state` including this batch's unwritten changes.
    fn count(&self, state: JobState) -> Result<u64, QueueError> {
        let s = state.index();
        let mut n: i64 = 0;
        for p in 1..=10u8 {
            n += self
                .t
                .meta
                .get(count_key(state, p).as_str())?
                .map_or(0, |v| v.value()) as i64;
            n += self.counts[s as usize][p as usize - 1];
        }
        Ok(n.max(0) as u64)
    }

    /// Writes the summed counter and image-reference changes and the sequence counter.
    fn flush(&mut self) -> Result<(), QueueError> {
        for state in JobState::ALL {
            for p in 1..=10u8 {
                let d = std::mem::take(&mut self.counts[state.index() as usize][p as usize - 1]);
                if d == 0 {
                    continue;
                }
                let key = count_key(state, p);
                let cur = self.t.meta.get(key.as_str())?.map_or(0, |v| v.value()) as i64;
                let n = cur + d;
                debug_assert!(n >= 0, "count of {state} priority {p} went negative");
                if n <= 0 {
                    self.t.meta.remove(key.as_str())?;
                } else {
                    self.t.meta.insert(key.as_str(), n as u64)?;
                }
            }
        }
        for (hash, d) in std::mem::take(&mut self.image_refs) {
            self.add_image_ref(&hash, d)?;
        }
        if self.seq_dirty {
            self.t.meta.insert(META_NEXT_SEQ, self.next_seq)?;
            self.seq_dirty = false;
        }
        Ok(())
    }

    /// Applies a reference change now; returns true when no job refers to the image any more.
    fn add_image_ref(&mut self, hash: &str, d: i64) -> Result<bool, QueueError> {
        let pending = self.image_refs.remove(hash).unwrap_or(0);
        let cur = self.t.image_refs.get(hash)?.map_or(0, |v| v.value()) as i64;
        let n = cur + pending + d;
        if n <= 0 {
            self.t.image_refs.remove(hash)?;
            Ok(true)
        } else {
            self.t.image_refs.insert(hash, n as u64)?;
            Ok(false)
        }
    }

    // ---- the operations ----

    fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, QueueError> {
        for (i, nj) in jobs.iter().enumerate() {
            validate(nj, self.options).map_err(|m| {
                if jobs.len() > 1 {
                    QueueError::Invalid(format!("job {} of the batch: {m}", i + 1))
                } else {
                    QueueError::Invalid(m)
                }
            })?;
        }
        let mut out = Vec::with_capacity(jobs.len());
        for nj in jobs {
            if let Some(key) = &nj.dedupe_key
                && let Some(existing) = self.t.dedupe.get(key.as_str())?.map(|v| v.value())
            {
                out.push(Enqueued {
                    job: self.t.job(JobId(existing))?,
                    deduplicated: true,
                });
                continue;
            }
            let delayed = nj.run_at.is_some_and(|at| at > self.now);
            let mut job = Job {
                id: JobId::new(),
                priority: nj.priority,
                state: if delayed {
                    JobState::Delayed
                } else {
                    JobState::Queued
                },
                attempt: 0,
                attempt_base: 0,
                max_attempts: nj.max_attempts.unwrap_or(self.options.max_attempts),
                interruptions: 0,
                seq: 0,
                created_at: self.now,
                updated_at: self.now,
                queued_at: self.now,
                started_at: None,
                finished_at: None,
                run_at: if delayed { nj.run_at } else { None },
                lease_until: None,
                progress: 0,
                last_error: None,
                project: nj.project,
                dedupe_key: nj.dedupe_key,
                image: nj.image,
                segmenter: nj.segmenter,
                params: nj.params,
                result: None,
            };
            if !delayed {
                job.seq = self.take_seq();
            }
            self.enter(&job)?;
            if let Some(p) = &job.project {
                self.t.by_project.insert((p.as_str(), job.id.0), ())?;
            }
            *self.image_refs.entry(job.image.hash.clone()).or_default() += 1;
            if let Some(key) = &job.dedupe_key {
                self.t.dedupe.insert(key.as_str(), job.id.0)?;
            }
            out.push(Enqueued {
                job,
                deduplicated: false,
            });
        }
        Ok(out)
    }

    fn lease(&mut self, n: usize, ttl: Duration) -> Result<Vec<Lease>, QueueError> {
        if n == 0
            || self
                .t
                .meta
                .get(META_PAUSED)?
                .is_some_and(|v| v.value() != 0)
        {
            return Ok(Vec::new());
        }
        self.promote_due()?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(raw) = self.pick()? else { break };
            let mut job = self.t.job(JobId(raw))?;
            self.leave(&job)?;
            job.state = JobState::Active;
            job.attempt += 1;
            job.lease_until = Some(self.now + ttl.as_millis() as u64);
            job.started_at = Some(self.now);
            job.updated_at = self.now;
            job.progress = 0;
            self.enter(&job)?;
            self.observed
                .push(Observed::Wait(self.now.saturating_sub(job.queued_at)));
            out.push(Lease {
                attempt: job.attempt,
                job,
            });
        }
        Ok(out)
    }

    /// The next job to lease from `ready` (the caller removes it). Strict priority takes the first key.
    /// With aging, each level's head (its longest-waiting job) competes with the priority it has
    /// earned by waiting, capped at 10; ties go to the job that became queued first. That is ten
    /// O(log n) lookups and no index rewrite.
    fn pick(&mut self) -> Result<Option<u128>, QueueError> {
        let Some(aging) = self.options.aging.filter(|a| !a.is_zero()) else {
            return Ok(self.t.ready.first()?.map(|(_, v)| v.value().0));
        };
        let step = aging.as_millis() as u64;
        // ((effective priority, seq), job id)
        let mut best: Option<((u8, u64), u128)> = None;
        for inv in 0..10u8 {
            let head = self.t.ready.range((inv, 0)..=(inv, u64::MAX))?.next();
            if let Some(entry) = head {
                let (k, v) = entry?;
                let (inv, seq) = k.value();
                let waited = self.now.saturating_sub(v.value().1);
                let lifted = (waited / step).min(10) as u8;
                let effective = (Priority::MAX.get() - inv).saturating_add(lifted).min(10);
                let better = match best {
                    None => true,
                    Some(((e, s), _)) => effective > e || (effective == e && seq < s),
                };
                if better {
                    best = Some(((effective, seq), v.value().0));
                }
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Delayed jobs whose `run_at` has come become queued.
    fn promote_due(&mut self) -> Result<Vec<JobId>, QueueError> {
        let due: Vec<u128> = self
            .t
            .delayed
            .range((0, 0)..=(self.now, u128::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(due.len());
        for raw in due {
            let mut job = self.t.job(JobId(raw))?;
            self.leave(&job)?;
            self.requeue(&mut job)?;
            self.enter(&job)?;
            out.push(job.id);
        }
        Ok(out)
    }

    fn heartbeat(
        &mut self,
        leases: &[(JobId, u32)],
        ttl: Duration,
    ) -> Result<Vec<JobId>, QueueError> {
        let mut lost = Vec::new();
        for &(id, attempt) in leases {
            let mut job = match self.fenced(id, attempt) {
                Ok(job) => job,
                Err(QueueError::Stale { .. } | QueueError::NotFound(_)) => {
                    lost.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.t.leases.remove((job.lease_until.unwrap_or(0), id.0))?;
            job.lease_until = Some(self.now + ttl.as_millis() as u64);
            self.t
                .leases
                .insert((job.lease_until.unwrap_or(0), id.0), ())?;
            self.t.put_job(&job)?;
        }
        Ok(lost)
    }

    fn progress(&mut self, id: JobId, attempt: u32, progress: u8) -> Result<(), QueueError> {
        let mut job = self.fenced(id, attempt)?;
        job.progress = progress.min(100);
        self.t.put_job(&job)
    }

    fn complete(&mut self, id: JobId, attempt: u32, result: &[u8]) -> Result<Job, QueueError> {
        let mut job = self.fenced(id, attempt)?;
        self.leave(&job)?;
        job.progress = 100;
        job.result = Some(ResultRef {
            bytes: result.len() as u64,
        });
        self.finish_as(&mut job, JobState::Completed)?;
        self.enter(&job)?;
        self.t.results.insert(id.0, result)?;
        Ok(job)
    }

    fn fail(
        &mut self,
        id: JobId,
        attempt: u32,
        error: JobError,
    ) -> Result<FailOutcome, QueueError> {
        let mut job = self.fenced(id, attempt)?;
        self.leave(&job)?;
        let spent = job.attempts_spent();
        let retry = error.transient && spent < job.max_attempts;
        job.last_error = Some(error);
        let outcome = if retry {
            let run_at = self.now + self.options.backoff.delay(id, spent).as_millis() as u64;
            job.state = JobState::Delayed;
            job.run_at = Some(run_at);
            job.lease_until = None;
            job.updated_at = self.now;
            FailOutcome::Retrying { run_at }
        } else {
            self.finish_as(&mut job, JobState::Failed)?;
            FailOutcome::Failed
        };
        self.enter(&job)?;
        Ok(outcome)
    }

    /// Gives a leased job back without spending its attempt: it waits, delayed, until `until`.
    fn release(
        &mut self,
        id: JobId,
        attempt: u32,
        until: Millis,
        reason: JobError,
    ) -> Result<Job, QueueError> {
        let mut job = self.fenced(id, attempt)?;
        self.leave(&job)?;
        job.attempt_base = (job.attempt_base + 1).min(job.attempt);
        job.state = JobState::Delayed;
        job.run_at = Some(until.max(self.now));
        job.lease_until = None;
        job.last_error = Some(reason);
        job.updated_at = self.now;
        self.enter(&job)?;
        Ok(job)
    }

    fn cancel(&mut self, id: JobId) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        if job.state.is_finished() {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "cancel",
            });
        }
        let before = job.clone();
        self.leave(&job)?;
        self.finish_as(&mut job, JobState::Cancelled)?;
        self.enter(&job)?;
        Ok(before)
    }

    fn retry(&mut self, id: JobId) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "retry",
            });
        }
        self.leave(&job)?;
        job.attempt_base = job.attempt;
        job.interruptions = 0;
        job.finished_at = None;
        job.progress = 0;
        job.result = None;
        self.requeue(&mut job)?;
        self.enter(&job)?;
        self.t.results.remove(id.0)?;
        if let Some(key) = &job.dedupe_key
            && self.t.dedupe.get(key.as_str())?.is_none()
        {
            self.t.dedupe.insert(key.as_str(), id.0)?;
        }
        Ok(job)
    }

    /// Removes a finished job; returns it and whether its image lost its last reference.
    fn delete(&mut self, id: JobId) -> Result<(Job, bool), QueueError> {
        let job = self.t.job(id)?;
        if !job.state.is_finished() {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "delete",
            });
        }
        index_remove(&mut self.t, &job)?;
        if let Some(p) = &job.project {
            self.t.by_project.remove((p.as_str(), id.0))?;
        }
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] -= 1;
        self.t.jobs.remove(id.0)?;
        self.t.results.remove(id.0)?;
        self.release_dedupe(&job)?;
        let orphaned = self.add_image_ref(&job.image.hash, -1)?;
        Ok((job, orphaned))
    }

    fn change_priority(&mut self, id: JobId, priority: Priority) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        if job.state.is_finished() {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "change the priority of",
            });
        }
        self.leave(&job)?;
        job.priority = priority;
        job.updated_at = self.now;
        self.enter(&job)?;
        Ok(job)
    }

    fn sweep(&mut self) -> Result<SweepReport, QueueError> {
        let promoted = self.promote_due()?;
        let due: Vec<u128> = self
            .t
            .leases
            .range((0, 0)..=(self.now, u128::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        let mut expired = Vec::with_capacity(due.len());
        for raw in due {
            let mut job = self.t.job(JobId(raw))?;
            self.leave(&job)?;
            job.last_error = Some(JobError::transient(
                "lease-expired",
                format!(
                    "attempt {} stopped reporting and its lease ran out",
                    job.attempts_spent()
                ),
            ));
            if job.attempts_spent() >= job.max_attempts {
                self.finish_as(&mut job, JobState::Failed)?;
            } else {
                self.requeue(&mut job)?;
            }
            self.enter(&job)?;
            expired.push(job.id);
        }
        Ok(SweepReport { promoted, expired })
    }

    fn retain(
        &mut self,
        retention: &Retention,
        limit: usize,
    ) -> Result<RetentionReport, QueueError> {
        let mut report = RetentionReport::default();
        for state in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
            let s = state.index();
            let age = retention.age(state).unwrap_or(Duration::MAX);
            let cutoff = self
                .now
                .saturating_sub(age.as_millis().min(u64::MAX as u128) as u64);
            let room = limit.saturating_sub(report.removed.len());
            let mut doomed: Vec<u128> = self
                .t
                .finished
                .range((s, 0, 0)..(s, cutoff, 0))?
                .take(room)
                .map(|e| e.map(|(k, _)| k.value().2))
                .collect::<Result<_, _>>()?;
            let excess = self
                .count(state)?
                .saturating_sub(doomed.len() as u64)
                .saturating_sub(retention.max_count);
            let room = room.saturating_sub(doomed.len()).min(excess as usize);
            if room > 0 {
                let more: Vec<u128> = self
                    .t
                    .finished
                    .range((s, cutoff, 0)..=(s, u64::MAX, u128::MAX))?
                    .take(room)
                    .map(|e| e.map(|(k, _)| k.value().2))
                    .collect::<Result<_, _>>()?;
                doomed.extend(more);
            }
            for raw in doomed {
                let (job, orphaned) = self.delete(JobId(raw))?;
                if orphaned {
                    report.orphaned_images.push(job.image.hash);
                }
                report.removed.push(job.id);
            }
        }
        Ok(report)
    }
}

fn validate(nj: &NewJob, options: &QueueOptions) -> Result<(), String> {
    if let Some(n) = nj.max_attempts
        && !(1..=100).contains(&n)
    {
        return Err(format!("max_attempts must be between 1 and 100, got {n}"));
    }
    if options.max_attempts == 0 && nj.max_attempts.is_none() {
        return Err("max_attempts must be at least 1".into());
    }
    if let Some(p) = &nj.project
        && (p.is_empty() || p.len() > 200)
    {
        return Err("project must be 1 to 200 bytes long".into());
    }
    if let Some(k) = &nj.dedupe_key
        && (k.is_empty() || k.len() > 1024)
    {
        return Err("dedupe key must be 1 to 1024 bytes long".into());
    }
    if nj.image.hash.is_empty() {
        return Err("the image reference has no content hash".into());
    }
    nj.params.validate().map_err(|e| e.to_string())
}
