//! What the dispatcher may lease: CPU workers for builtin jobs, and each ML service's own slots
//! (`max_in_flight`, `max_parallel`) for its jobs, counted apart so that neither waits on the
//! other. The queue asks the test in lease order and stops at the first job that does not fit:
//! strict priority, no skipping ahead.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::segment::SegmenterId;

/// How many jobs the dispatcher may lease now, and the test each one must pass in lease order:
/// a builtin job needs a free CPU worker, an ML job a free slot of its service (or a worker when
/// its breaker is open and it falls back to the builtin segmenter). An unknown service's job is
/// leased (and failed at once).
pub(super) fn slots(s: &Shared) -> (usize, crate::queue::Admit) {
    let mut cpu = s
        .config
        .workers
        .max(1)
        .saturating_sub(s.busy.load(Ordering::SeqCst));
    let mut ml: HashMap<SegmenterId, (usize, bool)> = s
        .segmenters
        .ml
        .iter()
        .map(|(name, svc)| {
            let open = svc.fallback_builtin
                && svc.breaker.lock().expect("breaker lock").state()
                    == crate::segment::breaker::State::Open;
            (name.clone(), (svc.free(), open))
        })
        .collect();
    let total = cpu + ml.values().map(|(free, _)| free).sum::<usize>();
    let admit = Box::new(move |name: &SegmenterId| {
        let slot = match ml.get_mut(name) {
            _ if name.is_builtin() => &mut cpu,
            Some((_, true)) => &mut cpu,
            Some((free, false)) => free,
            None => return true,
        };
        if *slot == 0 {
            return false;
        }
        *slot -= 1;
        true
    });
    (total, admit)
}
