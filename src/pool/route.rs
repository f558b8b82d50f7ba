//! Which service runs an ML job. A job names a segmenter; every service serving it may take the
//! job. Among those whose breaker admits a call, that did not ask to wait (`Retry-After`) and
//! that have a free slot, the one with the least outstanding calls for its weight wins (the
//! smallest `(in flight + 1) / weight`; ties in name order). Taking the service takes its slot
//! and its breaker's permit at once, so a half-open breaker lets exactly its trials through and a
//! service never runs more than its limit.

use std::cmp::Ordering as Cmp;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Shared, publish_transition};
use crate::clock::Millis;
use crate::error_code::ErrorCode;
use crate::queue::JobError;
use crate::segment::breaker::Permit;
use crate::segment::{MlService, SegmenterId};

/// A service chosen for a job: its name, itself and its breaker's permit (its slot is taken).
pub(super) type Pick = (SegmenterId, Arc<MlService>, Permit);

/// Chooses a service of `segmenter` for a job, passing over those in `tried`; takes its slot and
/// its breaker's permit. `None`: none can take the job now.
pub(super) fn pick(
    s: &Shared,
    segmenter: &SegmenterId,
    now: Millis,
    tried: &[SegmenterId],
) -> Option<Pick> {
    let mut candidates: Vec<_> = s
        .segmenters
        .serving(segmenter)
        .filter(|(name, svc)| !tried.contains(name) && svc.free() > 0 && admits(svc, now))
        .collect();
    // Stable: equal loads stay in name order.
    candidates.sort_by(|(_, a), (_, b)| load(a, b));
    for (name, svc) in candidates {
        if !svc.try_take() {
            continue;
        }
        let permit = svc.breaker.lock().expect("breaker lock").acquire(now);
        match permit {
            Ok(p) => {
                publish_transition(s, name.as_str(), p.transition);
                return Some((name.clone(), Arc::clone(svc), p));
            }
            Err(_) => svc.give_back(),
        }
    }
    None
}

/// `a`'s outstanding calls for its weight against `b`'s: `(a + 1) / wa` against `(b + 1) / wb`.
fn load(a: &MlService, b: &MlService) -> Cmp {
    let outstanding = |s: &MlService| s.in_flight.load(Ordering::SeqCst) as u64 + 1;
    (outstanding(a) * u64::from(b.weight)).cmp(&(outstanding(b) * u64::from(a.weight)))
}

/// Whether the service may be called now: its breaker admits a call and it did not ask to wait.
pub(super) fn admits(svc: &MlService, now: Millis) -> bool {
    !svc.skipped(now) && svc.breaker.lock().expect("breaker lock").admits(now)
}

/// When a service that may not be called now may be again.
fn callable_at(svc: &MlService, now: Millis) -> Millis {
    let b = svc.breaker.lock().expect("breaker lock");
    let breaker_at = if b.admits(now) { now } else { b.retry_at(now) };
    breaker_at.max(svc.skip_until.load(Ordering::SeqCst))
}

/// Why no service of `segmenter` can take a job now, and until when it waits (the earliest
/// moment one of them may be called again): the hold of a job that spends no attempt.
pub(super) fn hold_of(s: &Shared, segmenter: &SegmenterId, now: Millis) -> (Millis, JobError) {
    let services: Vec<_> = s.segmenters.serving(segmenter).collect();
    let open = services
        .iter()
        .any(|(_, svc)| !svc.breaker.lock().expect("breaker lock").admits(now));
    let waits = services.iter().any(|(_, svc)| svc.skipped(now));
    let (code, why) = if open {
        (ErrorCode::BREAKER_OPEN, "is unavailable (circuit open)")
    } else if waits {
        (ErrorCode::ML_UNAVAILABLE, "asked to wait (Retry-After)")
    } else {
        (ErrorCode::ML_UNAVAILABLE, "has no free slot")
    };
    let reason = JobError::transient(
        code,
        format!("{segmenter} {why}; the job waits without spending an attempt"),
    );
    (callable_from(s, segmenter, now).max(now + 100), reason)
}

/// The earliest moment a service of `segmenter` may be called (now, if one may).
pub(super) fn callable_from(s: &Shared, segmenter: &SegmenterId, now: Millis) -> Millis {
    s.segmenters
        .serving(segmenter)
        .map(|(_, svc)| callable_at(svc, now))
        .min()
        .unwrap_or(now)
}
