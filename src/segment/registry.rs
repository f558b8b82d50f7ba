//! The segmenters a process offers: the builtin one and the configured ML services, each ML
//! service with its circuit breaker and, for a remote one, what its `/health` said last.

use std::collections::HashMap;
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
        }
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
