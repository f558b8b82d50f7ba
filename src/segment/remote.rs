//! The seam between the pool and a remote ML service's protocol: one arm per protocol, each with
//! its readiness probe, its call on the runtime (no CPU-bound work there) and the CPU-bound step
//! that turns its reply into a result (on a blocking thread). The pool knows only [`Remote`].

use std::time::Instant;

use super::http::{Health, HttpSegmenter, SegmentResults};
use super::{Control, Failure, Input, SegmentResult, Segmenter, Stop};

/// A remote ML service's client.
pub enum Remote {
    /// `POST {url}/segment`, `GET {url}/health` (ML-CONTRACT.md).
    Spheroseg(std::sync::Arc<HttpSegmenter>),
}

/// What a call brought back, before the CPU-bound step.
pub enum Reply {
    /// Polygons in the replaced contract's format, and the service's own `features`.
    Polygons(SegmentResults),
}

impl Remote {
    /// The service's name (in messages and results).
    pub fn name(&self) -> &str {
        match self {
            Remote::Spheroseg(h) => &h.name,
        }
    }

    /// The protocol, as the configuration says it.
    pub fn protocol(&self) -> &'static str {
        match self {
            Remote::Spheroseg(_) => "spheroseg",
        }
    }

    /// Whether it is ready for calls now.
    pub async fn health(&self) -> Health {
        match self {
            Remote::Spheroseg(h) => h.health().await,
        }
    }

    /// One call, on the runtime: it ends at `deadline` (a timeout) or soon after `stop` is asked
    /// (dropping the request).
    pub async fn call(
        &self,
        input: &Input<'_>,
        stop: &Stop,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        match self {
            Remote::Spheroseg(h) => h
                .segment_reply(input, stop, deadline)
                .await
                .map(Reply::Polygons),
        }
    }

    /// The result from a reply: decoding the image, checking and measuring the outlines
    /// (CPU-bound: on a thread, never on the runtime).
    pub fn result(
        &self,
        reply: Reply,
        input: &Input<'_>,
        call_ms: f64,
    ) -> Result<SegmentResult, Failure> {
        match (self, reply) {
            (Remote::Spheroseg(h), Reply::Polygons(r)) => h.result(r, input, call_ms),
        }
    }
}

/// Blocks the calling thread on the runtime for the call: for callers off the runtime (the pool
/// uses [`Remote::call`] instead).
impl Segmenter for Remote {
    fn name(&self) -> &str {
        Remote::name(self)
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        match self {
            Remote::Spheroseg(h) => h.segment(input, control),
        }
    }
}
