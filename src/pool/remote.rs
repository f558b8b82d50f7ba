//! ML jobs off the CPU workers. A remote service's call runs as a task on the runtime, at most
//! `max_in_flight` per service; only the CPU-bound rest (decoding the image, checking and
//! measuring the polygons) and the queue's blocking calls go to a blocking thread. A local
//! program runs on a blocking thread of its own, at most `max_parallel` at once. Neither holds
//! a worker thread, so builtin jobs run meanwhile.
//!
//! Every task is in the pool's `JoinSet` (shutdown joins them) and gives its service slot back
//! when it ends, however it ends (a guard does it, also on a panic).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Shared, Target, Work, worker};
use crate::error_code::ErrorCode;
use crate::queue::{JobError, JobId, Lease};
use crate::segment::http::HttpSegmenter;
use crate::segment::{Input, MlService};

/// Starts an admitted ML job (its slot already counted in `in_flight`).
pub(super) fn spawn(s: &Arc<Shared>, work: Work) {
    let Target::Ml(_, svc, _) = &work.target else {
        unreachable!("only ML jobs are spawned off the workers")
    };
    let slot = Slot {
        s: Arc::clone(s),
        id: work.lease.job.id,
        svc: Arc::clone(svc),
    };
    let remote = svc.http.clone();
    let mut tasks = s.tasks.lock().expect("tasks lock");
    // Reap the finished ones so the set holds only what runs.
    while tasks.try_join_next().is_some() {}
    match remote {
        Some(http) => {
            tasks.spawn(async move {
                call(&slot.s, http, work).await;
                drop(slot);
            });
        }
        None => {
            tasks.spawn_blocking(move || {
                worker::run(&slot.s, work);
                drop(slot);
            });
        }
    }
}

/// A running ML job's hold on its service slot and on the pool's running map.
struct Slot {
    s: Arc<Shared>,
    id: JobId,
    svc: Arc<MlService>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.s
            .running
            .lock()
            .expect("running lock")
            .remove(&self.id);
        self.svc.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.s.nudge.notify_one();
        self.s.idle.notify_waiters();
    }
}

/// One remote call, then its result on a blocking thread.
async fn call(s: &Arc<Shared>, http: Arc<HttpSegmenter>, work: Work) {
    let (lease, stop, target) = (work.lease, work.stop, work.target);
    let id = lease.job.id;
    let Target::Ml(_, svc, permit) = &target else {
        return;
    };
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
        Ok(Ok(b)) => b,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "the read was interrupted".to_owned(),
            };
            svc.breaker.lock().expect("breaker lock").abandon(*permit);
            let err = JobError::permanent(
                ErrorCode::IMAGE_MISSING,
                format!("the stored image is gone: {why}"),
            );
            super::fail(s, &lease, err).await;
            return;
        }
    };
    // An OIP request is made (decoding, resizing) on a blocking thread; the bytes come back.
    let (prepared, bytes) = match http.plan().await {
        Ok(None) => (Ok(None), bytes),
        Ok(Some(plan)) => {
            let (s, lease, path, http) = (
                Arc::clone(s),
                lease.clone(),
                path.clone(),
                Arc::clone(&http),
            );
            let made = tokio::task::spawn_blocking(move || {
                let made = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    http.prepare(Some(plan), &input(&s, &lease, &bytes, &path))
                }));
                (made, bytes)
            })
            .await;
            match made {
                Ok((Ok(prepared), bytes)) => (prepared, bytes),
                Ok((Err(_), bytes)) => (Err(panicked()), bytes),
                Err(_) => {
                    svc.breaker.lock().expect("breaker lock").abandon(*permit);
                    tracing::error!(job.id = %id, "preparing a model request was interrupted");
                    return;
                }
            }
        }
        Err(f) => (Err(f), bytes),
    };
    let reply = match prepared {
        Ok(prepared) => {
            let input = input(s, &lease, &bytes, &path);
            http.reply(&input, prepared.as_ref(), &stop, work.deadline)
                .await
        }
        Err(f) => Err(f),
    };
    let call_ms = started.elapsed().as_secs_f64() * 1e3;
    let s = Arc::clone(s);
    let tail = tokio::task::spawn_blocking(move || {
        let outcome = match reply {
            Ok(reply) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                let input = input(&s, &lease, &bytes, &path);
                http.result(&reply, &input, call_ms)
            })),
            Err(f) => Ok(Err(f)),
        };
        worker::conclude(&s, &lease, &stop, &target, outcome, started);
    });
    if tail.await.is_err() {
        tracing::error!(job.id = %id, "recording a remote job's outcome panicked");
    }
}

/// A request that could not be made because making it panicked (a bad image fails one job).
fn panicked() -> crate::segment::Failure {
    crate::segment::Failure::permanent(
        ErrorCode::ML_REQUEST,
        "making the model's input tensor from this image panicked",
    )
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
