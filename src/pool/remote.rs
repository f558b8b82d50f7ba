//! ML jobs off the CPU workers. A remote service's call runs as a task on the runtime, at most
//! `max_in_flight` per service; only the CPU-bound rest (an `oip` model's input tensor before the
//! call; decoding the image, tracing a map, checking and measuring the polygons after it) and the
//! queue's blocking calls go to a blocking thread. A local
//! program runs on a blocking thread of its own, at most `max_parallel` at once. Neither holds
//! a worker thread, so builtin jobs run meanwhile.
//!
//! A remote call that the service refuses or fails transiently goes to another service of the
//! job's segmenter that can take it now, in the same attempt (the failing service's breaker
//! hears of it); with none free, the job ends as the call did (held, or retried).
//!
//! Every task is in the pool's `JoinSet` (shutdown joins them) and gives its service slot back
//! when it ends, however it ends (a guard does it, also on a panic).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::worker::Heard;
use super::{Shared, Target, Work, route, worker};
use crate::error_code::ErrorCode;
use crate::queue::{JobError, JobId, Lease};
use crate::segment::{Failure, Input, MlService};

/// Starts an admitted ML job (its slot already taken).
pub(super) fn spawn(s: &Arc<Shared>, work: Work) {
    let Target::Ml(_, svc, _) = &work.target else {
        unreachable!("only ML jobs are spawned off the workers")
    };
    let slot = Slot {
        s: Arc::clone(s),
        id: work.lease.job.id,
        svc: Arc::clone(svc),
    };
    let remote = svc.remote.is_some();
    let mut tasks = s.tasks.lock().expect("tasks lock");
    // Reap the finished ones so the set holds only what runs.
    while tasks.try_join_next().is_some() {}
    if remote {
        tasks.spawn(call(slot, work));
    } else {
        tasks.spawn_blocking(move || {
            worker::run(&slot.s, work);
            drop(slot);
        });
    }
}

/// A running ML job's hold on its service slot and on the pool's running map.
struct Slot {
    s: Arc<Shared>,
    id: JobId,
    svc: Arc<MlService>,
}

impl Slot {
    /// The job moved to `svc`, whose slot it took: this one's is free again.
    fn switch(&mut self, svc: &Arc<MlService>) {
        self.svc.give_back();
        self.svc = Arc::clone(svc);
        self.s.nudge.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.s
            .running
            .lock()
            .expect("running lock")
            .remove(&self.id);
        self.svc.give_back();
        self.s.nudge.notify_one();
        self.s.idle.notify_waiters();
    }
}

/// Whether a failed call may go to another service of the segmenter in the same attempt: the
/// service refused it or failed on it, and the time is not up.
fn reroutable(f: &Failure) -> bool {
    match f {
        Failure::Unavailable { .. } => true,
        Failure::Transient { code, .. } => *code != ErrorCode::TIMEOUT,
        Failure::Permanent { .. } | Failure::Stopped => false,
    }
}

/// One remote call (again on another service of the segmenter while one refuses or fails
/// transiently and another can take it), then its result on a blocking thread.
async fn call(mut slot: Slot, work: Work) {
    let s = Arc::clone(&slot.s);
    let s = &s;
    let (lease, stop, mut target) = (work.lease, work.stop, work.target);
    let id = lease.job.id;
    // Handing back a job stopped before it began is a blocking call to the queue.
    let began = {
        let (s, lease, stop, target) = (
            Arc::clone(s),
            lease.clone(),
            Arc::clone(&stop),
            target.clone(),
        );
        tokio::task::spawn_blocking(move || worker::begin(&s, &lease, &stop, &target)).await
    };
    if !matches!(began, Ok(true)) {
        return;
    }
    let started = Instant::now();
    progress(s, &lease, 5);
    let path = s.images.path(&lease.job.image.hash);
    let read = {
        let (s, hash) = (Arc::clone(s), lease.job.image.hash.clone());
        tokio::task::spawn_blocking(move || s.images.read(&hash)).await
    };
    let bytes = match read {
        Ok(Ok(b)) => Arc::new(b),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "the read was interrupted".to_owned(),
            };
            if let Target::Ml(_, svc, permit) = &target {
                svc.breaker.lock().expect("breaker lock").abandon(*permit);
            }
            let err = JobError::permanent(
                ErrorCode::IMAGE_MISSING,
                format!("the stored image is gone: {why}"),
            );
            super::fail(s, &lease, err).await;
            return;
        }
    };
    let mut tried = Vec::new();
    let (reply, remote, called) = loop {
        let Target::Ml(name, svc, permit) = &target else {
            return;
        };
        let remote = Arc::clone(svc.remote.as_ref().expect("a remote service"));
        let called = Instant::now();
        // The model's plan, read once per service: bounded by the job's deadline and its stop.
        let plan = crate::segment::http::until(remote.plan(), &stop, work.deadline, remote.name());
        let prepared = match plan.await {
            Ok(None) => Ok(None),
            Ok(Some(plan)) => {
                let (s, lease, path, bytes, remote) = (
                    Arc::clone(s),
                    lease.clone(),
                    path.clone(),
                    Arc::clone(&bytes),
                    Arc::clone(&remote),
                );
                // Decoding and resizing for the model's input: on a blocking thread.
                let made = tokio::task::spawn_blocking(move || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        remote.prepare(Some(plan), &input(&s, &lease, &bytes, &path))
                    }))
                })
                .await;
                match made {
                    Ok(Ok(prepared)) => prepared,
                    _ => Err(Failure::permanent(
                        ErrorCode::ML_REQUEST,
                        "making the model's input tensor from this image panicked",
                    )),
                }
            }
            Err(f) => Err(f),
        };
        let reply = match prepared {
            Ok(prepared) => {
                let input = input(s, &lease, &bytes, &path);
                remote
                    .call(&input, prepared.as_ref(), &stop, work.deadline)
                    .await
            }
            Err(f) => Err(f),
        };
        if let Err(f) = &reply
            && reroutable(f)
            && !stop.stopped()
        {
            tried.push(name.clone());
            if let Some(next) = route::pick(s, &lease.job.segmenter, s.clock.now(), &tried) {
                // This service hears how its call ended; the job goes on, in the same attempt.
                worker::hear(s, name, svc, *permit, Heard::Failed(f), called.elapsed());
                tracing::info!(job.id = %id, from = %name, to = %next.0, error = f.message().unwrap_or(""), "service failed the call; the job goes to another");
                slot.switch(&next.1);
                target = Target::Ml(next.0, next.1, next.2);
                continue;
            }
        }
        break (reply, remote, called);
    };
    let call_ms = started.elapsed().as_secs_f64() * 1e3;
    let s = Arc::clone(s);
    let tail = tokio::task::spawn_blocking(move || {
        let outcome = match reply {
            Ok(reply) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                let input = input(&s, &lease, &bytes, &path);
                remote.result(reply, &input, call_ms)
            })),
            Err(f) => Ok(Err(f)),
        };
        // The breaker times the call its service made, not those before it on others.
        worker::conclude(&s, &lease, &stop, &target, outcome, called);
        drop(slot);
    });
    if tail.await.is_err() {
        tracing::error!(job.id = %id, "recording a remote job's outcome panicked");
    }
}

/// What the service gets: the stored file (never a cached decode).
fn input<'a>(s: &'a Shared, lease: &'a Lease, bytes: &'a [u8], path: &'a Path) -> Input<'a> {
    Input {
        bytes,
        path,
        name: &lease.job.image.name,
        params: &lease.job.params,
        limits: &s.config.limits,
        budget: &s.config.budget,
        decoded: None,
    }
}

/// Keeps and publishes a remote job's progress (the call itself reports none).
fn progress(s: &Shared, lease: &Lease, p: u8) {
    let id = lease.job.id;
    if let Some(r) = s.running.lock().expect("running lock").get(&id) {
        r.progress.store(p, Ordering::Relaxed);
    }
    s.events.publish_progress(id, lease.token, p);
}
