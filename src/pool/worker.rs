//! A job on a worker thread: read the image, run the segmenter inside `catch_unwind` (through the
//! breaker for ML services), report throttled progress, and record the outcome: the result with
//! the completion in one durable commit, or the failure with its classification.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{MlService, Shared, Target, Work, finish_failed, publish_transition};
use crate::error_code::ErrorCode;
use crate::events::{EventKind, job as jid};
use crate::queue::{JobError, JobId, Lease, QueueError};
use crate::segment::SegmenterId;
use crate::segment::breaker::Outcome;
use crate::segment::{Control, Failure, Input, SegmentResult, StopReason};

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
        interrupted(s, id, stop.reason());
        return;
    }
    let segmenter_name = match &target {
        Target::Builtin { .. } => SegmenterId::BUILTIN.to_owned(),
        Target::Ml(name, _) => name.to_string(),
    };
    tracing::info!(job.id = %id, lease = %lease.token, segmenter = %segmenter_name, "job started");
    let waited = s.clock.now().saturating_sub(lease.job.queued_at);
    metrics::histogram!("spheroseg_job_wait_seconds").record(waited as f64 / 1e3);
    s.events.publish(EventKind::JobStarted {
        job_id: jid(id),
        attempt: lease.job.attempts,
        segmenter: segmenter_name,
    });
    let bytes = match s.images.read(&lease.job.image.hash) {
        Ok(b) => b,
        Err(e) => {
            let err = JobError::permanent(
                ErrorCode::IMAGE_MISSING,
                format!("the stored image is gone: {e}"),
            );
            s.handle.block_on(finish_failed(s, &lease, err));
            return;
        }
    };
    let path: PathBuf = s.images.path(&lease.job.image.hash);
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
                let _ = s.handle.block_on(s.queue.progress(id, lease.token, p));
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
            s.handle.block_on(finish_failed(s, &lease, err));
        }
        Ok(Ok(result)) => complete(s, &lease, &result, run_ms),
        Ok(Err(Failure::Stopped)) => match stop.reason() {
            StopReason::Timeout => {
                let err = JobError::transient(
                    ErrorCode::TIMEOUT,
                    format!("the job ran longer than its timeout ({run_ms} ms)"),
                );
                s.handle.block_on(finish_failed(s, &lease, err));
            }
            reason => interrupted(s, id, reason),
        },
        Ok(Err(f)) => {
            let err = job_error(&f);
            s.handle.block_on(finish_failed(s, &lease, err));
        }
    }
}

/// A segmenter's failure as the job keeps it.
fn job_error(f: &Failure) -> JobError {
    match f {
        Failure::Transient { code, message } => JobError::transient(*code, message.clone()),
        Failure::Permanent { code, message } => JobError::permanent(*code, message.clone()),
        Failure::Stopped => JobError::transient(ErrorCode::STOPPED, "stopped"),
    }
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

fn interrupted(s: &Shared, id: JobId, reason: StopReason) {
    match reason {
        StopReason::Shutdown => {
            tracing::info!(job.id = %id, "job interrupted by shutdown; it runs again at the next start");
            s.events
                .publish(EventKind::JobInterrupted { job_id: jid(id) });
        }
        other => tracing::debug!(job.id = %id, reason = ?other, "job stopped"),
    }
}

fn complete(s: &Shared, lease: &Lease, result: &SegmentResult, run_ms: u64) {
    let id = lease.job.id;
    let bytes = result.to_bytes();
    match s.handle.block_on(
        s.queue
            .complete(id, lease.token, bytes, result.objects.len() as u32),
    ) {
        Ok(_) => {
            metrics::counter!("spheroseg_jobs_completed_total").increment(1);
            metrics::histogram!("spheroseg_job_run_seconds").record(run_ms as f64 / 1e3);
            tracing::info!(job.id = %id, objects = result.objects.len(), run_ms, "job completed");
            s.events.publish(EventKind::JobCompleted {
                job_id: jid(id),
                objects: result.objects.len(),
                run_ms,
            });
        }
        Err(QueueError::Stale { state, .. }) => {
            tracing::debug!(job.id = %id, %state, "result of a stale attempt dropped");
        }
        Err(e) => tracing::error!(job.id = %id, error = %e, "cannot store the result"),
    }
}
