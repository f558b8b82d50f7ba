//! The segmenters a process offers: the builtin one and the configured ML services, each ML
//! service with its circuit breaker, its limit of jobs at once and, for a remote one, what its
//! `/health` said last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::breaker::Breaker;
use super::http::{Health, HttpSegmenter};
use super::{Segmenter, SegmenterId};

/// An ML segmenter with its breaker.
pub struct MlService {
    pub segmenter: Arc<dyn Segmenter>,
    pub breaker: Mutex<Breaker>,
    /// Run its jobs on the builtin segmenter while the breaker is open.
    pub fallback_builtin: bool,
    /// Where it is: the service URL, or the program run.
    pub target: String,
    /// A remote service's client, for its `/health`.
    pub http: Option<Arc<HttpSegmenter>>,
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
            http: None,
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

    /// Jobs it may take now.
    pub fn free(&self) -> usize {
        self.limit
            .saturating_sub(self.in_flight.load(Ordering::SeqCst))
    }

    /// A remote service: its client is both the segmenter and the health check.
    pub fn remote(
        client: Arc<HttpSegmenter>,
        breaker: Breaker,
        fallback_builtin: bool,
        url: &str,
    ) -> Self {
        MlService {
            http: Some(Arc::clone(&client)),
            ..MlService::new(client, breaker, fallback_builtin, url)
        }
        .with_limit(Self::MAX_IN_FLIGHT)
    }

    /// Asks a remote service's `/health` and keeps the answer.
    pub async fn check_health(&self) {
        if let Some(h) = &self.http {
            let health = h.health().await;
            *self.last_health.lock().expect("health lock") = Some(health);
        }
    }
}

/// The segmenters jobs can ask for.
#[derive(Clone)]
pub struct Segmenters {
    pub builtin: Arc<dyn Segmenter>,
    /// By the name jobs use (`http`, `command`).
    pub ml: HashMap<SegmenterId, Arc<MlService>>,
}
