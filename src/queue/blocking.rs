//! The calls a worker thread makes, answered on that thread: the writer is another OS thread,
//! so they block on its reply without an async runtime (never call them from inside one).

use std::time::Duration;

use super::writer::{Op, Route};
use super::{FailOutcome, Job, JobError, JobId, Lease, LeaseToken, Millis, Queue, QueueError};

/// A worker thread's calls: see [`Queue::blocking`].
pub struct Blocking<'a>(pub(super) &'a Queue);

impl Blocking<'_> {
    /// [`Queue::lease_routed`].
    pub fn lease_routed(
        &self,
        n: usize,
        ttl: Duration,
        route: Route,
    ) -> Result<Vec<Lease>, QueueError> {
        self.0.call_blocking(|reply| Op::Lease {
            n,
            ttl,
            admit: Some(route),
            reply,
        })
    }

    /// [`Queue::complete`].
    pub fn complete(
        &self,
        id: JobId,
        token: LeaseToken,
        result: Vec<u8>,
        objects: u32,
    ) -> Result<Job, QueueError> {
        self.0.call_blocking(|reply| Op::Complete {
            id,
            token,
            result,
            objects,
            reply,
        })
    }

    /// [`Queue::fail`].
    pub fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        error: JobError,
    ) -> Result<FailOutcome, QueueError> {
        self.0.call_blocking(|reply| Op::Fail {
            id,
            token,
            error,
            reply,
        })
    }

    /// [`Queue::release`].
    pub fn release(
        &self,
        id: JobId,
        token: LeaseToken,
        until: Millis,
        reason: JobError,
    ) -> Result<Job, QueueError> {
        self.0.call_blocking(|reply| Op::Release {
            id,
            token,
            until,
            reason,
            reply,
        })
    }

    /// [`Queue::interrupt`].
    pub fn interrupt(&self, id: JobId, token: LeaseToken) -> Result<Job, QueueError> {
        self.0
            .call_blocking(|reply| Op::Interrupt { id, token, reply })
    }
}
