//! The operations a batch applies: each checks everything it needs before its first write, so a
//! refused operation leaves nothing behind in the shared transaction.

use std::time::Duration;

use redb::ReadableTable;

use super::{Batch, Observed};
use crate::error_code::ErrorCode;
use crate::queue::QueueError;
use crate::queue::QueueOptions;
use crate::queue::model::{
    BulkAction, BulkOutcome, Change, Enqueued, FailOutcome, Job, JobError, JobId, JobState, Lease,
    LeaseToken, Millis, NewJob, Priority, Requeue, ResultRef, Retention, RetentionReport,
    SweepReport,
};
use crate::queue::store::{
    META_PAUSED, ReadyEntry, due, earlier, first_in, index_remove, level, ready_key,
};

impl Batch<'_> {
    pub(super) fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, QueueError> {
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
            let holder = match &nj.dedupe_key {
                Some(key) => self.t.dedupe()?.get(key.as_str())?.map(|v| v.value()),
                None => None,
            };
            if let Some(existing) = holder {
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
                lease: LeaseToken(0),
                attempts: 0,
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
                rerun_of: nj.rerun_of,
                metadata: nj.metadata,
                page: nj.page,
            };
            if !delayed {
                job.seq = self.take_seq();
            }
            self.enter(&job)?;
            if let Some(p) = &job.project {
                self.t.by_project()?.insert((p.as_str(), job.id.0), ())?;
            }
            *self.image_refs.entry(job.image.hash.clone()).or_default() += 1;
            if let Some(key) = &job.dedupe_key {
                self.t.dedupe()?.insert(key.as_str(), job.id.0)?;
            }
            self.record(&job, Change::Queued);
            out.push(Enqueued {
                job,
                deduplicated: false,
            });
        }
        Ok(out)
    }

    pub(super) fn lease(
        &mut self,
        n: usize,
        ttl: Duration,
        mut admit: Option<super::command::Route>,
    ) -> Result<Vec<Lease>, QueueError> {
        use super::command::Fit;
        if n == 0
            || self
                .t
                .meta()?
                .get(META_PAUSED)?
                .is_some_and(|v| v.value() != 0)
        {
            return Ok(Vec::new());
        }
        self.promote_due()?;
        let mut out = Vec::with_capacity(n);
        let mut holds = n + crate::queue::HOLDS_PER_LEASE;
        let mut skips = crate::queue::HOLDS_PER_LEASE;
        // After a skip: only the jobs behind this key, at its level.
        let mut after: Option<(u8, u64)> = None;
        let strict = self.options.aging.is_none_or(|a| a.is_zero());
        while out.len() < n {
            let raw = match after {
                None => self.pick()?,
                Some((inv, seq)) => self
                    .head((inv, seq + 1)..=(inv, u64::MAX))?
                    .map(|(_, v)| v.0),
            };
            let Some(raw) = raw else { break };
            let mut job = self.t.job(JobId(raw))?;
            match admit.as_mut().map_or(Fit::Take, |a| a(&job.segmenter)) {
                Fit::Take => {}
                Fit::Stop => break,
                Fit::Skip if !strict || skips == 0 => break,
                Fit::Skip => {
                    skips -= 1;
                    after = Some(ready_key(job.priority, job.seq));
                    continue;
                }
                Fit::Hold { .. } if holds == 0 => break,
                Fit::Hold { until, reason } => {
                    holds -= 1;
                    self.delay(job, until, reason)?;
                    continue;
                }
            }
            self.leave(&job)?;
            job.state = JobState::Active;
            job.lease = LeaseToken(job.lease.0 + 1);
            job.attempts += 1;
            job.lease_until = Some(self.now + ttl.as_millis() as u64);
            job.started_at = Some(self.now);
            job.updated_at = self.now;
            job.progress = 0;
            self.enter(&job)?;
            self.observed
                .push(Observed::Wait(self.now.saturating_sub(job.queued_at)));
            self.record(&job, Change::Started);
            out.push(Lease {
                token: job.lease,
                job,
            });
        }
        Ok(out)
    }

    /// The next job to lease (the caller removes it). Strict priority takes the first key of
    /// `ready` and `ready_tail`.
    /// With aging, each level's head (its longest-waiting job) competes with the priority it has
    /// earned by waiting, capped at 10; ties go to the job that became queued first. That is ten
    /// O(log n) lookups and no index rewrite.
    pub(super) fn pick(&mut self) -> Result<Option<u128>, QueueError> {
        let Some(aging) = self.options.aging.filter(|a| !a.is_zero()) else {
            return Ok(self.head((0, 0)..=(u8::MAX, u64::MAX))?.map(|(_, v)| v.0));
        };
        let step = aging.as_millis() as u64;
        // ((effective priority, seq), job id)
        let mut best: Option<((u8, u64), u128)> = None;
        for inv in 0..10u8 {
            if let Some(((inv, seq), (id, queued_at))) = self.head(level(inv))? {
                let waited = self.now.saturating_sub(queued_at);
                let lifted = (waited / step).min(10) as u8;
                let effective = (Priority::MAX.get() - inv).saturating_add(lifted).min(10);
                let better = match best {
                    None => true,
                    Some(((e, s), _)) => effective > e || (effective == e && seq < s),
                };
                if better {
                    best = Some(((effective, seq), id));
                }
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// The first queued job in `range` of `ready` keys, from both halves of the index.
    fn head(
        &mut self,
        range: std::ops::RangeInclusive<(u8, u64)>,
    ) -> Result<Option<ReadyEntry>, QueueError> {
        let ready = first_in(&**self.t.ready()?, range.clone())?;
        let tail = first_in(&**self.t.ready_tail()?, range)?;
        Ok(earlier(ready, tail))
    }

    /// Delayed jobs whose `run_at` has come become queued.
    pub(super) fn promote_due(&mut self) -> Result<Vec<JobId>, QueueError> {
        self.promote(self.now, None)
    }

    /// Every delayed job of `segmenter` becomes queued now (its service is back), whether it was
    /// held for the service or waits out a retry backoff.
    pub(super) fn promote_segmenter(
        &mut self,
        segmenter: &crate::segment::SegmenterId,
    ) -> Result<Vec<JobId>, QueueError> {
        self.promote(Millis::MAX, Some(segmenter))
    }

    /// Delayed jobs due by `until` (of `segmenter` only, if given) become queued.
    fn promote(
        &mut self,
        until: Millis,
        segmenter: Option<&crate::segment::SegmenterId>,
    ) -> Result<Vec<JobId>, QueueError> {
        let due = due(&**self.t.delayed()?, until)?;
        let mut out = Vec::with_capacity(due.len());
        for raw in due {
            let mut job = self.t.job(JobId(raw))?;
            if segmenter.is_some_and(|s| job.segmenter != *s) {
                continue;
            }
            self.leave(&job)?;
            self.requeue(&mut job)?;
            self.enter(&job)?;
            self.record(
                &job,
                Change::Requeued {
                    reason: Requeue::Due,
                },
            );
            out.push(job.id);
        }
        Ok(out)
    }

    pub(super) fn heartbeat(
        &mut self,
        leases: &[(JobId, LeaseToken)],
        ttl: Duration,
    ) -> Result<Vec<JobId>, QueueError> {
        let mut lost = Vec::new();
        for &(id, token) in leases {
            let mut job = match self.fenced(id, token) {
                Ok(job) => job,
                Err(QueueError::Stale { .. } | QueueError::NotFound(_)) => {
                    lost.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.t
                .leases()?
                .remove((job.lease_until.unwrap_or(0), id.0))?;
            job.lease_until = Some(self.now + ttl.as_millis() as u64);
            self.t
                .leases()?
                .insert((job.lease_until.unwrap_or(0), id.0), ())?;
            self.t.put_job(&job)?;
        }
        Ok(lost)
    }

    pub(super) fn complete(
        &mut self,
        id: JobId,
        token: LeaseToken,
        result: &[u8],
        objects: u32,
    ) -> Result<Job, QueueError> {
        let mut job = self.fenced(id, token)?;
        self.leave(&job)?;
        job.progress = 100;
        // An attempt that failed before, or a hold, is history once the job has its result.
        job.last_error = None;
        job.result = Some(ResultRef::first(result.len() as u64, objects, self.now));
        self.finish_as(&mut job, JobState::Completed)?;
        self.enter(&job)?;
        self.t.results()?.insert(id.0, result)?;
        self.record(&job, Change::Completed);
        Ok(job)
    }

    pub(super) fn fail(
        &mut self,
        id: JobId,
        token: LeaseToken,
        error: JobError,
    ) -> Result<FailOutcome, QueueError> {
        let mut job = self.fenced(id, token)?;
        self.leave(&job)?;
        let spent = job.attempts;
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
        let change = match outcome {
            FailOutcome::Retrying { .. } => Change::Retrying,
            FailOutcome::Failed => Change::Failed,
        };
        self.record(&job, change);
        Ok(outcome)
    }

    /// Gives a leased job back and refunds its attempt: it waits, delayed, until `until`.
    pub(super) fn release(
        &mut self,
        id: JobId,
        token: LeaseToken,
        until: Millis,
        reason: JobError,
    ) -> Result<Job, QueueError> {
        let mut job = self.fenced(id, token)?;
        self.leave(&job)?;
        job.attempts = job.attempts.saturating_sub(1);
        job.state = JobState::Delayed;
        job.run_at = Some(until.max(self.now));
        job.lease_until = None;
        job.last_error = Some(reason);
        job.updated_at = self.now;
        self.enter(&job)?;
        self.record(&job, Change::Held);
        Ok(job)
    }

    /// A running job stopped by a shutdown: queued again at once, its attempt refunded (it did
    /// not fail).
    pub(super) fn interrupt(&mut self, id: JobId, token: LeaseToken) -> Result<Job, QueueError> {
        let mut job = self.fenced(id, token)?;
        self.leave(&job)?;
        job.attempts = job.attempts.saturating_sub(1);
        self.requeue(&mut job)?;
        self.enter(&job)?;
        self.record(&job, Change::Interrupted);
        Ok(job)
    }

    pub(super) fn cancel(&mut self, id: JobId) -> Result<Job, QueueError> {
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
        self.record(&job, Change::Cancelled { was: before.state });
        Ok(before)
    }

    pub(super) fn retry(&mut self, id: JobId) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "retry",
            });
        }
        self.leave(&job)?;
        job.attempts = 0;
        job.interruptions = 0;
        job.finished_at = None;
        job.progress = 0;
        job.result = None;
        self.requeue(&mut job)?;
        self.enter(&job)?;
        self.t.results()?.remove(id.0)?;
        if let Some(key) = &job.dedupe_key
            && self.t.dedupe()?.get(key.as_str())?.is_none()
        {
            self.t.dedupe()?.insert(key.as_str(), id.0)?;
        }
        self.record(&job, Change::Retried);
        Ok(job)
    }

    /// Removes a finished job; returns it and whether its image lost its last reference.
    pub(super) fn delete(&mut self, id: JobId) -> Result<(Job, bool), QueueError> {
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
            self.t.by_project()?.remove((p.as_str(), id.0))?;
        }
        self.counts[job.state.index() as usize][job.priority.get() as usize - 1] -= 1;
        self.t.jobs()?.remove(id.0)?;
        self.t.results()?.remove(id.0)?;
        self.remove_versions(&job)?;
        self.release_dedupe(&job)?;
        let orphaned = self.add_image_ref(&job.image.hash, -1)?;
        self.committed.deleted.push(id);
        Ok((job, orphaned))
    }

    /// Every job of `ids` the action applies to; refusals (wrong state, gone) are skips, and each
    /// operation checks before it writes, so a skip leaves nothing behind.
    pub(super) fn bulk(
        &mut self,
        action: BulkAction,
        ids: &[JobId],
    ) -> Result<Vec<BulkOutcome>, QueueError> {
        let mut out = Vec::new();
        for &id in ids {
            let r = match action {
                BulkAction::Retry => self.t.job(id).and_then(|before| {
                    self.retry(id).map(|after| BulkOutcome {
                        id,
                        before: before.state,
                        after: Some(after.state),
                    })
                }),
                BulkAction::Cancel => self.cancel(id).map(|before| BulkOutcome {
                    id,
                    before: before.state,
                    after: Some(JobState::Cancelled),
                }),
                BulkAction::Delete => self.delete(id).map(|(before, _)| BulkOutcome {
                    id,
                    before: before.state,
                    after: None,
                }),
            };
            match r {
                Ok(o) => out.push(o),
                Err(QueueError::InvalidState { .. } | QueueError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) fn change_priority(
        &mut self,
        id: JobId,
        priority: Priority,
    ) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        if job.state.is_finished() {
            return Err(QueueError::InvalidState {
                id,
                state: job.state,
                action: "change the priority of",
            });
        }
        let from = job.priority;
        self.leave(&job)?;
        job.priority = priority;
        job.updated_at = self.now;
        self.enter(&job)?;
        self.record(&job, Change::PriorityChanged { from });
        Ok(job)
    }

    pub(super) fn sweep(&mut self) -> Result<SweepReport, QueueError> {
        let promoted = self.promote_due()?;
        let due = due(&**self.t.leases()?, self.now)?;
        let mut expired = Vec::with_capacity(due.len());
        for raw in due {
            let mut job = self.t.job(JobId(raw))?;
            self.leave(&job)?;
            job.last_error = Some(JobError::transient(
                ErrorCode::LEASE_EXPIRED,
                format!(
                    "attempt {} stopped reporting and its lease ran out",
                    job.attempts
                ),
            ));
            let change = if job.attempts >= job.max_attempts {
                self.finish_as(&mut job, JobState::Failed)?;
                Change::Failed
            } else {
                self.requeue(&mut job)?;
                Change::Requeued {
                    reason: Requeue::LeaseExpired,
                }
            };
            self.enter(&job)?;
            self.record(&job, change);
            expired.push(job.id);
        }
        Ok(SweepReport { promoted, expired })
    }

    pub(super) fn retain(
        &mut self,
        retention: &Retention,
        max: usize,
    ) -> Result<RetentionReport, QueueError> {
        let mut report = RetentionReport::default();
        for state in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
            let s = state.index();
            let keep = retention.of(state).unwrap_or_default();
            // Finished before `cutoff`: too old. No age limit: nothing is too old.
            let cutoff = keep.age.map_or(0, |age| {
                self.now
                    .saturating_sub(age.as_millis().min(u64::MAX as u128) as u64)
            });
            let room = max.saturating_sub(report.removed.len());
            let mut doomed: Vec<u128> = self
                .t
                .finished()?
                .range((s, 0, 0)..(s, cutoff, 0))?
                .take(room)
                .map(|e| e.map(|(k, _)| k.value().2))
                .collect::<Result<_, _>>()?;
            let excess = match keep.count {
                Some(count) => self
                    .count(state)?
                    .saturating_sub(doomed.len() as u64)
                    .saturating_sub(count),
                None => 0,
            };
            let room = room.saturating_sub(doomed.len()).min(excess as usize);
            if room > 0 {
                let more: Vec<u128> = self
                    .t
                    .finished()?
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
