//! The seam between the pool and a remote ML service's protocol: one arm per protocol, each with
//! its readiness probe, its call on the runtime (no CPU-bound work there) and the CPU-bound step
//! that turns its reply into a result (on a blocking thread). The pool knows only [`Remote`].
//! An `oip` request is made before the call, also on a blocking thread ([`Remote::plan`] on the
//! runtime, then [`Remote::prepare`]); a `spheroseg` call needs nothing made.

use std::sync::Arc;
use std::time::Instant;

use super::http::{Health, HttpSegmenter, SegmentResults};
use super::oip::{OipClient, Output, Plan, Prepared, Scaling};
use super::{Control, Failure, Input, SegmentResult, Segmenter, Stop};

/// A remote ML service's client.
pub enum Remote {
    /// `POST {url}/segment`, `GET {url}/health` (ML-CONTRACT.md).
    Spheroseg(std::sync::Arc<HttpSegmenter>),
    /// The Open Inference Protocol (KServe V2): `/v2/models/{model}/infer`.
    Oip(Arc<OipClient>),
}

/// What a call brought back, before the CPU-bound step.
pub enum Reply {
    /// Polygons in the replaced contract's format, and the service's own `features`.
    Polygons(SegmentResults),
    /// An OIP model's chosen output, with how the image was fitted to its input.
    Oip {
        output: Output,
        scaling: Option<Scaling>,
    },
}

impl Remote {
    /// The service's name (in messages and results).
    pub fn name(&self) -> &str {
        match self {
            Remote::Spheroseg(h) => &h.name,
            Remote::Oip(o) => o.name(),
        }
    }

    /// The protocol, as the configuration says it.
    pub fn protocol(&self) -> &'static str {
        match self {
            Remote::Spheroseg(_) => "spheroseg",
            Remote::Oip(_) => "oip",
        }
    }

    /// Whether it is ready for calls now.
    pub async fn health(&self) -> Health {
        match self {
            Remote::Spheroseg(h) => h.health().await,
            Remote::Oip(o) => o.health().await,
        }
    }

    /// What a request needs from the service before it is made (on the runtime): an OIP
    /// model's plan, read once. `None` for the `spheroseg` contract.
    pub async fn plan(&self) -> Result<Option<Arc<Plan>>, Failure> {
        match self {
            Remote::Spheroseg(_) => Ok(None),
            Remote::Oip(o) => o.plan().await.map(Some),
        }
    }

    /// The request made from the image (CPU-bound: decoding and resizing; on a thread, never on
    /// the runtime). `None` for the `spheroseg` contract, which sends the file.
    pub fn prepare(
        &self,
        plan: Option<Arc<Plan>>,
        input: &Input<'_>,
    ) -> Result<Option<Prepared>, Failure> {
        match (self, plan) {
            (Remote::Oip(o), Some(plan)) => o.prepare(plan, input).map(Some),
            _ => Ok(None),
        }
    }

    /// One call, on the runtime: it ends at `deadline` (a timeout) or soon after `stop` is asked
    /// (dropping the request).
    pub async fn call(
        &self,
        input: &Input<'_>,
        prepared: Option<&Prepared>,
        stop: &Stop,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        match (self, prepared) {
            (Remote::Spheroseg(h), _) => h
                .segment_reply(input, stop, deadline)
                .await
                .map(Reply::Polygons),
            (Remote::Oip(o), Some(p)) => o.call(p, stop, deadline).await.map(|output| Reply::Oip {
                output,
                scaling: p.tensor.scaling,
            }),
            (Remote::Oip(o), None) => Err(Failure::permanent(
                crate::error_code::ErrorCode::ML_REQUEST,
                format!("{}: an OIP call without its prepared request", o.name()),
            )),
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
            (Remote::Oip(o), Reply::Oip { output, scaling }) => {
                o.result(output, scaling, input, call_ms)
            }
            (r, _) => Err(Failure::permanent(
                crate::error_code::ErrorCode::ML_MALFORMED,
                format!("{}: a reply of another protocol", r.name()),
            )),
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
            Remote::Oip(o) => o.segment(input, control),
        }
    }
}
