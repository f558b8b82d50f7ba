//! The segmenters a process offers: the builtin one and the configured ML services, each ML
//! service with its circuit breaker, its limit of jobs at once, the segmenter whose jobs it takes
//! (several services may serve one), its weight among them, how long it asked not to be called
//! (`Retry-After`) and, for a remote one, what its readiness probe said last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::breaker::Breaker;
use super::http::{Health, HttpSegmenter};
use super::remote::Remote;
use super::{Segmenter, SegmenterId};
use crate::clock::Millis;

/// An ML segmenter with its breaker.
pub struct MlService {
    pub segmenter: Arc<dyn Segmenter>,
    pub breaker: Mutex<Breaker>,
    /// Run its jobs on the builtin segmenter while the breaker is open.
    pub fallback_builtin: bool,
    /// Where it is: the service URL, or the program run.
    pub target: String,
    /// A remote service's client: its calls and its readiness probe.
    pub remote: Option<Arc<Remote>>,
    /// The segmenter whose jobs it takes; `None`: the one of its own name.
    pub serves: Option<SegmenterId>,
    /// Its share of the calls against the other services of its segmenter (at least 1).
    pub weight: u32,
    /// It asked not to be called before this (`Retry-After` on a 429 or 503).
    pub skip_until: AtomicU64,
    /// What its `/health` said last (remote services only).
    pub last_health: Mutex<Option<Health>>,
    /// Jobs it may run at once (`max_in_flight` of a remote service, `max_parallel` of a
    /// program), whatever the number of CPU workers.
    pub limit: usize,
    /// Jobs running on it now (kept by the pool).
    pub in_flight: AtomicUsize,
}

impl MlService {
    pub fn new(
        segmenter: Arc<dyn Segmenter>,
        breaker: Breaker,
        fallback_builtin: bool,
        target: &str,
    ) -> Self {
        MlService {
            segmenter,
            breaker: Mutex::new(breaker),
            fallback_builtin,
            target: target.to_owned(),
            remote: None,
            serves: None,
            weight: 1,
            skip_until: AtomicU64::new(0),
            last_health: Mutex::new(None),
            limit: Self::MAX_PARALLEL,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The default limit of a local program: one at a time (one GPU).
    pub const MAX_PARALLEL: usize = 1;
    /// The default limit of calls in flight to a remote service.
    pub const MAX_IN_FLIGHT: usize = 4;

    /// The same service with another limit of jobs at once (at least 1).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The same service serving the jobs of `segmenter`.
    pub fn serving(mut self, segmenter: SegmenterId) -> Self {
        self.serves = Some(segmenter);
        self
    }

    /// The same service with another weight (at least 1).
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Jobs it may take now.
    pub fn free(&self) -> usize {
        self.limit
            .saturating_sub(self.in_flight.load(Ordering::SeqCst))
    }

    /// Takes one of its free slots, if it has one (the caller gives it back with
    /// [`MlService::give_back`]).
    pub fn try_take(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken with [`MlService::try_take`].
    pub fn give_back(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Calls it may not get before `until` (it answered `Retry-After`).
    pub fn skip_until(&self, until: Millis) {
        self.skip_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Whether it asked not to be called now.
    pub fn skipped(&self, now: Millis) -> bool {
        self.skip_until.load(Ordering::SeqCst) > now
    }

    /// A remote service speaking the spheroseg contract: its client is both the segmenter and
    /// the readiness probe.
    pub fn remote(
        client: Arc<HttpSegmenter>,
        breaker: Breaker,
        fallback_builtin: bool,
        url: &str,
    ) -> Self {
        Self::from_remote(Remote::Spheroseg(client), breaker, fallback_builtin, url)
    }

    /// A remote service of any protocol.
    pub fn from_remote(
        remote: Remote,
        breaker: Breaker,
        fallback_builtin: bool,
        url: &str,
    ) -> Self {
        let remote = Arc::new(remote);
        MlService {
            remote: Some(Arc::clone(&remote)),
            ..MlService::new(remote, breaker, fallback_builtin, url)
        }
        .with_limit(Self::MAX_IN_FLIGHT)
    }

    /// Probes a remote service's readiness and keeps the answer.
    pub async fn check_health(&self) {
        if let Some(r) = &self.remote {
            let health = r.health().await;
            *self.last_health.lock().expect("health lock") = Some(health);
        }
    }
}

/// The segmenters jobs can ask for.
#[derive(Clone)]
pub struct Segmenters {
    pub builtin: Arc<dyn Segmenter>,
    /// By the service's name (`http`, `command`, an `[[ml.service]]`'s name).
    pub ml: HashMap<SegmenterId, Arc<MlService>>,
}

impl Segmenters {
    /// The services that take the jobs of `segmenter`, by name (in name order).
    pub fn serving<'a>(
        &'a self,
        segmenter: &'a SegmenterId,
    ) -> impl Iterator<Item = (&'a SegmenterId, &'a Arc<MlService>)> + 'a {
        let mut v: Vec<_> = self
            .ml
            .iter()
            .filter(move |(name, svc)| svc.serves.as_ref().unwrap_or(name) == segmenter)
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }
}

impl MlService {
    /// The segmenter whose jobs it takes, given its own name.
    pub fn segmenter_of<'a>(&'a self, name: &'a SegmenterId) -> &'a SegmenterId {
        self.serves.as_ref().unwrap_or(name)
    }
}
