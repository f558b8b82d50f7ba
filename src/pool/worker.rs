//! A job on a worker thread: read the image, run the segmenter inside `catch_unwind` (through the
//! breaker for ML services), keep throttled progress in the pool's map and publish it, and record
//! the outcome with the queue's blocking calls: the result with the completion in one durable
//! commit, the failure with its classification, or the hand-back of a job a shutdown stopped.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{MlService, Shared, Target, Work, job_error, log_failure, publish_transition};
use crate::error_code::ErrorCode;
use crate::events::{EventKind, job as jid};
use crate::queue::{JobError, Lease, QueueError};
use crate::segment::breaker::Outcome;
use crate::segment::{Control, Failure, Input, SegmentResult, SegmenterId, StopReason};

/// Runs one job on a worker thread.
pub(super) fn run(s: &Arc<Shared>, work: Work) {
    let Work {
        lease,
        stop,
        deadline,
        target,
    } = work;
    let id = lease.job.id;
    if stop.stopped() {
        stopped(s, &lease, stop.reason());
        return;
    }
    let segmenter_name = match &target {
        Target::Builtin { .. } => SegmenterId::BUILTIN.to_owned(),
        Target::Ml(name, _) => name.to_string(),
    };
    tracing::debug!(job.id = %id, lease = %lease.token, segmenter = %segmenter_name, "job started");
    let waited = s.clock.now().saturating_sub(lease.job.queued_at);
    metrics::histogram!("spheroseg_job_wait_seconds").record(waited as f64 / 1e3);
    let path: PathBuf = s.images.path(&lease.job.image.hash);
    // Decoded at upload and still kept: the builtin segmenter needs neither the file nor to
    // decode it again. (An ML service gets the file; the decoded copy is dropped.)
    let decoded = s
        .images
        .take_decoded(&lease.job.image.hash)
        .filter(|_| matches!(target, Target::Builtin { .. }));
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
                s.events.publish(EventKind::JobProgress {
                    job_id: jid(id),
                    progress: p,
                });
            }
        };
        let input = Input {
            bytes: &bytes,
            path: &path,
            name: &lease.job.image.name,
            params: &lease.job.params,
            limits: &s.config.limits,
            budget: &s.config.budget,
            decoded: decoded.as_deref(),
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
            Target::Ml(name, svc) => call_ml(s, name.as_str(), svc, &input, &mut control),
        }
    }));
    let run_ms = started.elapsed().as_millis() as u64;
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
            fail(s, &lease, err);
        }
        Ok(Ok(result)) => complete(s, &lease, &result, run_ms),
        Ok(Err(Failure::Stopped)) => match stop.reason() {
            StopReason::Timeout => {
                let err = JobError::transient(
                    ErrorCode::TIMEOUT,
                    format!("the job ran longer than its timeout ({run_ms} ms)"),
                );
                fail(s, &lease, err);
            }
            reason => stopped(s, &lease, reason),
        },
        Ok(Err(f)) => fail(s, &lease, job_error(&f)),
    }
}

fn fail(s: &Shared, lease: &Lease, error: JobError) {
    let id = lease.job.id;
    let (code, message) = (error.code.clone(), error.message.clone());
    let r = s.queue.blocking().fail(id, lease.token, error);
    log_failure(id, lease.token, &code, &message, r);
}

/// Calls an ML segmenter through its breaker.
fn call_ml(
    s: &Shared,
    name: &str,
    svc: &MlService,
    input: &Input<'_>,
    control: &mut Control<'_>,
) -> Result<SegmentResult, Failure> {
    let permit = {
        let mut b = svc.breaker.lock().expect("breaker lock");
        b.acquire(s.clock.now())
    };
    match permit {
        Ok(t) => publish_transition(s, name, t),
        Err(rejected) => {
            return Err(Failure::transient(
                ErrorCode::BREAKER_OPEN,
                format!(
                    "{name} is unavailable (circuit open until {})",
                    rejected.retry_at
                ),
            ));
        }
    }
    let started = Instant::now();
    let r = svc.segmenter.segment(input, control);
    let outcome = match &r {
        Ok(_) => Some(Outcome::Success),
        Err(Failure::Transient { code, .. }) if *code == ErrorCode::TIMEOUT => {
            Some(Outcome::Timeout)
        }
        Err(Failure::Transient { .. }) => Some(Outcome::Transient),
        Err(Failure::Permanent { .. }) => Some(Outcome::Permanent),
        Err(Failure::Stopped) if control.stop.reason() == StopReason::Timeout => {
            Some(Outcome::Timeout)
        }
        Err(Failure::Stopped) => None,
    };
    if let Some(o) = outcome {
        let t =
            svc.breaker
                .lock()
                .expect("breaker lock")
                .record(s.clock.now(), o, started.elapsed());
        publish_transition(s, name, t);
    }
    r
}

/// A job that stopped because it was asked to: a shutdown hands it back to the queue (requeued,
/// its attempt refunded); a cancel or a lost lease leaves the queue as it already is.
fn stopped(s: &Shared, lease: &Lease, reason: StopReason) {
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
