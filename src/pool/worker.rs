//! A job on a worker thread: read the image, run the segmenter inside `catch_unwind` (through the
//! breaker for ML services), keep throttled progress in the pool's map and publish it, and record
//! the outcome with the queue's blocking calls: the result with the completion in one durable
//! commit, the failure with its classification, or the hand-back of a job a shutdown stopped.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Shared, Target, Work, job_error, log_failure, publish_transition};
use crate::error_code::ErrorCode;
use crate::queue::{Fit, JobError, Lease, QueueError, Route};
use crate::segment::breaker::{Outcome, Permit};
use crate::segment::{
    Control, Failure, Input, MlService, SegmentResult, SegmenterId, Stop, StopReason,
};

/// A worker thread: each job the dispatcher hands over, then the builtin jobs it leases itself
/// as each one ends, until none is queued; then it is free again and says so.
///
/// Leasing the next job on the worker's own thread (sent to the writer right behind the
/// finished job's result, so usually committed in the same batch, as BullMQ's worker finishes
/// one job and fetches the next in one call) saves the trip through the dispatcher's task,
/// which would wait for a runtime thread that an upload may be busy on.
pub(super) fn serve(s: &Arc<Shared>, rx: &crossbeam_channel::Receiver<Work>) {
    for mut work in rx {
        loop {
            let id = work.lease.job.id;
            run(s, work);
            // The next job is counted as running before this one stops being: a shutdown that
            // waits for the running jobs never sees none in between.
            let next = next_builtin(s);
            s.running.lock().expect("running lock").remove(&id);
            match next {
                Some(next) => work = next,
                None => break,
            }
        }
        s.busy.fetch_sub(1, Ordering::SeqCst);
        super::publish_workers(s);
        s.nudge.notify_one();
        s.idle.notify_waiters();
    }
}

/// The next queued builtin job, leased for this worker; `None` at shutdown, when none is
/// queued, or when a job of another segmenter comes first at a higher priority (the dispatcher
/// routes those).
fn next_builtin(s: &Shared) -> Option<Work> {
    if *s.stop.borrow() {
        return None;
    }
    let route: Route = Box::new(|name: &SegmenterId| {
        if name.is_builtin() {
            Fit::Take
        } else {
            Fit::Skip
        }
    });
    let lease = match s
        .queue
        .blocking()
        .lease_routed(1, s.config.lease_ttl, route)
    {
        Ok(mut leases) => leases.pop()?,
        Err(e) => {
            tracing::warn!(error = %e, "lease failed");
            return None;
        }
    };
    let target = Target::Builtin {
        fallback_from: None,
    };
    Some(super::work(s, lease, target))
}

/// Runs one job on a worker thread (or a local program's blocking thread, `remote`).
pub(super) fn run(s: &Arc<Shared>, work: Work) {
    let Work {
        lease,
        stop,
        deadline,
        target,
    } = work;
    let id = lease.job.id;
    if !begin(s, &lease, &stop, &target) {
        return;
    }
    let path: PathBuf = s.images.path(&lease.job.image.hash);
    // Decoded at upload and still kept: the builtin segmenter needs neither the file nor to
    // decode it again. (An ML service gets the file; the decoded copy is dropped.)
    let builtin = matches!(target, Target::Builtin { .. });
    // A later page of a multi-page TIFF: the cached decode is of the first page.
    let page = lease.job.page.filter(|&p| p > 0 && builtin);
    let decoded = s
        .images
        .take_decoded(&lease.job.image.hash)
        .filter(|_| builtin && page.is_none());
    let bytes = match decoded {
        Some(_) => Vec::new(),
        None => match s.images.read(&lease.job.image.hash) {
            Ok(b) => b,
            Err(e) => {
                let err = JobError::permanent(
                    ErrorCode::IMAGE_MISSING,
                    format!("the stored image is gone: {e}"),
                );
                fail(s, &lease, err);
                return;
            }
        },
    };
    let page_decoded = match page {
        Some(p) => match crate::segment::decode::decode_page(&bytes, p, &s.config.limits) {
            Ok(d) => Some(d),
            Err(e) => {
                fail(s, &lease, JobError::permanent(e.code(), e.to_string()));
                return;
            }
        },
        None => None,
    };
    let progress_cell = s
        .running
        .lock()
        .expect("running lock")
        .get(&id)
        .map(|r| Arc::clone(&r.progress));
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (mut last, mut last_at) = (0u8, Instant::now());
        let mut progress = |p: u8| {
            // Throttled: a step of 5 %, at most every 200 ms; the first step and the end at once.
            if p >= last.saturating_add(5)
                && (last == 0 || p == 100 || last_at.elapsed() >= Duration::from_millis(200))
            {
                last = p;
                last_at = Instant::now();
                if let Some(cell) = &progress_cell {
                    cell.store(p, Ordering::Relaxed);
                }
                // Dropped by the bus once this attempt is over (cancelled, lease lost).
                s.events.publish_progress(id, lease.token, p);
            }
        };
        let input = Input {
            bytes: &bytes,
            path: &path,
            name: &lease.job.image.name,
            params: &lease.job.params,
            limits: &s.config.limits,
            budget: &s.config.budget,
            decoded: decoded.as_deref().or(page_decoded.as_ref()),
        };
        let mut control = Control {
            stop: &stop,
            deadline,
            progress: &mut progress,
        };
        match &target {
            Target::Builtin { fallback_from } => {
                let mut r = s.segmenters.builtin.segment(&input, &mut control);
                if let (Ok(res), Some(from)) = (&mut r, fallback_from) {
                    res.segmenter = format!("builtin (fallback: {from} circuit open)");
                }
                r
            }
            Target::Ml(_, svc, _) => svc.segmenter.segment(&input, &mut control),
        }
    }));
    conclude(s, &lease, &stop, &target, outcome, started);
}

/// How a job's segmenter ended: the breaker hears it (for an ML service), and the queue records
/// the result, the failure, or the hold.
pub(super) fn conclude(
    s: &Shared,
    lease: &Lease,
    stop: &Stop,
    target: &Target,
    outcome: std::thread::Result<Result<SegmentResult, Failure>>,
    started: Instant,
) {
    let id = lease.job.id;
    let run_ms = started.elapsed().as_millis() as u64;
    let timed_out = stop.reason() == StopReason::Timeout;
    // The breaker hears how the call ended, with the permit it was admitted on.
    let mut trial = false;
    if let Target::Ml(name, svc, permit) = target {
        trial = permit.trial;
        let heard = match &outcome {
            Ok(Ok(_)) => Heard::Success,
            Ok(Err(Failure::Stopped)) if timed_out => Heard::TimedOut,
            Ok(Err(f)) => Heard::Failed(f),
            Err(_) => Heard::Panicked,
        };
        hear(s, name, svc, *permit, heard, started.elapsed());
    }
    match outcome {
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(job.id = %id, panic = %what, "segmenter panicked; the job fails");
            let err = JobError::permanent(
                ErrorCode::INTERNAL_ERROR,
                "internal error while segmenting (see the log)",
            );
            fail(s, lease, err);
        }
        Ok(Ok(mut result)) => {
            result.metadata = lease.job.metadata.clone();
            complete(s, lease, &result, run_ms)
        }
        Ok(Err(Failure::Stopped)) if timed_out => {
            let err = JobError::transient(
                ErrorCode::TIMEOUT,
                format!("the job ran longer than its timeout ({run_ms} ms)"),
            );
            if trial && first_failed_trial(s, id) {
                hold(s, target, lease, err, None);
            } else {
                fail(s, lease, err);
            }
        }
        Ok(Err(Failure::Stopped)) => stopped(s, lease, stop.reason()),
        // The service could not take the job, or the trial that tests it failed: not the job's
        // fault, so it waits for the service without spending an attempt.
        Ok(Err(f @ Failure::Unavailable { .. })) => {
            let retry_after = match &f {
                Failure::Unavailable { retry_after, .. } => *retry_after,
                _ => None,
            };
            hold(s, target, lease, job_error(&f), retry_after);
        }
        Ok(Err(f @ Failure::Transient { .. })) if trial && first_failed_trial(s, id) => {
            hold(s, target, lease, job_error(&f), None)
        }
        Ok(Err(f)) => fail(s, lease, job_error(&f)),
    }
}

/// How an ML service's call ended, for its breaker and its metrics.
pub(super) enum Heard<'a> {
    Success,
    /// Stopped at its timeout.
    TimedOut,
    Failed(&'a Failure),
    /// Our own bug, not the service's.
    Panicked,
}

/// The service's breaker hears how a call made with `permit` ended, and its metrics count it.
/// A service that asked to wait (`Retry-After` on a 429 or 503) is skipped until then, and that
/// is no failure of its breaker.
pub(super) fn hear(
    s: &Shared,
    name: &SegmenterId,
    svc: &MlService,
    permit: Permit,
    heard: Heard<'_>,
    latency: Duration,
) {
    let now = s.clock.now();
    let outcome = match heard {
        Heard::Success => Some(Outcome::Success),
        Heard::TimedOut => Some(Outcome::Timeout),
        Heard::Failed(Failure::Transient { code, .. }) if *code == ErrorCode::TIMEOUT => {
            Some(Outcome::Timeout)
        }
        Heard::Failed(Failure::Unavailable {
            retry_after: Some(wait),
            ..
        }) => {
            svc.skip_until(now + wait.as_millis() as u64);
            None
        }
        Heard::Failed(Failure::Transient { .. } | Failure::Unavailable { .. }) => {
            Some(Outcome::Transient)
        }
        Heard::Failed(Failure::Stopped) => None,
        Heard::Failed(Failure::Permanent { .. }) | Heard::Panicked => Some(Outcome::Permanent),
    };
    let stopped = matches!(heard, Heard::Failed(Failure::Stopped));
    if !stopped {
        let service = name.to_string();
        metrics::counter!("spheroseg_ml_calls_total", "service" => service.clone()).increment(1);
        metrics::histogram!("spheroseg_ml_call_seconds", "service" => service.clone())
            .record(latency.as_secs_f64());
        if !matches!(heard, Heard::Success) {
            metrics::counter!("spheroseg_ml_call_failures_total", "service" => service)
                .increment(1);
        }
    }
    let mut b = svc.breaker.lock().expect("breaker lock");
    let t = match outcome {
        Some(o) => b.record(now, permit, o, latency),
        None => {
            b.abandon(permit);
            None
        }
    };
    drop(b);
    publish_transition(s, name.as_str(), t);
}

/// Starts a job: false (and the job handed back or left as the queue has it) when it was
/// stopped before it began.
pub(super) fn begin(s: &Shared, lease: &Lease, stop: &Stop, target: &Target) -> bool {
    if stop.stopped() {
        if let Target::Ml(_, svc, permit) = target {
            svc.breaker.lock().expect("breaker lock").abandon(*permit);
        }
        stopped(s, lease, stop.reason());
        return false;
    }
    let segmenter_name = match target {
        Target::Builtin { .. } => SegmenterId::BUILTIN.to_owned(),
        Target::Ml(name, ..) => name.to_string(),
    };
    tracing::debug!(job.id = %lease.job.id, lease = %lease.token, segmenter = %segmenter_name, "job started");
    let waited = s.clock.now().saturating_sub(lease.job.queued_at);
    metrics::histogram!("spheroseg_job_wait_seconds").record(waited as f64 / 1e3);
    true
}

/// Whether this is the first half-open trial this job failed (then it is held for free).
fn first_failed_trial(s: &Shared, id: crate::queue::JobId) -> bool {
    let mut set = s.trial_failed.lock().expect("trial lock");
    // Bounded: an entry only changes how one later failure counts.
    if set.len() >= 10_000 {
        set.clear();
    }
    set.insert(id)
}

/// Hands the job back, delayed until its service may take it again, with its attempt refunded.
fn hold(
    s: &Shared,
    target: &Target,
    lease: &Lease,
    error: JobError,
    retry_after: Option<Duration>,
) {
    let now = s.clock.now();
    // Until a service of the job's segmenter may be called: its own breaker's probe and its
    // Retry-After (kept by `hear`), or sooner when another service may take the job.
    let until = match target {
        Target::Ml(..) => super::route::callable_from(s, &lease.job.segmenter, now),
        Target::Builtin { .. } => retry_after.map_or(now, |d| now + d.as_millis() as u64),
    };
    let until = until.max(now + 500);
    let reason = JobError {
        message: format!(
            "{}; the job waits without spending an attempt",
            error.message
        ),
        ..error
    };
    let id = lease.job.id;
    match s.queue.blocking().release(id, lease.token, until, reason) {
        Ok(_) => tracing::debug!(job.id = %id, until, "job held back for its ML service"),
        Err(QueueError::Stale { .. }) => {}
        Err(e) => tracing::warn!(job.id = %id, error = %e, "cannot hold the job back"),
    }
}

pub(super) fn fail(s: &Shared, lease: &Lease, error: JobError) {
    let id = lease.job.id;
    let (code, message) = (error.code.clone(), error.message.clone());
    let r = s.queue.blocking().fail(id, lease.token, error);
    log_failure(id, lease.token, &code, &message, r);
}

/// A job that stopped because it was asked to: a shutdown hands it back to the queue (requeued,
/// its attempt refunded); a cancel or a lost lease leaves the queue as it already is.
pub(super) fn stopped(s: &Shared, lease: &Lease, reason: StopReason) {
    let id = lease.job.id;
    match reason {
        StopReason::Shutdown => match s.queue.blocking().interrupt(id, lease.token) {
            Ok(_) => tracing::info!(job.id = %id, "job interrupted by shutdown; queued again"),
            Err(e) => tracing::debug!(job.id = %id, error = %e, "interrupted job not handed back"),
        },
        other => tracing::debug!(job.id = %id, reason = ?other, "job stopped"),
    }
}

/// Sends the result with the completion and goes on: the worker takes its next job while the
/// commit becomes durable, and a task on the runtime hears how it went.
fn complete(s: &Shared, lease: &Lease, result: &SegmentResult, run_ms: u64) {
    let id = lease.job.id;
    let bytes = result.to_bytes();
    let objects = result.objects.len() as u32;
    s.trial_failed.lock().expect("trial lock").remove(&id);
    let done = s.queue.complete_detached(id, lease.token, bytes, objects);
    s.runtime.spawn(async move {
        match done.await {
            Ok(_) => {
                metrics::counter!("spheroseg_jobs_completed_total").increment(1);
                metrics::histogram!("spheroseg_job_run_seconds").record(run_ms as f64 / 1e3);
                tracing::info!(job.id = %id, objects, run_ms, "job completed");
            }
            Err(QueueError::Stale { state, .. }) => {
                tracing::debug!(job.id = %id, %state, "result of a stale attempt dropped");
            }
            Err(e) => tracing::error!(job.id = %id, error = %e, "cannot store the result"),
        }
    });
}
