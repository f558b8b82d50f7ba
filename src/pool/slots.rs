//! What the dispatcher may lease: CPU workers for builtin jobs, and the free slots
//! (`max_in_flight`, `max_parallel`) of the services of each ML segmenter whose breakers admit a
//! call, counted apart so that neither waits on the other. The queue asks the test in lease
//! order: a job that fits is leased; a job no service of its segmenter may take now (every
//! breaker open, or every service asked to wait) is held without a lease until one may, and the
//! jobs behind it are asked next; a job whose workers or services are busy stays queued while the
//! jobs behind it at its priority are asked (a full service does not stop the others' jobs), but
//! none of a lower priority: strict priority between levels, FIFO among the jobs of one
//! segmenter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Shared, route};
use crate::queue::Fit;
use crate::segment::SegmenterId;

/// What the jobs of one ML segmenter may do now.
enum Group {
    /// Free slots among its services that admit a call.
    Free(usize),
    /// None admits a call and they fall back: builtin, on a CPU worker.
    Fallback,
    /// None admits a call: held until then, with this reason.
    Hold(crate::clock::Millis, crate::queue::JobError),
}

/// How many jobs the dispatcher may lease now, the test each one must pass in lease order, and
/// the count of jobs the test held (read after the lease). An unknown segmenter's job is leased
/// (and failed at once).
pub(super) fn slots(s: &Shared) -> (usize, crate::queue::Route, Arc<AtomicUsize>) {
    let now = s.clock.now();
    let mut cpu = s
        .config
        .workers
        .max(1)
        .saturating_sub(s.busy.load(Ordering::SeqCst));
    let mut groups: HashMap<SegmenterId, Group> = HashMap::new();
    for (name, svc) in &s.segmenters.ml {
        let segmenter = svc.segmenter_of(name);
        if groups.contains_key(segmenter) {
            continue;
        }
        let mut free = 0;
        let mut admitting = false;
        let mut fallback = false;
        for (_, svc) in s.segmenters.serving(segmenter) {
            fallback |= svc.fallback_builtin;
            if route::admits(svc, now) {
                admitting = true;
                free += svc.free();
            }
        }
        let group = match (admitting, fallback) {
            (true, _) => Group::Free(free),
            (false, true) => Group::Fallback,
            (false, false) => {
                let (until, reason) = route::hold_of(s, segmenter, now);
                Group::Hold(until, reason)
            }
        };
        groups.insert(segmenter.clone(), group);
    }
    let total = cpu
        + groups
            .values()
            .map(|g| match g {
                Group::Free(n) => *n,
                _ => 0,
            })
            .sum::<usize>();
    let held = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&held);
    let route = Box::new(move |name: &SegmenterId| {
        let slot = match groups.get_mut(name) {
            _ if name.is_builtin() => &mut cpu,
            Some(Group::Fallback) => &mut cpu,
            Some(Group::Free(free)) => free,
            Some(Group::Hold(until, reason)) => {
                counted.fetch_add(1, Ordering::Relaxed);
                return Fit::Hold {
                    until: *until,
                    reason: reason.clone(),
                };
            }
            None => return Fit::Take,
        };
        if *slot == 0 {
            return Fit::Skip;
        }
        *slot -= 1;
        Fit::Take
    });
    (total, route, held)
}
